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

import dataclasses
import difflib
import importlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from kernel_agent.protocol import wire
from kernel_agent.errors import KernelAgentError, RecordingError
from kernel_agent.record import format as fmt
from kernel_agent.tools.calls import CallStatus

__all__ = ["Divergence", "ReplayInputError", "ReplayReport", "replay", "sanitize", "render_cell"]

#: Exit codes of ``kernel-agent replay``.
EXIT_FAITHFUL, EXIT_DIVERGENT, EXIT_ERROR = 0, 1, 2

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TRAILING_SPACE = re.compile(r"[ \t\r\f\v]+$", re.MULTILINE)
# Recorded outcomes that reach a tool's handler (the others are decided by the bridge before it
# looks at the tool, so a replay session's bridge reproduces them by itself).
_HANDLER_STATUSES = {"ok", "error", "timeout", "denied", "budget"}
_INVALID_BY_SCHEMA = "invalid arguments:"
_CALL_STATUSES = {status.value for status in CallStatus}
# MIME types that carry random ids even when nothing changed.
_UNCOMPARED_MIMES = {"application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"}


class ReplayInputError(RecordingError):
    """The notebook cannot be replayed: not JSON, not a kernel-agent recording, a side file missing..."""


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


def _json_text(value: Any) -> str:
    """Canonical JSON that tolerates what a recording may hold (NaN, odd floats)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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
                text = value if isinstance(value, str) else _json_text(value)
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
    line = f"{tool} {_json_text(arguments)} -> {status}"
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
        lines.append(f"final answer: {_json_text(final_answer[1])}")
    return sanitize("\n".join(lines)) + "\n"


# -- reading the recording ----------------------------------------------------------------


@dataclasses.dataclass
class RecordedCell:
    index: int
    seq: int | None
    source: str
    status: str
    outputs: list[Any]
    calls: list[dict[str, Any]]
    final_answer: tuple[bool, Any]
    duration: float | None
    timed_out: bool

    @property
    def first_line(self) -> str:
        stripped = [line for line in self.source.splitlines() if line.strip()]
        return stripped[0].strip()[:120] if stripped else "(empty cell)"

    @property
    def concurrent_calls(self) -> bool:
        """Whether some recorded call started before the previous one ended (gathered calls)."""
        times = [(c.get("started_at"), c.get("ended_at")) for c in self.calls]
        return any(isinstance(s, (int, float)) and isinstance(e, (int, float)) and s < e
                   for (s, _), (_, e) in zip(times[1:], times[:-1]))


@dataclasses.dataclass
class Recording:
    path: Path
    header: dict[str, Any]
    definitions: list[dict[str, Any]]
    sdk_hash: str | None
    cells: list[RecordedCell]
    messages: dict[int, tuple[str, str]]  # notebook index -> (kind, text) of task/message cells
    warnings: list[str] = dataclasses.field(default_factory=list)


def _text(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return value if isinstance(value, str) else ""


class _SideFiles:
    def __init__(self, notebook: Path) -> None:
        self.notebook = notebook
        self.cache: dict[str, Any] = {}

    def resolve(self, value: Any, where: str) -> Any:
        """The value itself, or the content of the side file a reference names (found only next to the notebook)."""
        from kernel_agent.record.reader import read_side_file

        if not (isinstance(value, dict) and fmt.SIDE_FILE_KEY in value):
            return value
        digest = value.get(fmt.SIDE_FILE_KEY)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ReplayInputError(f"{where}: {fmt.SIDE_FILE_KEY} {digest!r} is not a sha256 side-file name")
        if digest not in self.cache:
            try:
                self.cache[digest] = read_side_file(self.notebook, digest)
            except RecordingError as exc:
                raise ReplayInputError(f"{where} is stored in a side file: {exc}; copy the "
                                       f"{self.notebook.stem}.files/ directory along with the notebook") from None
        return self.cache[digest]


def load_recording(path: Path) -> Recording:
    """Read and check a recorded notebook; ReplayInputError says what makes it unusable."""
    from kernel_agent.record.recorder import load_notebook_json

    try:
        document = load_notebook_json(path)
    except ReplayInputError:
        raise
    except RecordingError as exc:
        raise ReplayInputError(str(exc)) from None
    metadata = document.get("metadata")
    ours = metadata.get(fmt.METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(ours, dict) or not isinstance(ours.get("session"), dict):
        raise ReplayInputError(f"{path} is not a kernel-agent recording (no metadata.{fmt.METADATA_KEY}.session)")
    version = ours.get("format")
    if not isinstance(version, int) or version > fmt.FORMAT_VERSION:
        raise ReplayInputError(f"{path} has recording format {version!r}; this kernel-agent reads up to "
                               f"format {fmt.FORMAT_VERSION}")
    header = ours["session"]
    tools = header.get("tools", {})
    definitions = tools.get("definitions", []) if isinstance(tools, dict) else None
    if not isinstance(definitions, list) or not all(isinstance(d, dict) for d in definitions):
        raise ReplayInputError(f"{path}: the session header's tools.definitions is not a list of tool definitions")
    sdk_hash = tools.get("sdk_hash") if isinstance(tools, dict) else None
    side_files = _SideFiles(path)
    cells: list[RecordedCell] = []
    messages: dict[int, tuple[str, str]] = {}
    for index, cell in enumerate(document["cells"]):
        if not isinstance(cell, dict):
            raise ReplayInputError(f"{path}: cell {index} is not an object")
        cell_meta = cell.get("metadata")
        meta = cell_meta.get(fmt.METADATA_KEY) if isinstance(cell_meta, dict) else None
        kind = meta.get("kind") if isinstance(meta, dict) else None
        if cell.get("cell_type") == "markdown" and kind in ("task", "message"):
            messages[index] = (str(kind), _text(cell.get("source")))
        if cell.get("cell_type") != "code" or kind != "code":
            continue  # markdown, the setup cell, cells added outside kernel-agent: not replayed
        assert isinstance(meta, dict)
        where = f"{path}: cell {index}"
        raw_calls = meta.get("tool_calls", [])
        outputs = cell.get("outputs", [])
        if not isinstance(raw_calls, list) or not all(isinstance(c, dict) for c in raw_calls):
            raise ReplayInputError(f"{where}: tool_calls is not a list of tool-call records")
        if not isinstance(outputs, list):
            raise ReplayInputError(f"{where}: outputs is not a list")
        calls = []
        for number, raw in enumerate(raw_calls):
            call = dict(raw)
            if call.get("status") not in _CALL_STATUSES or not isinstance(call.get("tool"), str):
                raise ReplayInputError(f"{where}: tool call {number} has no tool name or an unknown status "
                                       f"{call.get('status')!r}")
            for key in ("arguments", "result"):
                call[key] = side_files.resolve(call.get(key), f"{where}, tool call {number}, {key}")
            calls.append(call)
        final = (True, side_files.resolve(meta["final_answer"], f"{where}, final answer")) \
            if "final_answer" in meta else (False, None)
        seq = meta.get("seq")
        duration = meta.get("duration")
        cells.append(RecordedCell(
            index=index, seq=seq if isinstance(seq, int) else None, source=_text(cell.get("source")),
            status=str(meta.get("status", "ok")), outputs=outputs, calls=calls, final_answer=final,
            duration=float(duration) if isinstance(duration, (int, float)) else None,
            timed_out=bool(meta.get("timed_out")),
        ))
    recording = Recording(path=path, header=header, definitions=definitions,
                           sdk_hash=sdk_hash if isinstance(sdk_hash, str) else None,
                           cells=cells, messages=messages)
    _restore_key_order(recording)
    return recording


def _multi_key_dict(value: Any) -> bool:
    if isinstance(value, list):
        return any(_multi_key_dict(v) for v in value)
    if isinstance(value, dict):
        return (len(value) > 1 and wire.TAG not in value) or any(_multi_key_dict(v) for v in value.values())
    return False


def _restore_key_order(recording: Recording) -> None:
    """Give recorded results and final answers back their dicts' key order, from the journal.

    The notebook stores JSON with sorted keys, so a dict a tool returned
    comes back in sorted order, which a cell can see (its repr). The
    journal next to the notebook keeps the order: a journal value is used
    when it equals the notebook's up to key order (so an edited notebook
    still wins).
    """
    from kernel_agent.record.journal import journal_path_for, read_journal

    journal = journal_path_for(recording.path)
    ordered: dict[int, dict[str, Any]] = {}
    if journal.is_file():
        try:
            events = read_journal(journal)
        except RecordingError as exc:
            recording.warnings.append(f"the journal {journal} is unusable ({exc}); ignored")
            events = []
        for event in events:
            cell = event.get("cell") if event.get("event") == "cell" else None
            meta = cell.get("metadata", {}).get(fmt.METADATA_KEY) if isinstance(cell, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get("seq"), int) and meta.get("kind") == "code":
                ordered[meta["seq"]] = meta

    def pick(recorded: Any, journaled: Any) -> Any:
        if isinstance(journaled, dict) and fmt.SIDE_FILE_KEY in journaled:
            return recorded
        return journaled if _json_text(journaled) == _json_text(recorded) else recorded

    unordered = False
    for cell in recording.cells:
        meta = ordered.get(cell.seq) if cell.seq is not None else None
        calls = meta.get("tool_calls") if meta else None
        if isinstance(calls, list) and len(calls) == len(cell.calls):
            for call, journaled in zip(cell.calls, calls):
                if isinstance(journaled, dict):
                    call["result"] = pick(call.get("result"), journaled.get("result"))
        if meta and cell.final_answer[0] and "final_answer" in meta:
            cell.final_answer = (True, pick(cell.final_answer[1], meta["final_answer"]))
        unordered = unordered or (meta is None and (
            any(_multi_key_dict(c.get("result")) for c in cell.calls) or _multi_key_dict(cell.final_answer[1])))
    if unordered:
        recording.warnings.append(
            "the notebook stores dicts with sorted keys and its journal is not there to restore their order: "
            "dicts returned by tools (or final answers) come back in sorted key order, which cells may show")


# -- serving tool calls from the recording --------------------------------------------------------


def _has_tag(value: Any, tags: set[str]) -> bool:
    if isinstance(value, list):
        return any(_has_tag(v, tags) for v in value)
    if isinstance(value, dict):
        return value.get(wire.TAG) in tags or any(_has_tag(v, tags) for v in value.values())
    return False


class RecordedTools:
    """Answers a replay session's tool calls with the recorded ones, cell by cell."""

    def __init__(self) -> None:
        self.cell: RecordedCell | None = None
        self.pending: list[dict[str, Any]] = []
        self.served = 0
        self.unrecorded: list[tuple[int, str]] = []  # (cell index, description)
        self.limitations: list[tuple[int, str]] = []
        self.keys: dict[int, str] = {}

    def begin_cell(self, cell: RecordedCell) -> None:
        self.cell = cell
        self.pending = [c for c in cell.calls if self._reaches_handler(c)]
        self.keys = {id(c): _arguments_key(c.get("arguments")) for c in self.pending}

    def end_cell(self) -> None:
        self.cell, self.pending = None, []

    @staticmethod
    def _reaches_handler(call: dict[str, Any]) -> bool:
        status = call.get("status")
        if status == "invalid":  # schema errors come from the handler's tool; bad requests from the bridge
            return str((call.get("error") or {}).get("message", "")).startswith(_INVALID_BY_SCHEMA)
        return status in _HANDLER_STATUSES

    def handler(self, qualified_name: str) -> Any:
        async def handle(arguments: dict[str, Any]) -> Any:
            return self.answer(qualified_name, arguments)

        return handle

    def answer(self, tool: str, arguments: dict[str, Any]) -> Any:
        from kernel_agent.tools.bridge import _Refused

        encoded = wire.encode(arguments)[0]
        key = _json_text(encoded)
        cell = self.cell
        if cell is None:
            message = f"replay divergence: a call to {tool} arrived while no recorded cell was running"
            self.unrecorded.append((-1, f"{tool} {key} (outside any cell)"))
            raise _Refused(CallStatus.ERROR, message)
        match = next((c for c in self.pending if c.get("tool") == tool and self.keys[id(c)] == key), None)
        if match is None:
            if self.pending:
                expected = self.pending[0]
                hint = f"the next recorded call of this cell is {expected.get('tool')} " \
                       f"{_json_text(expected.get('arguments'))}"
            else:
                hint = f"the recording has no further calls in this cell ({len(cell.calls)} recorded)"
            self.unrecorded.append((cell.index, f"{tool} {key} in cell {cell.index} ({hint})"))
            raise _Refused(CallStatus.ERROR, f"replay divergence: the recording has no call {tool} {key} here; {hint}")
        self.pending.remove(match)
        self.served += 1
        status = match.get("status")
        if status != "ok":
            raw_error = match.get("error")
            error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
            raise _Refused(CallStatus(status), str(error.get("message", "")), error.get("details"))
        result = match.get("result")
        if _has_tag(result, {"bytes"}):
            note = (f"{tool} returned bytes, which a recording does not keep (only a reference to a binary "
                    "buffer): the replay cannot give them back")
            self.limitations.append((cell.index, note))
            raise _Refused(CallStatus.ERROR, f"replay limitation: {note}")
        for tag, module in (("ndarray", "numpy"), ("dataframe", "pandas"), ("series", "pandas")):
            if _has_tag(result, {tag}):
                try:
                    importlib.import_module(module)
                except ImportError:
                    self.limitations.append((cell.index, f"{tool} returned a {module} value, but {module} is "
                                                         "not installed here: it is given back as lists"))
        try:
            return wire.decode(result, [])
        except wire.DecodeError as exc:
            note = f"the recorded result of {tool} cannot be decoded: {exc}"
            self.limitations.append((cell.index, note))
            raise _Refused(CallStatus.ERROR, f"replay limitation: {note}") from None


def _buffer_count(value: Any) -> int:
    if isinstance(value, list):
        return max((_buffer_count(v) for v in value), default=0)
    if isinstance(value, dict):
        own = value["buffer"] + 1 if value.get(wire.TAG) == "bytes" and isinstance(value.get("buffer"), int) else 0
        return max([own, *(_buffer_count(v) for v in value.values())])
    return 0


def _arguments_key(recorded: Any) -> str:
    """The recorded arguments as a replayed call's arguments will look to the handler, re-encoded.

    The handler sees decoded arguments; decoding and encoding again is not
    always the identity (an object the kernel sent as its ``repr`` comes
    back as a plain string), so the recorded side goes through the same
    round trip. Bytes are compared by position only: a recording does not
    keep their content.
    """
    try:
        count = _buffer_count(recorded)
        if count > 10_000:
            raise wire.DecodeError("too many buffers")
        return _json_text(wire.encode(wire.decode(recorded, [b""] * count))[0])
    except (wire.DecodeError, RecursionError):
        return _json_text(recorded)


def recorded_tools(definitions: list[dict[str, Any]], server: RecordedTools) -> list[Any]:
    from kernel_agent.errors import ToolDefinitionError
    from kernel_agent.tools.tool import tool_from_schema

    tools = []
    for number, definition in enumerate(definitions):
        name = definition.get("name")
        namespace = definition.get("namespace")
        qualified = definition.get("qualified_name") or (f"{namespace}.{name}" if namespace else name)
        try:
            if namespace is not None and not isinstance(namespace, str):
                raise ToolDefinitionError(f"namespace {namespace!r} is not a string")
            built = tool_from_schema(
                {"name": name, "description": definition.get("description") or "",
                 "input_schema": definition.get("input_schema"), "output_schema": definition.get("output_schema")},
                server.handler(str(qualified)), namespace=namespace,
                read_only=bool(definition.get("read_only")), destructive=bool(definition.get("destructive")),
                takes_mapping=True, source=str(definition.get("source") or "schema"),
            )
        except ToolDefinitionError as exc:
            raise ReplayInputError(f"the recorded tool definition {number} ({qualified!r}) cannot be rebuilt: "
                                   f"{exc}") from None
        if built.qualified_name != qualified:
            raise ReplayInputError(f"the recorded tool definition {number} names itself {qualified!r} but is "
                                   f"{built.qualified_name!r}")
        # The arguments are matched as the kernel sent them (as the recording has them): a call the
        # original tool refused as invalid is answered with its recorded refusal, not re-validated.
        tools.append(dataclasses.replace(built, validate=lambda arguments: arguments))
    return tools


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

    from kernel_agent.cli.main import load_object

    live_tools: list[Any] | None = None
    if (args.tools or args.mcp) and not args.live:
        raise ReplayInputError("--tools and --mcp are for --live replays (a plain replay answers from the recording)")
    if args.live:
        from kernel_agent.tools.mcp import McpServer

        live_tools = []
        for spec in args.tools:
            loaded = load_object(spec)
            live_tools.extend(loaded if isinstance(loaded, (list, tuple)) else [loaded])
        live_tools.extend(McpServer.stdio(command) for command in args.mcp)
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
