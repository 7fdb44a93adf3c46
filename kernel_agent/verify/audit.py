"""``kernel-agent audit NOTEBOOK``: verify a recorded notebook and summarise its session.

A recorded notebook is evidence: someone reviewing what an agent did needs
to know that the cells they read are the cells that ran, in that order, all
of them, with the tool results that came back. The recorder chains every
cell's hash to the previous one (see :mod:`kernel_agent.record.format`);
this module recomputes that chain from the file and names the first thing
that does not fit, as precisely as the evidence allows (which cell, by its
index in the notebook, its seq, id and first line).

Verdicts and exit statuses:

* ``INTACT`` (0): every cell links to the previous one, the header matches
  the genesis, the metadata's length and head match the last cell, every
  side file matches its name, and the HMAC (when a key is given) is right.
* ``TAMPERED: ...`` (1): something covered by the chain was changed, removed,
  inserted or reordered, or a key was given and the signature is wrong or
  absent.
* ``INCOMPLETE: ...`` (1): nothing was shown to be changed, but part of the
  record is missing: cells at the end (truncated), a side file, or the
  session's close.
* unusable input (2): not a file, not JSON, not a notebook, not recorded by
  kernel-agent, or a format version this code does not read.

The summary is computed from the cells, never from the notebook's
``totals`` (which the chain does not cover). The input is only ever read.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, Field

from kernel_agent.errors import RecordingError
from kernel_agent.record import format as fmt
from kernel_agent.record import reader, signing
from kernel_agent.record.recorder import load_notebook_json, side_files_dir

EXIT_INTACT = 0
EXIT_PROBLEM = 1
EXIT_UNUSABLE = 2

Severity = Literal["tampered", "incomplete", "note"]
HmacStatus = Literal["valid", "invalid", "unsigned", "not_checked"]
SignatureStatus = HmacStatus

_HEX64 = re.compile(r"[0-9a-f]{64}")
# Top-level cell keys the recorder writes; anything else (with content) is not covered by the chain.
_KNOWN_CELL_KEYS = {"cell_type", "id", "metadata", "source", "outputs", "execution_count"}
_TOOL_ERROR_STATUSES = {"error", "invalid", "timeout", "budget", "unknown_tool"}


class AuditInputError(RecordingError):
    """The input cannot be audited at all (exit status 2); the message says why, in one line."""


# -- the report ------------------------------------------------------------------------


class CellRef(BaseModel):
    """Which cell a problem is about, in every way a reader might look for it."""

    index: int = Field(description="0-based position in the notebook's cells list")
    seq: int | None = Field(description="the cell's position in the chain (metadata.kernel_agent.seq)")
    id: str | None
    cell_type: str | None
    first_line: str

    def describe(self) -> str:
        """``cell at index 3 (seq 3, id ab12, code: "print(1)")``."""
        parts = [f"seq {self.seq}" if self.seq is not None else "no seq"]
        if self.id:
            parts.append(f"id {self.id}")
        parts.append(f"{self.cell_type or 'cell'}: {json.dumps(self.first_line, ensure_ascii=False)}")
        return f"the cell at index {self.index} ({', '.join(parts)})"


class Problem(BaseModel):
    """One finding. ``note``s inform and never change the verdict."""

    kind: str
    severity: Severity
    message: str
    cell: CellRef | None = None
    side_file: str | None = None


class ToolUsage(BaseModel):
    """How one tool was called during the session."""

    calls: int = 0
    ok: int = 0
    errors: int = 0
    denied: int = 0
    statuses: dict[str, int] = Field(default_factory=dict)
    destructive: bool | None = Field(default=None, description="from the header's tool definitions; None: not defined")


class Summary(BaseModel):
    """What happened in the session, recomputed from the cells."""

    session_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    model: Any = None
    sandbox_mode: str | None = None
    confined: bool | None = None
    loosenings: list[str] = Field(default_factory=list)
    limits_not_enforced: list[str] = Field(default_factory=list)
    task: str | None = None
    cells: int = 0
    steps: int = Field(default=0, description="code cells")
    messages: int = Field(default=0, description="markdown cells other than the task")
    errors: int = 0
    timeouts: int = 0
    kernel_deaths: int = 0
    kernel_restarts: int = 0
    state_losses: int = 0
    tool_calls: int = 0
    tools: dict[str, ToolUsage] = Field(default_factory=dict)
    destructive_tools: list[str] = Field(default_factory=list, description="tools the header defines as destructive")
    tokens: dict[str, int | float] = Field(default_factory=dict)
    seconds_in_cells: float = 0.0
    wall_seconds: float | None = Field(default=None, description="from the header's started_at to ended_at")
    has_final_answer: bool = False
    final_answer: Any = None
    end_reason: str | None = Field(default=None, description="why the session ended, from the sealed end")
    settings: dict[str, Any] = Field(default_factory=dict, description="the session's limits, timeouts and budgets")
    record_reachable_from_sandbox: str | None = Field(
        default=None, description="why the sandbox could write this record (None: it could not, or not recorded)")


class ChainReport(BaseModel):
    """The chain as recorded in the metadata, and as found in the cells."""

    algorithm: Any = None
    genesis: Any = None
    head: Any = None
    length: Any = None
    computed_genesis: str | None = None
    chained_cells: int = Field(default=0, description="cells with kernel-agent metadata that take part in the chain")
    hmac: HmacStatus = "unsigned"
    signature: SignatureStatus = "unsigned"


class AuditReport(BaseModel):
    """Everything ``kernel-agent audit`` found; ``--json`` prints exactly this."""

    notebook: str
    verdict: Literal["intact", "tampered", "incomplete"]
    headline: str = Field(description="the first line of the text report")
    exit_code: int
    problems: list[Problem] = Field(description="tampered/incomplete findings, in notebook order")
    notes: list[Problem]
    chain: ChainReport
    summary: Summary


class UnusableReport(BaseModel):
    """What ``--json`` prints when the input cannot be audited."""

    notebook: str
    verdict: Literal["unusable"] = "unusable"
    exit_code: int = EXIT_UNUSABLE
    error: str


# -- loading -------------------------------------------------------------------------------


def load_recorded_notebook(path: Path) -> dict[str, Any]:
    """The notebook as JSON, or AuditInputError saying in one line why it cannot be audited."""
    if not path.exists():
        raise AuditInputError(f"{path} does not exist")
    if path.is_dir():
        raise AuditInputError(f"{path} is a directory, not a notebook file")
    try:
        document = load_notebook_json(path)
    except RecordingError as exc:
        raise AuditInputError(str(exc)) from None
    metadata = document.get("metadata")
    ours = metadata.get(fmt.METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(ours, dict):
        raise AuditInputError(f"{path} is a Jupyter notebook but was not recorded by kernel-agent "
                              f"(no metadata.{fmt.METADATA_KEY})")
    version = ours.get("format")
    if version != fmt.FORMAT_VERSION or isinstance(version, bool):
        raise AuditInputError(f"{path} uses recording format {version!r}; this kernel-agent reads "
                              f"format {fmt.FORMAT_VERSION} (upgrade kernel-agent to audit it)")
    algorithm = (ours.get("chain") or {}).get("algorithm") if isinstance(ours.get("chain"), dict) else None
    if algorithm not in (None, "sha256"):
        raise AuditInputError(f"{path} uses chain algorithm {algorithm!r}; this kernel-agent verifies sha256 only")
    return document


def read_key(key_env: str | None, key_file: str | None) -> bytes | None:
    """The HMAC key: from ``key_file`` (a trailing newline is dropped), else the environment.

    An explicitly named variable that is unset is an error (the user asked for
    a check that cannot run); the default variable being unset means "no key".
    An empty key means no key, as when recording.
    """
    if key_file is not None:
        try:
            key = Path(key_file).read_bytes()
        except OSError as exc:
            raise AuditInputError(f"cannot read the key file {key_file}: {exc.strerror}") from None
        key = key.rstrip(b"\r\n")
        if not key:
            raise AuditInputError(f"the key file {key_file} is empty")
        return key
    name = key_env or fmt.AUDIT_KEY_ENV
    value = os.environ.get(name)
    if not value:
        if key_env is not None:
            raise AuditInputError(f"the environment variable {key_env} is not set (or empty): no key to check with")
        return None
    return value.encode()


# -- cells ------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return ""


def _first_line(source: str, limit: int = 72) -> str:
    line = next((part for part in source.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class _Cell:
    """One entry of the notebook's cells list, with its kernel-agent metadata if it has any."""

    index: int
    raw: dict[str, Any]
    ours: dict[str, Any] | None
    seq: int | None

    @classmethod
    def of(cls, index: int, raw: Any) -> _Cell:
        cell = raw if isinstance(raw, dict) else {}
        metadata = cell.get("metadata")
        ours = metadata.get(fmt.METADATA_KEY) if isinstance(metadata, dict) else None
        ours = ours if isinstance(ours, dict) else None
        seq = ours.get("seq") if ours is not None else None
        valid = isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0
        return cls(index, cell, ours, seq if valid else None)

    @property
    def ref(self) -> CellRef:
        cell_id = self.raw.get("id")
        cell_type = self.raw.get("cell_type")
        return CellRef(index=self.index, seq=self.seq, id=cell_id if isinstance(cell_id, str) else None,
                       cell_type=cell_type if isinstance(cell_type, str) else None,
                       first_line=_first_line(_text(self.raw.get("source"))))

    @property
    def stored_hash(self) -> str | None:
        value = (self.ours or {}).get("hash")
        return value if isinstance(value, str) else None

    @property
    def kind(self) -> str | None:
        value = (self.ours or {}).get("kind")
        return value if isinstance(value, str) else None


def _link(previous: str, cell: dict[str, Any]) -> str | None:
    """The cell's hash given its predecessor's, or None if the cell cannot be hashed at all."""
    try:
        return fmt.cell_hash(previous, cell)
    except (TypeError, ValueError, AttributeError):
        return None


def _links(previous: str | None, cell: _Cell) -> bool:
    return previous is not None and cell.stored_hash is not None and _link(previous, cell.raw) == cell.stored_hash


# -- verification -------------------------------------------------------------------------------


@dataclass
class _Finding:
    """A problem and where it sorts: header first, then by notebook index, then the end of the chain."""

    position: float
    problem: Problem


class _Verifier:
    """Recomputes the chain of one notebook and collects what does not fit."""

    def __init__(self, path: Path, document: dict[str, Any], key: bytes | None,
                 public_key: Ed25519PublicKey | None = None) -> None:
        self.path = path
        self.meta: dict[str, Any] = document["metadata"][fmt.METADATA_KEY]
        chain = self.meta.get("chain")
        self.chain: dict[str, Any] = chain if isinstance(chain, dict) else {}
        header = self.meta.get("session")
        self.header: dict[str, Any] | None = header if isinstance(header, dict) else None
        self.key = key
        self.public_key = public_key
        self.signature_status: SignatureStatus = "unsigned"
        self.cells = [_Cell.of(i, raw) for i, raw in enumerate(document["cells"])]
        self.findings: list[_Finding] = []
        self.genuine: dict[int, _Cell] = {}  # seq -> the cell taking part in the chain
        self.genesis_used: str | None = None
        self.side_file_values: dict[str, Any] = {}  # verified side files, parsed
        self.hmac_status: HmacStatus = "unsigned"
        self.computed_genesis: str | None = None

    def add(self, position: float, kind: str, severity: Severity, message: str,
            cell: _Cell | None = None, side_file: str | None = None) -> None:
        self.findings.append(_Finding(position, Problem(kind=kind, severity=severity, message=message,
                                                        cell=cell.ref if cell else None, side_file=side_file)))

    def run(self) -> None:
        if self.check_records():
            self.check_foreign_cells()
            self.pick_genuine_cells()
            self.check_genesis()
            self.check_order()
            self.check_gaps()
            self.check_links()
            self.check_end()
            self.check_side_files()
        self.check_sealed()
        self.check_hmac()
        self.check_signature()

    # each check --------------------------------------------------------------------------

    def check_records(self) -> bool:
        """The header and the chain record must exist for anything else to be checked."""
        if self.header is None:
            self.add(-1, "header_missing", "tampered",
                     f"the session header (metadata.{fmt.METADATA_KEY}.session) is missing: the chain cannot be checked")
        if not self.chain:
            self.add(-1, "chain_missing", "tampered",
                     f"the chain record (metadata.{fmt.METADATA_KEY}.chain) is missing: the chain cannot be checked")
        return self.header is not None and bool(self.chain)

    def check_foreign_cells(self) -> None:
        """Cells without kernel-agent metadata (or a valid seq) were not written by the recorder."""
        for cell in self.cells:
            if cell.seq is not None:
                self.check_uncovered_keys(cell)
                continue
            if not cell.raw:
                why = "is not a JSON object"
            elif cell.ours is None:
                why = "has no kernel-agent metadata"
            else:
                why = "has kernel-agent metadata without a valid seq"
            self.add(cell.index, "cell_inserted", "tampered",
                     f"a cell was inserted: {cell.ref.describe()} {why}", cell)

    def check_uncovered_keys(self, cell: _Cell) -> None:
        """Content the chain does not hash (attachments, unknown keys) must not be smuggled into a cell."""
        extra = sorted(k for k, v in cell.raw.items() if k not in _KNOWN_CELL_KEYS and v not in ({}, [], None, ""))
        if extra:
            self.add(cell.index, "uncovered_content", "tampered",
                     f"{cell.ref.describe()} carries content the recording never wrote and the chain does not "
                     f"cover: {', '.join(extra)}", cell)

    def pick_genuine_cells(self) -> None:
        """One cell per seq takes part in the chain; the others with the same seq were inserted (copies)."""
        groups: dict[int, list[_Cell]] = {}
        for cell in self.cells:
            if cell.seq is not None:
                groups.setdefault(cell.seq, []).append(cell)
        recorded = self.chain.get("genesis")
        genesis = [self._genesis_candidate(), recorded if isinstance(recorded, str) else None]
        for seq in sorted(groups):
            group = groups[seq]
            previous = genesis if seq == 0 else [self.genuine[seq - 1].stored_hash if seq - 1 in self.genuine else None]
            linking = [cell for cell in group if any(_links(p, cell) for p in previous)]
            chosen = linking[0] if linking else group[0]
            self.genuine[seq] = chosen
            for other in group:
                if other is not chosen:
                    self.add(other.index, "duplicate_seq", "tampered",
                             f"a cell was inserted: {other.ref.describe()} repeats seq {seq}, which belongs to "
                             f"the cell at index {chosen.index}", other)

    def _genesis_candidate(self) -> str | None:
        assert self.header is not None
        try:
            self.computed_genesis = fmt.genesis_hash(self.header)
        except (TypeError, ValueError):
            self.computed_genesis = None
        return self.computed_genesis

    def check_genesis(self) -> None:
        """The header's hash must be the chain's genesis; when not, tell an edited header from an edited genesis."""
        recorded = self.chain.get("genesis")
        computed = self.computed_genesis
        if computed is not None and recorded == computed:
            self.genesis_used = computed
            return
        first = self.genuine.get(0)
        if computed is not None and first is not None and _links(computed, first):
            self.add(-1, "genesis_changed", "tampered",
                     f"metadata.{fmt.METADATA_KEY}.chain.genesis was changed: it is {recorded!r}, but the session "
                     f"header hashes to {computed}, from which the first cell's hash follows")
            self.genesis_used = computed
            return
        hashed = f"it hashes to {computed}" if computed else "it cannot be hashed (not plain JSON)"
        self.add(-1, "header_changed", "tampered",
                 f"the session header (metadata.{fmt.METADATA_KEY}.session) was changed: {hashed}, "
                 f"but the chain's genesis is {recorded!r}")
        self.genesis_used = recorded if isinstance(recorded, str) else computed

    def check_order(self) -> None:
        """Chained cells must appear in the notebook in seq order; name the first one that does not."""
        highest: _Cell | None = None
        for cell in sorted(self.genuine.values(), key=lambda c: c.index):
            assert cell.seq is not None
            if highest is not None and highest.seq is not None and cell.seq < highest.seq:
                self.add(highest.index, "reordered", "tampered",
                         f"cells were reordered: {cell.ref.describe()} comes after seq {highest.seq} "
                         f"(at index {highest.index}), which was recorded after it", cell)
                return
            highest = cell

    def check_gaps(self) -> None:
        """Every seq from 0 to the last one present must be there; a hole is a removed cell.

        Walks the seqs present, never the range between them: a forged seq may be huge.
        """
        expected = 0
        for seq in sorted(self.genuine):
            if seq > expected:
                found = self.genuine[seq]
                what = (f"a cell was removed (seq {expected})" if seq == expected + 1
                        else f"{seq - expected} cells were removed (seq {expected}-{seq - 1})")
                self.add(found.index, "cell_removed", "tampered",
                         f"{what}: expected seq {expected}, found seq {seq} at {found.ref.describe()}", found)
            expected = seq + 1

    def check_links(self) -> None:
        """Each chained cell must hash, from its predecessor's recorded hash, to its own recorded hash.

        Linking each cell to its predecessor's *recorded* hash (not the recomputed
        one) localises an edit to the one cell that was changed.
        """
        for seq in sorted(self.genuine):
            cell = self.genuine[seq]
            previous = self.genesis_used if seq == 0 else (
                self.genuine[seq - 1].stored_hash if seq - 1 in self.genuine else None)
            if previous is None:
                continue  # its predecessor is missing: reported as a removal
            if cell.stored_hash is None:
                self.add(cell.index, "hash_missing", "tampered",
                         f"{cell.ref.describe()} has no recorded hash (metadata.{fmt.METADATA_KEY}.hash)", cell)
                continue
            computed = _link(previous, cell.raw)
            if computed == cell.stored_hash:
                self._note_editor_metadata(cell)
                continue
            if computed is None:
                why = "cannot be hashed (malformed cell)"
            else:
                why = "does not match its recorded hash: its content (source, outputs or metadata) was changed"
                if seq == 0:
                    why += " (or the session header was changed and the genesis updated to match)"
            self.add(cell.index, "content_changed", "tampered", f"{cell.ref.describe()} {why}", cell)

    def _note_editor_metadata(self, cell: _Cell) -> None:
        """An editor may add UI state (collapsed, trusted, jupyter.source_hidden...) to a verified cell.

        The chain does not cover it (only our metadata and the tags), so the
        recorded content is unchanged; say which keys were added, since some
        change what a viewer shows.
        """
        metadata = cell.raw.get("metadata")
        added = sorted(k for k in metadata if k not in (fmt.METADATA_KEY, "tags")) if isinstance(metadata, dict) else []
        if added:
            self.add(cell.index, "ui_metadata", "note",
                     f"{cell.ref.describe()} has editor metadata the recording did not write ({', '.join(added)}); "
                     "the recorded content is unchanged", cell)

    def check_end(self) -> None:
        """The metadata's length and head must describe the last chained cell: else cells are missing or added."""
        length, head = self.chain.get("length"), self.chain.get("head")
        last_seq = max(self.genuine) if self.genuine else -1
        found = last_seq + 1
        last = self.genuine.get(last_seq)
        last_hash = (last.stored_hash if last else self.genesis_used)
        end = len(self.cells)
        if not isinstance(length, int) or isinstance(length, bool) or not isinstance(head, str):
            self.add(end, "chain_malformed", "tampered",
                     f"metadata.{fmt.METADATA_KEY}.chain has no valid length and head: the end of the chain cannot be checked")
        elif length > found:
            after = f"its last chained cell is seq {last_seq}" if last_seq >= 0 else "it has no chained cells"
            self.add(end, "truncated", "incomplete",
                     f"the notebook is truncated: the chain records {length} cells but {after}; "
                     f"{length - found} cell(s) at the end are missing")
        elif length < found:
            self.add(end, "cells_appended", "tampered",
                     f"cells were added after the recorded end: the chain records {length} cells but the notebook "
                     f"has seq up to {last_seq}")
        elif head != last_hash:
            self.add(end, "head_changed", "tampered",
                     f"metadata.{fmt.METADATA_KEY}.chain.head does not match the hash of the last cell (seq {last_seq})")

    def check_side_files(self) -> None:
        """Each referenced side file must exist and hash to its name."""
        checked: set[str] = set()
        for seq in sorted(self.genuine):
            cell = self.genuine[seq]
            for where, reference in _side_file_references(cell.ours or {}):
                digest = reference[fmt.SIDE_FILE_KEY]
                if digest in checked:
                    continue
                checked.add(digest)
                self._check_side_file(cell, where, digest, reference["bytes"])

    def _check_side_file(self, cell: _Cell, where: str, digest: str, size: int) -> None:
        name = f"{digest}.json"
        label = f"side file {name} ({where} of {cell.ref.describe()})"
        try:
            # Through the one reader: next to the notebook only, no link followed, size-capped.
            data = reader.side_file_bytes(self.path, digest, verify=False)
        except reader.SideFileMissingError:
            self.add(cell.index, "side_file_missing", "incomplete",
                     f"{label} is missing from {side_files_dir(self.path)}/ (if the notebook was copied or renamed, "
                     "copy or rename its .files directory with it)", cell, name)
            return
        except RecordingError as exc:
            self.add(cell.index, "side_file_unusable", "tampered",
                     f"{label} is not a file the recorder writes: {exc}", cell, name)
            return
        if fmt.sha256_hex(data) != digest or len(data) != size:
            self.add(cell.index, "side_file_changed", "tampered",
                     f"{label} does not match its hash: its content was changed", cell, name)
            return
        try:
            self.side_file_values[digest] = reader.parse(data, f"the side file {name}")
        except RecordingError:
            pass  # hashes right yet is not strict JSON: the recorder never writes that; the reference stays

    def check_sealed(self) -> None:
        """The end record must exist and be chained by the seal: else the record may lack its last cells."""
        where = len(self.cells) + 0.5
        end, seal = self.meta.get("end"), self.chain.get("seal")
        if end is None:
            if seal is not None:
                self.add(where, "end_removed", "tampered", f"the chain is sealed but its end record "
                         f"(metadata.{fmt.METADATA_KEY}.end) was removed")
                return
            how = " (rebuilt by recover from its journal)" if self.meta.get("recovered") else ""
            self.add(where, "not_sealed", "incomplete",
                     f"the session has no sealed end{how}: it is still running, its host stopped before the end, "
                     "or its end was cut off together with any cells after the ones shown")
            return
        try:
            computed = fmt.seal_hash(str(self.chain.get("head")), end) if isinstance(end, dict) else None
        except (TypeError, ValueError):
            computed = None
        if computed is None or seal != computed:
            self.add(where, "end_changed", "tampered", f"the end record (metadata.{fmt.METADATA_KEY}.end) does not "
                     "match the chain's seal: the end (its counts, totals or settings) or the seal was changed")
            return
        if end.get("cells") != self.chain.get("length") or end.get("head") != self.chain.get("head"):
            self.add(where, "end_mismatch", "tampered",
                     f"the sealed end records {end.get('cells')!r} cells ending at {str(end.get('head'))[:16]}…, but "
                     f"the chain records {self.chain.get('length')!r} ending at {str(self.chain.get('head'))[:16]}…")

    def statement(self) -> str:
        """What the HMAC and the signature sign: genesis, length, head and seal as recorded."""
        chain = self.chain
        seal = chain.get("seal")
        return fmt.chain_statement(str(chain.get("genesis")), chain.get("length") if isinstance(
            chain.get("length"), int) else -1, str(chain.get("head")), seal if isinstance(seal, str) else None)

    def check_hmac(self) -> None:
        """With a key the head must be signed with it; without one, say what could not be checked."""
        recorded = self.chain.get("hmac")
        end = len(self.cells) + 1
        if self.key is None:
            self.hmac_status = "not_checked" if recorded else "unsigned"
            if recorded:
                self.add(end, "hmac_not_checked", "note", "the chain is signed, but no key was given, so the "
                         f"signature was not checked (set {fmt.AUDIT_KEY_ENV} or use --key-file)")
            elif self.chain.get("signature") is None:
                self.add(end, "unsigned", "note", "the chain is not signed (recorded without a key): it shows the "
                         "cells are consistent, not who wrote them")
            return
        if not recorded:
            self.hmac_status = "unsigned"
            self.add(end, "unsigned", "tampered", "the chain is unsigned but a key was given: its HMAC is missing, "
                     "so a rewritten chain cannot be told from the original")
            return
        expected = fmt.hmac_statement(self.statement(), self.key)
        if isinstance(recorded, str) and hmac.compare_digest(expected.encode(), recorded.encode()):
            self.hmac_status = "valid"
            return
        self.hmac_status = "invalid"
        self.add(end, "hmac_invalid", "tampered",
                 "the chain's HMAC does not match the key: the chain or its end was rewritten, or the key is not the "
                 "one it was recorded with")

    def check_signature(self) -> None:
        """With a public key the chain must carry a valid Ed25519 signature by it; without one, say what is there."""
        recorded = self.chain.get("signature")
        end = len(self.cells) + 1.5
        record = recorded if isinstance(recorded, dict) else {}
        embedded = record.get("public_key") if isinstance(record.get("public_key"), str) else None
        value = record.get("value") if isinstance(record.get("value"), str) else None
        if self.public_key is None:
            if recorded is not None:
                self.signature_status = "not_checked"
                owner = f" by key {signing.fingerprint(embedded)}" if embedded and _HEX64.fullmatch(embedded) else ""
                self.add(end, "signature_not_checked", "note", f"the chain is signed{owner}, but no public key was "
                         "given, so the signature was not checked (use --public-key)")
            return
        if recorded is None:
            self.signature_status = "unsigned"
            self.add(end, "signature_missing", "tampered", "a public key was given but the chain has no signature: "
                     "a rewritten chain cannot be told from the original")
            return
        if value is not None and signing.verify(self.public_key, self.statement(), value):
            self.signature_status = "valid"
            return
        self.signature_status = "invalid"
        self.add(end, "signature_invalid", "tampered",
                 "the chain's signature does not verify with the given public key: the chain or its end was "
                 "rewritten, or it was signed with another key")


def _is_side_file_reference(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {fmt.SIDE_FILE_KEY, "bytes"}
            and isinstance(value[fmt.SIDE_FILE_KEY], str) and bool(_HEX64.fullmatch(value[fmt.SIDE_FILE_KEY]))
            and isinstance(value["bytes"], int) and not isinstance(value["bytes"], bool))


def _side_file_references(ours: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, reference) for the values the recorder may move to side files: call arguments and results, the final answer."""
    calls = ours.get("tool_calls")
    for number, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            continue
        for key in ("arguments", "result"):
            if _is_side_file_reference(call.get(key)):
                yield f"the {key} of tool call {number} ({call.get('tool')})", call[key]
    if _is_side_file_reference(ours.get("final_answer")):
        yield "the final answer", ours["final_answer"]


# -- the summary ---------------------------------------------------------------------------


def _parse_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _add_usage(tokens: dict[str, int | float], usage: Any, prefix: str = "") -> None:
    """Sum every numeric usage field (Anthropic and OpenAI name them differently; one level of nesting)."""
    if not isinstance(usage, dict):
        return
    for key, value in usage.items():
        if isinstance(value, dict) and not prefix:
            _add_usage(tokens, value, f"{key}.")
        elif _number(value) is not None:
            tokens[prefix + key] = tokens.get(prefix + key, 0) + value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def summarise(verifier: _Verifier) -> Summary:
    """The session as its cells tell it (the chained cells, in notebook order).

    Every value is type-checked on the way in: a tampered file may hold anything.
    """
    header = verifier.header or {}
    sandbox = _dict(header.get("sandbox"))
    enforced = _dict(sandbox.get("limits_enforced_by"))
    definitions = [d for d in _list(_dict(header.get("tools")).get("definitions")) if isinstance(d, dict)]
    destructive = {str(d.get("qualified_name")): d.get("destructive") is True for d in definitions}
    confined = sandbox.get("confined")
    summary = Summary(
        session_id=_str(header.get("session_id")), started_at=_str(header.get("started_at")),
        ended_at=_str(_dict(verifier.meta.get("end")).get("ended_at")), model=header.get("model"),
        end_reason=_str(_dict(verifier.meta.get("end")).get("reason")),
        settings=_dict(header.get("settings")),
        record_reachable_from_sandbox=_reachable(header),
        sandbox_mode=_str(sandbox.get("mode")), confined=confined if isinstance(confined, bool) else None,
        loosenings=[str(x) for x in _list(sandbox.get("loosenings"))],
        limits_not_enforced=[f"{k}: {v}" for k, v in enforced.items() if str(v).startswith("NOT ENFORCED")],
        destructive_tools=sorted(name for name, flag in destructive.items() if flag),
        task=_str(header.get("task")),
    )
    task_cell_seen = False
    seconds = 0.0
    for cell in sorted(verifier.genuine.values(), key=lambda c: c.index):
        ours = cell.ours or {}
        summary.cells += 1
        if cell.raw.get("cell_type") == "markdown":
            if cell.kind == "task" and not task_cell_seen:
                task_cell_seen = True
                summary.task = _text(cell.raw.get("source"))
            elif cell.kind != "task":
                summary.messages += 1
            continue
        if cell.raw.get("cell_type") != "code" or cell.kind == "setup":
            continue  # the setup cell (replay plumbing) was recorded, never run: not a step
        summary.steps += 1
        status = ours.get("status")
        summary.errors += status == "error"
        summary.timeouts += status == "timeout"
        summary.kernel_deaths += status == "kernel_died"
        summary.kernel_restarts += ours.get("kernel_restarted") is True
        summary.state_losses += ours.get("state_lost") is True
        seconds += _number(ours.get("duration")) or 0.0
        _add_usage(summary.tokens, ours.get("usage"))
        _count_tool_calls(summary, ours.get("tool_calls"), destructive)
        if "final_answer" in ours:
            answer = ours["final_answer"]
            if _is_side_file_reference(answer) and answer[fmt.SIDE_FILE_KEY] in verifier.side_file_values:
                answer = verifier.side_file_values[answer[fmt.SIDE_FILE_KEY]]
            summary.has_final_answer, summary.final_answer = True, answer
    summary.tokens = dict(sorted(summary.tokens.items()))
    summary.seconds_in_cells = round(seconds, 6)
    started, ended = _parse_time(summary.started_at), _parse_time(summary.ended_at)
    if started is not None and ended is not None:
        summary.wall_seconds = round((ended - started).total_seconds(), 6)
    return summary


def _reachable(header: dict[str, Any]) -> str | None:
    record = _dict(header.get("record"))
    if record.get("reachable_from_sandbox") is True:
        return _str(record.get("why")) or "the recording says so"
    if not record:
        return "unknown: the recording predates this check"
    return None


def _count_tool_calls(summary: Summary, calls: Any, destructive: dict[str, bool]) -> None:
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        name, status = str(call.get("tool")), str(call.get("status"))
        usage = summary.tools.setdefault(name, ToolUsage(destructive=destructive.get(name)))
        usage.calls += 1
        usage.statuses[status] = usage.statuses.get(status, 0) + 1
        usage.ok += status == "ok"
        usage.denied += status == "denied"
        usage.errors += status in _TOOL_ERROR_STATUSES
        summary.tool_calls += 1


# -- the whole audit -------------------------------------------------------------------------


def audit_notebook(path: Path, key: bytes | None = None, public_key: Ed25519PublicKey | None = None) -> AuditReport:
    """Verify ``path`` (read only) and summarise it; AuditInputError if it cannot be audited.

    With no key the chain shows the record is consistent (nothing edited,
    removed, inserted or cut off relative to itself), not who wrote it:
    whoever can write the file can recompute a consistent chain. ``key``
    (the HMAC secret) proves it to the key's holders; ``public_key``
    (Ed25519) proves it to anyone who trusts that key.
    """
    document = load_recorded_notebook(path)
    verifier = _Verifier(path, document, key, public_key)
    verifier.run()
    findings = sorted(verifier.findings, key=lambda f: f.position)  # stable: same position keeps check order
    problems = [f.problem for f in findings if f.problem.severity != "note"]
    notes = [f.problem for f in findings if f.problem.severity == "note"]
    chain = ChainReport(
        algorithm=verifier.chain.get("algorithm"), genesis=verifier.chain.get("genesis"),
        head=verifier.chain.get("head"), length=verifier.chain.get("length"),
        computed_genesis=verifier.computed_genesis, chained_cells=len(verifier.genuine), hmac=verifier.hmac_status,
        signature=verifier.signature_status,
    )
    tampered = [p for p in problems if p.severity == "tampered"]
    incomplete = [p for p in problems if p.severity == "incomplete"]
    verdict: Literal["intact", "tampered", "incomplete"]
    if tampered or incomplete:
        verdict = "tampered" if tampered else "incomplete"
        first = (tampered or incomplete)[0]
        more = len(problems) - 1
        headline = f"{verdict.upper()}: {first.message}" + (f" (+{more} more problem{'s' * (more > 1)})" if more else "")
    else:
        verdict = "intact"
        signed = {"valid": ", HMAC valid", "not_checked": ", HMAC not checked (no key)",
                  "unsigned": "", "invalid": ""}[verifier.hmac_status]
        signed += {"valid": ", signature valid", "not_checked": ", signature not checked (no public key)",
                   "unsigned": "", "invalid": ""}[verifier.signature_status]
        if not signed:
            signed = ", unsigned: consistent, authorship not proven"
        headline = f"INTACT: {len(verifier.genuine)} cells verified, sealed (sha256 chain{signed})"
    return AuditReport(
        notebook=str(path), verdict=verdict, headline=headline,
        exit_code=EXIT_INTACT if verdict == "intact" else EXIT_PROBLEM,
        problems=problems, notes=notes, chain=chain, summary=summarise(verifier),
    )


# -- the text report ---------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _preview(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_text(report: AuditReport) -> str:
    """The human report: the verdict line first, then the session, then every problem and note."""
    s = report.summary
    rows: list[tuple[str, str]] = [("notebook", report.notebook)]
    ended = f"{s.ended_at} ({s.end_reason or 'no reason'})" if s.ended_at else "(not sealed)"
    rows.append(("session", f"{s.session_id or '-'}, started {s.started_at or '-'}, ended {ended}"
                            f", wall {_seconds(s.wall_seconds)}"))
    rows.append(("record", "REACHABLE from the sandbox: " + s.record_reachable_from_sandbox
                 if s.record_reachable_from_sandbox else "out of the sandbox's reach"))
    if s.settings:
        rows.append(("settings", _preview(s.settings, 300)))
    if s.model is not None:
        rows.append(("model", _preview(s.model)))
    sandbox = f"{s.sandbox_mode or '-'} ({'confined' if s.confined else 'NOT confined'})"
    sandbox += "; loosenings: " + ("; ".join(s.loosenings) if s.loosenings else "none")
    if s.limits_not_enforced:
        sandbox += "; limits not enforced: " + "; ".join(s.limits_not_enforced)
    rows.append(("sandbox", sandbox))
    rows.append(("task", _preview(s.task) if s.task is not None else "-"))
    rows.append(("steps", f"{_plural(s.steps, 'code cell')}, {_plural(s.messages, 'message')}; "
                          f"{_plural(s.errors, 'error')}, {_plural(s.timeouts, 'timeout')}, "
                          f"{_plural(s.kernel_deaths, 'kernel death')}, {_plural(s.kernel_restarts, 'kernel restart')}, "
                          f"{_plural(s.state_losses, 'state loss', 'state losses')}"))
    rows.append(("time", f"{_seconds(s.seconds_in_cells)} in cells"))
    tools = []
    for name, usage in s.tools.items():
        parts = [f"{count} {status}" for status, count in usage.statuses.items()]
        tools.append(f"{name} ({', '.join(parts)}{', DESTRUCTIVE' if usage.destructive else ''})")
    rows.append(("tool calls", f"{s.tool_calls}" + (": " + "; ".join(tools) if tools else "")))
    if s.destructive_tools:
        rows.append(("destructive", ", ".join(s.destructive_tools) + " (defined as destructive)"))
    rows.append(("tokens", ", ".join(f"{k} {v:g}" for k, v in s.tokens.items()) or "-"))
    rows.append(("final answer", _preview(s.final_answer) if s.has_final_answer else "-"))
    c = report.chain
    rows.append(("chain", f"{c.chained_cells} chained cells, metadata length {c.length}, head "
                          f"{str(c.head)[:16]}…, HMAC {c.hmac.replace('_', ' ')}, "
                          f"signature {c.signature.replace('_', ' ')}"))
    width = max(len(label) for label, _ in rows) + 1
    lines = [report.headline, *(f"{label + ':':<{width}} {value}" for label, value in rows)]
    if report.problems:
        lines.append("problems:")
        lines += [f"  - {p.severity.upper()}: {p.message}" for p in report.problems]
    if report.notes:
        lines.append("notes:")
        lines += [f"  - {p.message}" for p in report.notes]
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------------


def main(notebook: str, *, json_output: bool = False, key_env: str | None = None, key_file: str | None = None,
         public_key_file: str | None = None) -> int:
    """``kernel-agent audit``: print the report, return the exit status (0 intact, 1 problems, 2 unusable).

    The input is adversarial by nature, so no exception escapes as a
    traceback: anything unexpected is reported as unusable input in one line.
    """
    path = Path(notebook)
    try:
        key = read_key(key_env, key_file)
        public_key = signing.load_public_key(public_key_file) if public_key_file else None
        report = audit_notebook(path, key, public_key)
    except AuditInputError as exc:
        return _unusable(path, str(exc), json_output)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return _unusable(path, f"cannot audit {path}: {type(exc).__name__}: {exc}", json_output)
    try:
        print(report.model_dump_json(indent=2) if json_output else render_text(report), flush=True)
    except BrokenPipeError:
        # `audit NB | head` closed the pipe: the verdict is already known, and a closed pipe must
        # never turn "intact" into a status that means "tampered".
        _silence_stdout()
    return report.exit_code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _unusable(path: Path, message: str, json_output: bool) -> int:
    message = " ".join(message.split())
    if json_output:
        print(UnusableReport(notebook=str(path), error=message).model_dump_json(indent=2))
    print(f"kernel-agent audit: error: {message}", file=sys.stderr)
    return EXIT_UNUSABLE
