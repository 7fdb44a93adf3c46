"""Serve a recorded session's tool calls inside the kernel, without kernel-agent's host.

Every recorded notebook starts with a *setup* cell (metadata kind
``"setup"``) that a kernel-agent session records but never runs::

    from kernel_agent.kernel.replay import serve_recording
    serve_recording("run.ipynb", session_id="...")

When standard Jupyter tooling re-executes the notebook with the
kernel-agent kernelspec (nbclient, ``jupyter nbconvert --execute``,
papermill, nbval), that cell runs first. It reads the notebook from the
kernel's working directory (these tools start the kernel in the notebook's
directory, which the sandbox provisioner makes the workspace), rebuilds
the session's tool SDK from the header (``tools.sdk_modules``) and attaches
a local bridge that answers every tool call from the recording:

* A code cell that starts running is matched, by its source, to the next
  recorded code cell with the same source; a call is answered by the first
  unanswered recorded call *of that cell* with the same tool name and the
  same (wire-encoded) arguments. A call that cell did not record is looked
  up among all unanswered recorded calls, in recording order (timing can
  move a background call into a neighbouring cell).
* A recorded result is returned decoded; a recorded error is raised as the
  same :class:`~kernel_agent.kernel.sdk.ToolError` subclass with the same
  message. Large values stand in the notebook as ``{"$side_file": sha,
  "bytes": n}`` and are read from ``<notebook stem>.files/<sha>.json``
  (checked against their name).
* A call the recording does not have raises a ToolError saying it is "not
  in the recording". So does a result that held ``bytes``: their content
  travels in binary buffers, which the recording does not keep.

``progress()`` and ``final_answer()`` are accepted and kept (on the bridge),
never printed, so the re-executed outputs are the recorded ones. The setup
cell itself prints nothing. It seeds ``random`` and NumPy's global generator
with the recorded seed (:mod:`kernel_agent.kernel.seeds`), as the session
seeded its kernel, so re-executed cells draw the recorded random values.

A cell that raised when it was recorded is tagged ``raises-exception``:
nbclient, nbconvert and nbval go on past it and compare its error with the
recorded one. papermill goes on past it too, but then fails the run on any
error output, whatever the tags (``papermill.execute.raise_for_execution_errors``
exempts only ``SystemExit(0)``). So when papermill runs the kernel (the
sandbox provisioner, in papermill's process, says so in
``KERNEL_AGENT_RUN_BY``), an error that reproduces the recorded one exactly
(same exception name and message, in the cell matched to it) is shown as its
traceback on stderr instead of as an error output: the cell still fails (its
reply says error), the run completes, and any error the recording does not
have is an error output that fails papermill's run, as a divergence should.

Runs in the kernel: imports only the standard library, :mod:`kernel_agent.protocol.wire`,
:mod:`kernel_agent.protocol.strict_json` and :mod:`kernel_agent.kernel` (IPython only
when serving). The notebook is parsed with the same strict, bounded JSON
reader as the host's, and every field is type-checked before use: a crafted
notebook ends in a ReplayError, not in an arbitrary exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel_agent.kernel import sdk, skills_import
from kernel_agent.kernel.seeds import seed_session
from kernel_agent.protocol import strict_json, wire
from kernel_agent.protocol.names import METADATA_KEY, SEED_MAX

SIDE_FILE_KEY = "$side_file"
MAX_NOTEBOOK_BYTES = 256 * 1024**2  # kernel_agent.record.reader's default cap (host code: not imported here)
NOT_RECORDED = "not in the recording"
RUN_BY_ENV = "KERNEL_AGENT_RUN_BY"  # set by kernel_agent.sandbox.provisioner: "papermill" when papermill launched us


class ReplayError(RuntimeError):
    """The recording cannot be served: notebook missing or unreadable, no SDK in its header..."""


# -- the recording --------------------------------------------------------------------------


@dataclass
class RecordedCall:
    """One tool call as the notebook recorded it (values still wire-encoded)."""

    tool: str
    arguments: Any
    status: str
    result: Any
    error: dict[str, Any]
    cell: int  # index into Recording.cells
    answered: bool = False


@dataclass
class RecordedCell:
    """A recorded code cell: its source and the calls it made."""

    seq: int | None
    source: str
    calls: list[RecordedCall] = field(default_factory=list)
    error: tuple[str, str] | None = None  # (ename, evalue) of the error it raised when recorded


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Recording:
    """The code cells and tool calls of a recorded notebook, and where its side files are."""

    def __init__(self, document: dict[str, Any], side_dirs: list[Path]) -> None:
        metadata = document.get("metadata")
        ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
        session = ours.get("session") if isinstance(ours, dict) else None
        if not isinstance(session, dict):
            raise ReplayError("the notebook has no kernel-agent session header (metadata.kernel_agent.session.session)")
        self.session: dict[str, Any] = session
        self.side_dirs = side_dirs
        self._side_values: dict[str, Any] = {}
        self.cells: list[RecordedCell] = []
        self.calls: list[RecordedCall] = []
        cells = document.get("cells")
        for cell in cells if isinstance(cells, list) else []:
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            cell_meta = cell.get("metadata")
            meta = cell_meta.get(METADATA_KEY) if isinstance(cell_meta, dict) else None
            if not isinstance(meta, dict) or meta.get("kind") == "setup":
                continue
            seq = meta.get("seq")
            recorded = RecordedCell(seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                                    source=_text(cell.get("source")), error=_recorded_error(cell.get("outputs")))
            calls = meta.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                if not isinstance(call, dict) or not isinstance(call.get("tool"), str):
                    continue
                raw_error = call.get("error")
                error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
                recorded.calls.append(RecordedCall(
                    tool=call["tool"], arguments=call.get("arguments"), status=str(call.get("status", "ok")),
                    result=call.get("result"), error=error, cell=len(self.cells)))
            self.cells.append(recorded)
            self.calls.extend(recorded.calls)

    @property
    def sdk_modules(self) -> dict[str, str]:
        """The generated SDK sources the session's kernel was given."""
        tools = self.session.get("tools")
        modules = tools.get("sdk_modules") if isinstance(tools, dict) else None
        if not isinstance(modules, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in modules.items()):
            raise ReplayError("the session header has no tools.sdk_modules (the notebook was recorded by a "
                              "kernel-agent version that did not keep the generated SDK), so its tools "
                              "cannot be rebuilt in the kernel")
        return dict(modules)

    def resolve(self, value: Any) -> Any:
        """A recorded value, with a side-file reference replaced by the file's content."""
        if not (isinstance(value, dict) and set(value) == {SIDE_FILE_KEY, "bytes"}
                and isinstance(value[SIDE_FILE_KEY], str)):
            return value
        digest = value[SIDE_FILE_KEY]
        if digest in self._side_values:
            return self._side_values[digest]
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ReplayError(f"invalid side-file reference {digest!r}")
        problems = []
        for directory in self.side_dirs:
            path = directory / f"{digest}.json"
            try:
                text = path.read_bytes()
            except FileNotFoundError:
                problems.append(f"{path}: missing")
                continue
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror}")
                continue
            if hashlib.sha256(text).hexdigest() != digest:
                raise ReplayError(f"side file {path} does not match its name (it was changed)")
            try:
                self._side_values[digest] = strict_json.loads(text, max_bytes=MAX_NOTEBOOK_BYTES)
            except strict_json.StrictJSONError as exc:
                raise ReplayError(f"side file {path} {exc}") from None
            return self._side_values[digest]
        raise ReplayError(f"the recorded value is in a side file that cannot be read ({'; '.join(problems)})")


def _recorded_error(outputs: Any) -> tuple[str, str] | None:
    """The (ename, evalue) of a recorded cell's error output, if it has one."""
    for output in outputs if isinstance(outputs, list) else []:
        if isinstance(output, dict) and output.get("output_type") == "error":
            return str(output.get("ename", "")), str(output.get("evalue", ""))
    return None


def find_notebook(name: str, session_id: str, directory: Path) -> tuple[Path, dict[str, Any]]:
    """The recording: ``directory/name``, else another notebook there recording ``session_id``.

    The notebook may have been renamed or copied (papermill writes an
    output notebook; the input keeps the recording either way).
    """
    candidates = [directory / name] if name else []
    try:
        candidates += sorted(p for p in directory.glob("*.ipynb") if p.name != name)
    except OSError:
        pass
    seen = []
    for path in candidates:
        try:
            document = strict_json.loads(path.read_bytes(), max_bytes=MAX_NOTEBOOK_BYTES)
        except (OSError, ValueError):
            continue  # unreadable, not strict JSON or too large (StrictJSONError is a ValueError)
        metadata = document.get("metadata") if isinstance(document, dict) else None
        ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
        session = ours.get("session") if isinstance(ours, dict) else None
        found = session.get("session_id") if isinstance(session, dict) else None
        if found == session_id:
            return path, document
        seen.append(path.name)
    raise ReplayError(f"no notebook recording session {session_id} in {directory} (looked for {name!r}"
                      f"{'; other notebooks: ' + ', '.join(seen) if seen else ''}). Jupyter tools start the kernel "
                      "in the notebook's directory: run them on the recorded notebook, with its side files next to it")


# -- the bridge -------------------------------------------------------------------------------


class RecordingBridge:
    """A local bridge (see :class:`kernel_agent.kernel.sdk.Bridge`) that answers from a recording."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.current: int | None = None  # the recorded cell the running cell was matched to
        self._next_cell = 0
        self._lock = threading.Lock()
        self.unrecorded: list[tuple[str, Any]] = []  # calls answered "not in the recording"
        self.progress: list[dict[str, Any]] = []
        self.final_answers: list[Any] = []

    def begin_cell(self, source: str) -> None:
        """A cell starts: match it to the next recorded code cell with this source (if any)."""
        wanted = source.rstrip()
        with self._lock:
            self.current = None
            for index in range(self._next_cell, len(self.recording.cells)):
                if self.recording.cells[index].source.rstrip() == wanted:
                    self.current, self._next_cell = index, index + 1
                    return

    def reproduces_recorded_error(self, ename: str, evalue: str) -> bool:
        """Whether the running cell was matched to a recorded cell that raised exactly this."""
        current = self.current
        return current is not None and self.recording.cells[current].error == (ename, evalue)

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Answer a call with its recorded result, or raise its recorded error."""
        data = wire.inline_buffers(*wire.encode(arguments))  # arrays and tables as the recording keeps them
        wanted = _canonical(json.loads(json.dumps(data)))
        unreadable: list[str] = []
        with self._lock:
            call = self._take(tool, wanted, unreadable)
            if call is None:
                self.unrecorded.append((tool, data))
        if call is None:
            unreadable = list(dict.fromkeys(unreadable))
            also = f" ({len(unreadable)} recorded call(s) of {tool} could not be compared: {unreadable[0]})" \
                if unreadable else ""
            raise sdk.ToolError(tool, f"this call is {NOT_RECORDED}: the recorded session made no (further) call "
                                f"of {tool} with these arguments, so re-executing the notebook cannot answer it"
                                f"{also}", kind="error")
        return self._outcome(call)

    async def call_async(self, tool: str, arguments: dict[str, Any]) -> Any:
        """The same as :meth:`call` (answers are local, nothing to wait for)."""
        return self.call(tool, arguments)

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        """progress() and final_answer(): accepted silently (kept on the bridge)."""
        if kind == "final_answer":
            self.final_answers.append(payload.get("value"))
        elif kind == "progress":
            self.progress.append(payload)

    def _take(self, tool: str, wanted: str, unreadable: list[str]) -> RecordedCall | None:
        recording = self.recording
        pools = []
        if self.current is not None:
            pools.append(recording.cells[self.current].calls)
        pools.append(recording.calls)
        for pool in pools:
            for call in pool:
                if call.answered or call.tool != tool:
                    continue
                try:
                    arguments = recording.resolve(call.arguments)
                except ReplayError as exc:
                    unreadable.append(str(exc))  # an unreadable side file: cannot be matched
                    continue
                if _canonical(arguments) == wanted:
                    call.answered = True
                    return call
        return None

    def _outcome(self, call: RecordedCall) -> Any:
        tool = call.tool
        if call.status != "ok":
            details = call.error.get("details")
            try:
                details = wire.decode(details)
            except wire.DecodeError:
                pass
            kind = str(call.error.get("kind", call.status))
            error_class = sdk.ERROR_KINDS.get(kind, sdk.ToolError)
            raise error_class(tool, str(call.error.get("message", "the tool failed")), kind=kind, details=details)
        try:
            value = self.recording.resolve(call.result)
        except ReplayError as exc:
            raise sdk.ToolError(tool, f"the recorded result cannot be served: {exc}", kind="error") from None
        try:
            return wire.decode(value)
        except wire.DecodeError as exc:
            if _holds_bytes(value):
                message = ("the recorded result holds bytes, whose content the recording does not keep "
                           "(binary buffers are not recorded), so it cannot be served")
            else:
                message = f"the recorded result cannot be decoded: {exc}"
            raise sdk.ToolError(tool, message, kind="error") from None


def _holds_bytes(value: Any) -> bool:
    """Whether a wire-encoded value has a bytes tag anywhere (iterative: the value is recorded input)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get(wire.TAG) == "bytes":
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# -- installing it in the kernel ------------------------------------------------------------------

_served: tuple[RecordingBridge, Callable[[Any], None]] | None = None


def _seed_as_recorded(header: dict[str, Any]) -> None:
    """Seed ``random`` and NumPy as the recorded session's kernel was (an int in range only), so re-executed
    cells draw the recorded values; a recording without a usable seed leaves the generators as they are."""
    entry = header.get("seed")
    value = entry.get("value") if isinstance(entry, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX:
        seed_session(value)


def serve_recording(notebook: str, session_id: str) -> None:
    """Answer this kernel's tool calls from the recording in ``notebook`` (the setup cell calls this).

    Puts the session's ``tools`` (and ``progress``, ``final_answer``, the
    ToolError family) into the user namespace. Prints nothing. Refuses when
    a kernel-agent host is attached: a live session's tools run on its host.
    """
    global _served
    from IPython import get_ipython

    if not isinstance(sdk._bridge, (sdk._Detached, RecordingBridge)):
        raise ReplayError("a kernel-agent host is attached to this kernel: its tools run on the host, "
                          "so the recording is not served (a session never runs the setup cell)")
    directory = Path(os.getcwd())
    path, document = find_notebook(notebook, session_id, directory)
    side_dirs = list(dict.fromkeys([path.with_name(f"{path.stem}.files"),
                                    directory / f"{Path(notebook).stem}.files"]))
    recording = Recording(document, side_dirs)
    tools = sdk.build_tools(recording.sdk_modules)
    bridge = RecordingBridge(recording)

    shell = get_ipython()
    if shell is None:
        raise ReplayError("serve_recording runs in an IPython kernel (the setup cell of a recorded notebook)")
    if _served is not None:
        try:
            shell.events.unregister("pre_run_cell", _served[1])
        except ValueError:
            pass

    def before_cell(info: Any) -> None:
        bridge.begin_cell(str(getattr(info, "raw_cell", "") or ""))

    shell.events.register("pre_run_cell", before_cell)
    _served = (bridge, before_cell)
    sdk.attach(bridge)
    skills_import.install()  # a recorded `from skills import NAME` is served its recorded version
    _seed_as_recorded(recording.session)
    shell.user_ns.update(sdk.model_names(tools))
    if os.environ.get(RUN_BY_ENV) == "papermill":
        shell.set_custom_exc((Exception,), _reproduced_errors_on_stderr(bridge))


def _reproduced_errors_on_stderr(bridge: RecordingBridge) -> Callable[..., Any]:
    """An IPython exception handler: a recorded error reproduced goes to stderr, any other is shown as usual."""
    def handler(shell: Any, etype: type[BaseException], value: BaseException, tb: Any,
                tb_offset: int | None = None) -> list[str] | None:
        if not bridge.reproduces_recorded_error(etype.__name__, str(value)):
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=True)
            return None
        structured: list[str] = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        print(shell.InteractiveTB.stb2text(structured), file=sys.stderr, flush=True)
        return structured

    return handler


def served() -> RecordingBridge | None:
    """The bridge serving the recording in this kernel, if :func:`serve_recording` ran."""
    return _served[0] if _served is not None else None
