"""Replay a recorded session: run its code cells again and check that they do the same.

``kernel-agent replay NOTEBOOK`` (or :func:`replay`) starts a fresh sandboxed
session, runs the recorded code cells in order and compares each one with
the recording. By default the tools answer *from the recording*: the
session's tools are rebuilt from the notebook's tool definitions (so the
kernel gets the same SDK), and each call is served by the recorded call of
that cell with the same tool and arguments, returning its recorded result
or re-raising its recorded error. A call the recording does not have is a
divergence; it fails in the kernel with a message saying so. With
``live_tools`` (``--live``) the real tools run instead.

A cell is compared the way nbval compares notebooks: execution counts are
ignored; stream text is compared per stream name (stdout and stderr may
interleave differently); rich outputs are compared on their textual MIME
types (``text/*``, JSON), images only by presence; errors on ``ename`` and
``evalue``, not the traceback. All text is sanitized first: memory
addresses (``0x`` and 6+ hex digits), ANSI escape codes and trailing
whitespace. The cell's status, its tool calls (tool, arguments, outcome)
and its final answer are compared too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from kernel_agent.protocol import wire
from kernel_agent.errors import KernelAgentError
from kernel_agent.record import format as fmt
from kernel_agent.record.recording import (
    RecordedCell,
    Recording,
    ReplayInputError,
    json_text,
    load_recording,
)
from kernel_agent.tools.recorded import RecordedTools, recorded_tools

__all__ = ["Divergence", "ReplayInputError", "ReplayReport", "replay", "sanitize", "render_cell"]

#: Exit codes of ``kernel-agent replay``.
EXIT_FAITHFUL, EXIT_DIVERGENT, EXIT_ERROR = 0, 1, 2

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_TRAILING_SPACE = re.compile(r"[ \t\r\f\v]+$", re.MULTILINE)
# MIME types that carry random ids even when nothing changed.
_UNCOMPARED_MIMES = {"application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"}


class Divergence(BaseModel):
    """Where a replay first stopped matching its recording."""

    cell_index: int = Field(description="index of the cell in the notebook's cells list")
    seq: int | None = Field(description="the cell's recorded seq (its position in the hash chain)")
    source_first_line: str
    diff: str = Field(description="unified diff, recorded (-) vs replayed (+), of the cell as compared")
    reason: str


class ReplayReport(BaseModel):
    """The outcome of a replay."""

    notebook: str
    live: bool = False
    faithful: bool
    cells: int = Field(description="code cells replayed")
    divergent_cells: list[int] = Field(default_factory=list, description="notebook indices of the cells that differ")
    first_divergence: Divergence | None = None
    tool_calls_recorded: int = 0
    tool_calls_served: int = Field(0, description="calls answered from the recording (0 when live)")
    unrecorded_calls: list[str] = Field(default_factory=list, description="calls the recording does not have")
    warnings: list[str] = Field(default_factory=list)
    out: str | None = Field(None, description="where the replayed session was recorded, if anywhere")

    def render(self) -> str:
        """The human-readable report the command line prints."""
        mode = "live tools" if self.live else f"{self.tool_calls_served} tool calls served from the recording"
        lines = [f"replayed {self.cells} code cells of {self.notebook} ({mode})"]
        lines += [f"warning: {w}" for w in self.warnings]
        if self.faithful:
            lines.append("faithful: every cell matches its recording")
        else:
            lines.append(f"DIVERGENT: {len(self.divergent_cells)} of {self.cells} cells differ from the recording")
            first = self.first_divergence
            if first is not None:
                seq = f", seq {first.seq}" if first.seq is not None else ""
                lines.append(f"first divergence: cell {first.cell_index}{seq}: {first.source_first_line}")
                lines.append(f"reason: {first.reason}")
                lines.append(first.diff.rstrip("\n"))
            for call in self.unrecorded_calls:
                lines.append(f"not in the recording: {call}")
        if self.out:
            lines.append(f"replayed session recorded to {self.out}")
        return "\n".join(lines)


# -- comparing ---------------------------------------------------------------------------


def sanitize(text: str) -> str:
    """What may differ between two faithful runs, taken out: ANSI codes, memory addresses, trailing blanks."""
    text = _ANSI.sub("", text)
    text = _ADDRESS.sub("0x...", text)
    return _TRAILING_SPACE.sub("", text)


def _textual(mime: str) -> bool:
    if mime in _UNCOMPARED_MIMES or mime.startswith("image/"):
        return False
    return mime.startswith("text/") or mime in ("application/json", "application/javascript") \
        or mime.endswith("+json")


def _render_outputs(outputs: Iterable[Any]) -> list[str]:
    """Outputs as comparable lines: streams merged per name (at the first one's place), rich data per MIME type."""
    items: list[list[str] | str] = []  # a block of lines, or a stream name standing for its merged text
    streams: dict[str, list[str]] = {}
    for raw in outputs:
        if not isinstance(raw, dict):
            items.append([f"[unreadable output {type(raw).__name__}]"])
            continue
        output = fmt.normalised_output(raw)
        kind = str(output.get("output_type"))
        if kind == "stream":
            name = str(output.get("name", "stdout"))
            if name not in streams:
                streams[name] = []
                items.append(name)
            streams[name].append(str(output.get("text", "")))
        elif kind in ("display_data", "execute_result", "update_display_data"):
            raw_data = output.get("data")
            data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
            block = [] if data else [f"[{kind}: no data]"]
            for mime in sorted(data):
                value = data[mime]
                if not _textual(mime):
                    block.append(f"[{kind} {mime}: present, not compared]")
                    continue
                block.append(f"[{kind} {mime}]")
                text = value if isinstance(value, str) else json_text(value)
                block.extend(text.splitlines() or [""])
            items.append(block)
        elif kind == "error":
            items.append(["[error]", f"{output.get('ename', '')}: {output.get('evalue', '')}"])
        else:
            items.append([f"[{kind}]"])
    lines: list[str] = []
    for item in items:
        if isinstance(item, str):
            lines.append(f"[{item}]")
            lines.extend("".join(streams[item]).splitlines() or [""])
        else:
            lines.extend(item)
    return lines


def _call_line(tool: Any, arguments: Any, status: Any, error: Any) -> str:
    line = f"{tool} {json_text(arguments)} -> {status}"
    if status != "ok" and isinstance(error, dict):
        line += f": {error.get('message', '')}"
    return line


def render_cell(status: str, outputs: Iterable[Any], calls: list[dict[str, Any]],
                final_answer: tuple[bool, Any] = (False, None), *, order_calls: bool = True) -> str:
    """A cell as it is compared: status, tool calls, outputs, final answer; sanitized.

    ``calls`` are ToolCall records (JSON); with ``order_calls`` False their
    order does not count (the calls ran concurrently).
    """
    call_lines = [_call_line(c.get("tool"), c.get("arguments"), c.get("status"), c.get("error")) for c in calls]
    if not order_calls:
        call_lines.sort()
    lines = [f"status: {status}"]
    if call_lines:
        lines.append("tool calls:" if order_calls else "tool calls (concurrent, in any order):")
        lines.extend(f"  {line}" for line in call_lines)
    lines.append("outputs:")
    lines.extend(_render_outputs(outputs))
    if final_answer[0]:
        lines.append(f"final answer: {json_text(final_answer[1])}")
    return sanitize("\n".join(lines)) + "\n"


# -- replaying ------------------------------------------------------------------------------


def _call_record(call: Any) -> dict[str, Any]:
    record: dict[str, Any] = call.model_dump(mode="json")
    return record


async def replay(
    notebook: Path | str,
    *,
    live_tools: Iterable[Any] | None = None,
    out: Path | str | None = None,
    policy: Any = None,
    cell_timeout: float = 600.0,
) -> ReplayReport:
    """Replay ``notebook`` in a fresh sandboxed session and compare every code cell with its recording.

    ``live_tools`` (tools, @tool functions, registries, McpServers, as for
    Session): call these instead of answering from the recording. ``out``:
    record the replayed session there. ``policy``: the sandbox policy
    (default: the strict default, whatever the recording used).
    Raises ReplayInputError for an unusable notebook and other
    KernelAgentErrors when the session cannot run; a divergence is not an
    error but ``faithful=False`` in the report.
    """
    from kernel_agent.session.session import Session

    path = Path(notebook)
    recording = load_recording(path)
    out_path = Path(out).resolve() if out is not None else None
    if out_path is not None and out_path == path.resolve():
        raise ReplayInputError("--out must not be the notebook being replayed (it is never modified)")
    live = live_tools is not None
    live_items = list(live_tools) if live_tools is not None else []
    recorded_calls = sum(len(c.calls) for c in recording.cells)
    if live and not live_items and recorded_calls:
        raise ReplayInputError(f"a live replay needs the real tools: the recording has {recorded_calls} tool "
                               "calls; pass them (--tools MODULE:OBJECT, --mcp COMMAND)")
    warnings: list[str] = list(recording.warnings)
    server = RecordedTools()
    tools = live_items if live else recorded_tools(recording.definitions, server)
    raw_sandbox = recording.header.get("sandbox")
    sandbox: dict[str, Any] = raw_sandbox if isinstance(raw_sandbox, dict) else {}
    if policy is None and sandbox.get("loosenings"):
        warnings.append("the session was recorded under a loosened sandbox (" + "; ".join(
            map(str, sandbox["loosenings"])) + "); it is replayed under the default strict policy")
    session = Session(
        None, policy=policy, tools=tools, notebook=out_path if out_path is not None else False,
        default_timeout=cell_timeout,
        record_metadata={"replay": {"of_session": recording.header.get("session_id"),
                                    "of_notebook": str(path.resolve()), "live": live}},
    )
    report = ReplayReport(notebook=str(path), live=live, faithful=True, cells=0,
                          tool_calls_recorded=recorded_calls, tool_calls_served=0, out=str(out_path) if out_path else None)
    async with session:
        _check_sdk(session, recording, live, warnings)
        messages = dict(recording.messages)
        for cell in recording.cells:
            for index in sorted(i for i in messages if i < cell.index):
                session.record_message(*messages.pop(index))
            timeout = cell_timeout
            if cell.status == "timeout" and cell.duration:
                timeout = min(cell_timeout, cell.duration)
            server.begin_cell(cell)
            try:
                result = await session.execute(cell.source, timeout=timeout)
            finally:
                server.end_cell()
            report.cells += 1
            _compare(cell, result, server, report)
        for index in sorted(messages):
            session.record_message(*messages[index])
    report.tool_calls_served = server.served
    report.unrecorded_calls = [description for _, description in server.unrecorded]
    warnings += [f"cell {index}: {note}" for index, note in server.limitations]
    report.warnings = warnings
    report.faithful = not report.divergent_cells and not server.unrecorded
    return report


def _check_sdk(session: Any, recording: Recording, live: bool, warnings: list[str]) -> None:
    from kernel_agent.tools.sdkgen import sdk_hash

    actual = sdk_hash(session.sdk_modules)
    whose = "the live tools'" if live else "the regenerated"
    if recording.sdk_hash is None:
        warnings.append("the recording has no SDK hash: cannot check that the kernel gets the same tool SDK")
    elif actual != recording.sdk_hash:
        warnings.append(f"{whose} tool SDK differs from the recorded one (sdk hash {actual[:12]} != "
                        f"{recording.sdk_hash[:12]}): the kernel may see other signatures or docs")
    if live:
        called = {str(c.get("tool")) for cell in recording.cells for c in cell.calls
                  if c.get("status") != "unknown_tool"}
        missing = sorted(name for name in called if name not in session.registry)
        if missing:
            warnings.append("the live tools lack " + ", ".join(missing) + ", which the recording calls")


def _compare(cell: RecordedCell, result: Any, server: RecordedTools, report: ReplayReport) -> None:
    replayed_calls = [_call_record(c) for c in result.tool_calls]
    ordered = not cell.concurrent_calls
    expected = render_cell(cell.status, cell.outputs, cell.calls, cell.final_answer, order_calls=ordered)
    final = (True, wire.encode(result.final_answer)[0]) if result.has_final_answer else (False, None)
    actual = render_cell(result.status.value, result.outputs, replayed_calls, final, order_calls=ordered)
    unrecorded = [d for index, d in server.unrecorded if index == cell.index]
    if expected == actual and not unrecorded:
        return
    reasons = []
    if cell.status != result.status.value:
        reasons.append(f"status: recorded {cell.status}, replayed {result.status.value}")
    if unrecorded:
        reasons.append("tool call not in the recording: " + "; ".join(unrecorded))
    expected_calls = render_cell("", [], cell.calls, order_calls=ordered)
    if expected_calls != render_cell("", [], replayed_calls, order_calls=ordered) and not unrecorded:
        reasons.append(f"tool calls differ ({len(cell.calls)} recorded, {len(replayed_calls)} replayed)")
    if render_cell("", cell.outputs, []) != render_cell("", result.outputs, []):
        reasons.append("outputs differ")
    if render_cell("", [], [], cell.final_answer) != render_cell("", [], [], final):
        reasons.append("final answer differs")
    limitations = [note for index, note in server.limitations if index == cell.index]
    if limitations:
        reasons.append("replay limitation: " + "; ".join(limitations))
    report.divergent_cells.append(cell.index)
    if report.first_divergence is None:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            fromfile=f"recorded cell {cell.index}",
                                            tofile=f"replayed cell {cell.index}"))
        report.first_divergence = Divergence(cell_index=cell.index, seq=cell.seq,
                                             source_first_line=cell.first_line, diff=diff,
                                             reason="; ".join(reasons) or "the cell differs")


# -- command line -------------------------------------------------------------------------


async def _command(args: Any) -> int:
    import sys

    from kernel_agent.tools.loading import load_tools

    live_tools: list[Any] | None = None
    if (args.tools or args.mcp) and not args.live:
        raise ReplayInputError("--tools and --mcp are for --live replays (a plain replay answers from the recording)")
    if args.live:
        live_tools = load_tools(args.tools, args.mcp)
    report = await replay(Path(args.notebook), live_tools=live_tools, out=Path(args.out) if args.out else None)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(report.render())
    sys.stdout.flush()
    return EXIT_FAITHFUL if report.faithful else EXIT_DIVERGENT


def run_command(args: Any) -> int:
    """``kernel-agent replay``: exit 0 faithful, 1 divergent, 2 when the replay cannot be done."""
    import asyncio
    import sys

    from kernel_agent.cli.main import _input_error

    try:
        return asyncio.run(_command(args))
    except (KernelAgentError, ValueError, ImportError, AttributeError) as exc:
        print(f"kernel-agent replay: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the notebook is hostile input: one line, never a traceback
        return _input_error("replay", exc)
