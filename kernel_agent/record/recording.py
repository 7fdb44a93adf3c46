"""A recorded session as the host reads it back: its header, tool definitions and code cells (for replay,
resume and restore), and the checks every reader of a recording shares (audit included).

Read through the one hardened reader (:mod:`kernel_agent.record.reader`);
:func:`read_recorded_document` adds what makes a notebook a recording this
code reads (kernel-agent's metadata, the format version: one rule for audit,
replay, resume and restore); side files are resolved next to the notebook
the caller named, never elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from kernel_agent.errors import RecordingError, UnusableRecordError
from kernel_agent.protocol import wire
from kernel_agent.protocol.calls import CallStatus
from kernel_agent.record import format as fmt
from kernel_agent.record.journal import journal_path_for, read_journal
from kernel_agent.record.reader import read_notebook, read_side_file

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CALL_STATUSES = {status.value for status in CallStatus}
#: The recording formats this kernel-agent reads (and audits): the one it writes.
READABLE_FORMATS = (fmt.FORMAT_VERSION,)


class ReplayInputError(UnusableRecordError):
    """The notebook cannot be replayed: not JSON, not a kernel-agent recording, a side file missing..."""


def read_recorded_document(path: Path) -> dict[str, Any]:
    """The recorded notebook as JSON, as recorded, after the checks every consumer shares.

    The reader's (a plain file, strict bounded JSON, field types), then:
    kernel-agent's metadata is there and its format is one this code reads.
    UnusableRecordError says in one line what is wrong. Audit verifies the
    returned document; :func:`load_recording` builds a :class:`Recording`.
    """
    document = read_notebook(path)
    metadata = document.get("metadata")
    ours = metadata.get(fmt.METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(ours, dict):
        raise UnusableRecordError(f"{path} is not a kernel-agent recording: it is a Jupyter notebook but was not "
                                  f"recorded by kernel-agent (no metadata.{fmt.METADATA_KEY})")
    version = ours.get("format")
    if isinstance(version, bool) or version not in READABLE_FORMATS:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > max(READABLE_FORMATS)
        raise UnusableRecordError(
            f"{path} uses recording format {version!r}; this kernel-agent reads format "
            f"{' and '.join(map(str, READABLE_FORMATS))}" + (" (upgrade kernel-agent to read it)" if newer else ""))
    return document


def json_text(value: Any) -> str:
    """Canonical JSON that tolerates what a recording may hold (NaN, odd floats)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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
                   for (s, _), (_, e) in zip(times[1:], times[:-1], strict=True))


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
    """Read and check a recorded notebook (replay, resume, restore); ReplayInputError says what makes it unusable."""
    try:
        document = read_recorded_document(path)
    except ReplayInputError:
        raise
    except RecordingError as exc:
        raise ReplayInputError(str(exc)) from None
    ours = document["metadata"][fmt.METADATA_KEY]
    if not isinstance(ours.get("session"), dict):
        raise ReplayInputError(f"{path} is not a kernel-agent recording (no metadata.{fmt.METADATA_KEY}.session)")
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
        return journaled if json_text(journaled) == json_text(recorded) else recorded

    unordered = False
    for cell in recording.cells:
        meta = ordered.get(cell.seq) if cell.seq is not None else None
        calls = meta.get("tool_calls") if meta else None
        if isinstance(calls, list) and len(calls) == len(cell.calls):
            for call, journaled in zip(cell.calls, calls, strict=True):
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
