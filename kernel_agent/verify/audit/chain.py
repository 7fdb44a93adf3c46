"""Recomputing a notebook's hash chain and naming the first thing that does not fit.

The recorder chains every cell's hash to the previous one (see
:mod:`kernel_agent.record.format`); the :class:`Verifier` recomputes that
chain from the file and names what does not fit, as precisely as the
evidence allows (which cell, by its index in the notebook, its seq, id and
first line): cells changed, removed, inserted or reordered, the end cut off,
a side file missing or changed, the seal, the HMAC and the signature.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kernel_agent.errors import RecordingError
from kernel_agent.record import format as fmt
from kernel_agent.record import reader, signing
from kernel_agent.record.recorder import side_files_dir
from kernel_agent.verify.audit.cells import HEX64, Cell, link, links, side_file_references
from kernel_agent.verify.audit.report import HmacStatus, Problem, Severity, SignatureStatus

# Top-level cell keys the recorder writes; anything else (with content) is not covered by the chain.
_KNOWN_CELL_KEYS = {"cell_type", "id", "metadata", "source", "outputs", "execution_count"}


@dataclass
class Finding:
    """A problem and where it sorts: header first, then by notebook index, then the end of the chain."""

    position: float
    problem: Problem


class Verifier:
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
        self.cells = [Cell.of(i, raw) for i, raw in enumerate(document["cells"])]
        self.findings: list[Finding] = []
        self.genuine: dict[int, Cell] = {}  # seq -> the cell taking part in the chain
        self.genesis_used: str | None = None
        self.side_file_values: dict[str, Any] = {}  # verified side files, parsed
        self.hmac_status: HmacStatus = "unsigned"
        self.computed_genesis: str | None = None

    def add(self, position: float, kind: str, severity: Severity, message: str,
            cell: Cell | None = None, side_file: str | None = None) -> None:
        self.findings.append(Finding(position, Problem(kind=kind, severity=severity, message=message,
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
                     f"the session header (metadata.{fmt.METADATA_KEY}.session) is missing: "
                     "the chain cannot be checked")
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

    def check_uncovered_keys(self, cell: Cell) -> None:
        """Content the chain does not hash (attachments, unknown keys) must not be smuggled into a cell."""
        extra = sorted(k for k, v in cell.raw.items() if k not in _KNOWN_CELL_KEYS and v not in ({}, [], None, ""))
        if extra:
            self.add(cell.index, "uncovered_content", "tampered",
                     f"{cell.ref.describe()} carries content the recording never wrote and the chain does not "
                     f"cover: {', '.join(extra)}", cell)

    def pick_genuine_cells(self) -> None:
        """One cell per seq takes part in the chain; the others with the same seq were inserted (copies)."""
        groups: dict[int, list[Cell]] = {}
        for cell in self.cells:
            if cell.seq is not None:
                groups.setdefault(cell.seq, []).append(cell)
        recorded = self.chain.get("genesis")
        genesis = [self._genesis_candidate(), recorded if isinstance(recorded, str) else None]
        for seq in sorted(groups):
            group = groups[seq]
            previous = genesis if seq == 0 else [self.genuine[seq - 1].stored_hash if seq - 1 in self.genuine else None]
            linking = [cell for cell in group if any(links(p, cell) for p in previous)]
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
        if computed is not None and first is not None and links(computed, first):
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
        highest: Cell | None = None
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
            computed = link(previous, cell.raw)
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

    def _note_editor_metadata(self, cell: Cell) -> None:
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
                     f"metadata.{fmt.METADATA_KEY}.chain has no valid length and head: "
                     "the end of the chain cannot be checked")
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
                     f"metadata.{fmt.METADATA_KEY}.chain.head does not match the hash of the last cell "
                     f"(seq {last_seq})")

    def check_side_files(self) -> None:
        """Each referenced side file must exist and hash to its name."""
        checked: set[str] = set()
        for seq in sorted(self.genuine):
            cell = self.genuine[seq]
            for where, reference in side_file_references(cell.ours or {}):
                digest = reference[fmt.SIDE_FILE_KEY]
                if digest in checked:
                    continue
                checked.add(digest)
                self._check_side_file(cell, where, digest, reference["bytes"])

    def _check_side_file(self, cell: Cell, where: str, digest: str, size: int) -> None:
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
            last = self.genuine[max(self.genuine)] if self.genuine else None
            if last is not None and last.kind == "detached":
                kernel = (last.ours or {}).get("kernel")
                kernel_id = kernel.get("kernel_id") if isinstance(kernel, dict) else None
                self.add(where, "not_sealed", "incomplete",
                         f"the session detached from kernel {kernel_id!r}, which it left running on its server: "
                         "not sealed because not over (Session.attach continues it and its record)")
                return
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
        seal, length = chain.get("seal"), chain.get("length")
        return fmt.chain_statement(str(chain.get("genesis")), length if isinstance(length, int) else -1,
                                   str(chain.get("head")), seal if isinstance(seal, str) else None)

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
                owner = f" by key {signing.fingerprint(embedded)}" if embedded and HEX64.fullmatch(embedded) else ""
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
