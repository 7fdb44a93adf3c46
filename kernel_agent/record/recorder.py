"""The Recorder: turns a session's cells into journal events and notebook cells.

It observes; it never drives. The session hands it each finished cell (and
the agent its messages); the recorder chains their hashes, moves large
values to side files, appends to the journal (fsync) and then to the
notebook (in place). See :mod:`kernel_agent.record.format` for the format.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kernel_agent import safe_fs
from kernel_agent.errors import UnsafePathError
from kernel_agent.record import format as fmt
from kernel_agent.record import signing
from kernel_agent.record.journal import Journal, journal_path_for, read_journal
from kernel_agent.record.notebook import NotebookFile, cell_json

KERNELSPEC = {"name": "kernel-agent", "display_name": "kernel-agent (sandboxed Python)", "language": "python"}


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


def side_files_dir(notebook: Path) -> Path:
    """``session.ipynb`` -> ``session.files/``."""
    return notebook.with_name(f"{notebook.stem}.files")


class Recorder:
    """Records one session into ``notebook`` (and its journal and side files)."""

    def __init__(self, notebook: Path, header: dict[str, Any], *, hmac_key: bytes | None = None,
                 signing_key: Ed25519PrivateKey | None = None, cells: list[dict[str, Any]] | None = None,
                 opened: tuple[int, Journal] | None = None) -> None:
        self.notebook = notebook
        self.header = header
        self.hmac_key = hmac_key
        self.signing_key = signing_key
        # Every file of the record is reached through this descriptor, never by path (see NotebookFile).
        self._dir_fd = opened[0] if opened is not None else safe_fs.open_dir(notebook.parent)
        self._side_dir_fd: int | None = None
        self._side_file_problems: list[str] = []
        self.file = NotebookFile(notebook, dir_fd=self._dir_fd)
        self.genesis = fmt.genesis_hash(header)
        self.head = self.genesis
        self.length = 0
        self.end: dict[str, Any] | None = None
        resumed = cells is not None
        self.journal = opened[1] if opened is not None else Journal(journal_path_for(notebook), dir_fd=self._dir_fd,
                                                                     continue_existing=resumed)
        for cell in cells or []:
            self.head = fmt.cell_hash(self.head, cell)
            self.length += 1
        if not resumed:
            self.journal.append({"event": "header", "metadata": self.header})
        self.file.write_full([cell_json(c) for c in cells or []], self.metadata())
        if not resumed:
            self._record_setup()

    @classmethod
    def resume(cls, notebook: Path, *, hmac_key: bytes | None = None,
               signing_key: Ed25519PrivateKey | None = None,
               expect: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None) -> Recorder:
        """Continue recording an existing session notebook; its chain (and keys) must verify first.

        The record's journal is locked first, and the record is read and
        checked under that lock (``expect`` may refuse it too), so no other
        writer can change it between the check and what this one appends.
        """
        dir_fd = safe_fs.open_dir(notebook.parent)
        try:
            journal = Journal(journal_path_for(notebook), dir_fd=dir_fd, continue_existing=True)
        except BaseException:
            os.close(dir_fd)
            raise
        try:
            ours, cells = cls.check_resumable(notebook, hmac_key=hmac_key, signing_key=signing_key)
            if expect is not None:
                expect(ours, cells)
            return cls(notebook, ours["session"], hmac_key=hmac_key, signing_key=signing_key, cells=cells,
                       opened=(dir_fd, journal))
        except BaseException:
            journal.close()
            os.close(dir_fd)
            raise

    @staticmethod
    def check_resumable(notebook: Path, *, hmac_key: bytes | None = None,
                        signing_key: Ed25519PrivateKey | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(our notebook metadata, the cells) of a record this session may extend, or RecordingError saying why.

        Every cell must link into the chain, the head and the seal must fit,
        and this session's keys must have signed the record as it is.
        """
        from kernel_agent.errors import RecordingError

        document = load_notebook_json(notebook)
        ours = (document.get("metadata") or {}).get(fmt.METADATA_KEY)
        if not isinstance(ours, dict) or not isinstance(ours.get("session"), dict):
            raise RecordingError(f"{notebook} is not a kernel-agent session notebook")
        cells = document["cells"]
        head = fmt.genesis_hash(ours["session"])
        for index, cell in enumerate(cells):
            head = fmt.cell_hash(head, cell)
            if (cell.get("metadata") or {}).get(fmt.METADATA_KEY, {}).get("hash") != head:
                raise RecordingError(f"{notebook}: cell {index} does not match its recorded hash; "
                                     "run `kernel-agent audit` on it before resuming")
        recorded_chain = ours.get("chain")
        chain: dict[str, Any] = recorded_chain if isinstance(recorded_chain, dict) else {}
        if head != chain.get("head"):
            raise RecordingError(f"{notebook}: the chain head does not match its cells; run `kernel-agent audit`")
        _check_keys_vouch(notebook, ours, chain, head, len(cells), hmac_key, signing_key)
        return ours, cells

    # -- what goes in ------------------------------------------------------------------

    def record_markdown(self, kind: str, text: str) -> dict[str, Any]:
        """A markdown cell: the task (``kind="task"``) or a model message (``"message"``)."""
        return self._append({"cell_type": "markdown", "source": text, "metadata": {fmt.METADATA_KEY: {"kind": kind}}})

    def record_note(self, kind: str, text: str, details: dict[str, Any]) -> dict[str, Any]:
        """A markdown cell marking an event of the session itself (``kind`` "detached" or "attached").

        ``details`` go into its metadata, chained like every cell: a gap in
        the session (when, by whom, which kernel) is part of what audit verifies.
        """
        return self._append({"cell_type": "markdown", "source": text,
                             "metadata": {fmt.METADATA_KEY: {"kind": kind, **details}}})

    def _record_setup(self) -> dict[str, Any]:
        """Cell 0 (kind "setup"): lets Jupyter tools re-execute the notebook (kernel_agent.kernel.replay).

        A session only records it, never runs it; it has no outputs and prints nothing when run.
        """
        session_id = str(self.header.get("session_id", ""))
        source = ("# kernel-agent setup (a session records this cell but does not run it): re-executed by\n"
                  "# Jupyter tools, it serves the tool calls below from the recording in this notebook.\n"
                  "from kernel_agent.kernel.replay import serve_recording\n"
                  f"serve_recording({self.notebook.name!r}, session_id={session_id!r})")
        return self._append({"cell_type": "code", "source": source, "execution_count": None, "outputs": [],
                             "metadata": {fmt.METADATA_KEY: {"kind": "setup"}}})

    def record_code(self, result: Any, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        """A code cell from a CellResult; ``extras`` (observation, usage) go into its metadata."""
        ended = time.time()
        ours: dict[str, Any] = {
            "kind": "code",
            "status": result.status.value,
            "start_time": _iso(ended - result.duration),
            "end_time": _iso(ended),
            "duration": round(result.duration, 6),
            "timed_out": result.timed_out,
            "kernel_restarted": result.kernel_restarted,
            "state_lost": result.state_lost,
            "dropped_output_bytes": result.dropped_output_bytes,
            "tool_calls": [self._call_metadata(call.model_dump(mode="json")) for call in result.tool_calls],
            "progress": [event.model_dump(mode="json") for event in result.progress],
        }
        if result.has_final_answer:
            from kernel_agent.protocol import wire

            ours["final_answer"] = self._maybe_side_file(wire.inline_buffers(*wire.encode(result.final_answer)))
        ours.update(extras or {})
        if self._side_file_problems:
            ours["recording_problems"] = self._side_file_problems
            self._side_file_problems = []
        metadata: dict[str, Any] = {fmt.METADATA_KEY: ours}
        if result.status.value == "error":
            # The standard tag: nbclient, nbconvert and nbval re-execute past a cell that raised.
            metadata["tags"] = ["raises-exception"]
        outputs = list(result.outputs)
        if result.error is not None and not any(o.get("output_type") == "error" for o in outputs):
            # Errors the host made up (the kernel died, or was killed after a timeout) are shown too.
            error = result.error
            outputs.append({"output_type": "error", "ename": error.ename, "evalue": error.evalue,
                            "traceback": list(error.traceback) or [f"{error.ename}: {error.evalue}"]})
        return self._append({
            "cell_type": "code", "source": result.code, "execution_count": result.execution_count,
            "outputs": outputs, "metadata": metadata,
        })

    def close(self, totals: dict[str, Any], *, reason: str = "closed", **end: Any) -> None:
        """Seal the record: the end entry (chained after the last cell), then close the journal.

        The session calls this after its kernel was stopped, so nothing the
        kernel does can land after the seal. ``end`` adds what the end
        records besides the counts (the session's settings, where the record
        lives); values JSON cannot hold are named, not lost.
        """
        problems: list[str] = []
        self.end = fmt.json_safe({"ended_at": _iso(time.time()), "reason": reason, "cells": self.length,
                                  "head": self.head, "totals": totals, **end}, "end", problems)
        if problems:
            self.end["recording_problems"] = problems
        metadata = self.metadata()
        try:
            self.journal.append({"event": "end", "metadata": metadata})
            self.journal.close()
            self.file.rewrite(metadata)
        finally:
            self._close_descriptors()

    def abandon(self) -> None:
        """Close the files without sealing (the record stays unsealed: audit says it did not end)."""
        self.journal.close()
        self._close_descriptors()

    # -- how ------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The notebook-level metadata as it stands now."""
        seal = fmt.seal_hash(self.head, self.end) if self.end is not None else None
        statement = fmt.chain_statement(self.genesis, self.length, self.head, seal)
        chain: dict[str, Any] = {"algorithm": "sha256", "genesis": self.genesis, "head": self.head,
                                 "length": self.length,
                                 "hmac": fmt.hmac_statement(statement, self.hmac_key) if self.hmac_key else None}
        if seal is not None:
            chain["seal"] = seal
        if self.signing_key is not None:
            chain["signature"] = signing.sign(self.signing_key, statement)
        ours: dict[str, Any] = {"format": fmt.FORMAT_VERSION, "session": self.header, "chain": chain}
        if self.end is not None:
            ours["end"] = self.end
        return {
            "kernelspec": KERNELSPEC,
            "language_info": {"name": "python", "version": self.header.get("python_version", "")},
            fmt.METADATA_KEY: ours,
        }

    def _close_descriptors(self) -> None:
        for fd in (self._side_dir_fd, self._dir_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._side_dir_fd = None
        self._dir_fd = -1

    def _append(self, cell: dict[str, Any]) -> dict[str, Any]:
        cell["id"] = uuid.uuid4().hex[:12]
        cell["metadata"][fmt.METADATA_KEY]["seq"] = self.length
        # What the strict reader would refuse (a NaN in a display output, a value nested 300 levels, an
        # odd object in the extras) is replaced and named: the cell is kept, and the record stays auditable.
        problems: list[str] = []
        cell = fmt.json_safe(cell, "", problems)
        if problems:
            ours = cell["metadata"][fmt.METADATA_KEY]
            ours["recording_problems"] = [*ours.get("recording_problems", []), *problems]
        self.head = fmt.cell_hash(self.head, cell)
        cell["metadata"][fmt.METADATA_KEY]["hash"] = self.head
        self.length += 1
        self.journal.append({"event": "cell", "cell": cell})
        self.file.append(cell_json(cell), self.metadata())
        return cell

    def _call_metadata(self, call: dict[str, Any]) -> dict[str, Any]:
        from kernel_agent.protocol import wire

        # A replayed tool must return dicts in their recorded key order; arguments are
        # only matched, so they stay plain.
        call["arguments"] = self._maybe_side_file(call.get("arguments"))
        call["result"] = self._maybe_side_file(wire.keep_key_order(call.get("result")))
        return call

    def _maybe_side_file(self, value: Any) -> Any:
        """Large values go to a content-addressed file in ``<stem>.files/`` beside the notebook."""
        value = fmt.json_safe(value, "", self._side_file_problems)
        text = fmt.canonical_json(value)
        if len(text) <= fmt.SIDE_FILE_THRESHOLD:
            return value
        reference, name = fmt.side_file_reference(text)
        try:
            if self._side_dir_fd is None:
                self._side_dir_fd = safe_fs.open_subdir(self._dir_fd, side_files_dir(self.notebook).name, create=True)
            try:
                # Readable by a sandboxed kernel, which serves it when Jupyter re-executes the notebook.
                safe_fs.write_new_file(self._side_dir_fd, name, text.encode(), mode=0o644)
            except UnsafePathError:
                # Content-addressed: an existing file of that name is replaced (never followed) with the value.
                safe_fs.replace_file(self._side_dir_fd, name, text.encode(), mode=0o644)
        except (UnsafePathError, OSError) as exc:
            # Never lose the value, never follow what is there: keep it in the notebook itself.
            self._side_file_problems.append(f"side file {name} could not be written ({exc}); the value is kept "
                                            "in the notebook instead")
            return value
        return reference


def _check_keys_vouch(notebook: Path, ours: dict[str, Any], chain: dict[str, Any], head: str, length: int,
                      hmac_key: bytes | None, signing_key: Ed25519PrivateKey | None) -> None:
    """Resuming re-signs the record with this session's keys: refuse one those keys did not sign as it is.

    Otherwise a record rewritten consistently by someone without the keys
    would come out of a resume with a valid HMAC or signature.
    """
    from kernel_agent.errors import RecordingError

    end, seal = ours.get("end"), chain.get("seal")
    if (end is None) != (seal is None) or (isinstance(end, dict) and seal != fmt.seal_hash(head, end)):
        raise RecordingError(f"{notebook}: its sealed end does not match its chain; run `kernel-agent audit`")
    statement = fmt.chain_statement(str(chain.get("genesis")), length, head, seal if isinstance(seal, str) else None)
    recorded_hmac = chain.get("hmac")
    if hmac_key is not None and not (isinstance(recorded_hmac, str) and hmac.compare_digest(
            recorded_hmac, fmt.hmac_statement(statement, hmac_key))):
        raise RecordingError(f"{notebook}: its HMAC is missing or does not match this session's key, so resuming "
                             "would vouch for a record the key never signed; run `kernel-agent audit` with the key")
    recorded_signature = chain.get("signature")
    if signing_key is not None and recorded_signature is None:
        # As for the HMAC: re-signing a record nobody signed would vouch for whatever it holds now.
        raise RecordingError(f"{notebook}: it carries no signature, so continuing it with this session's signing "
                             "key would sign a record the key never signed; run `kernel-agent audit` on it")
    if signing_key is not None and recorded_signature is not None:
        value = recorded_signature.get("value") if isinstance(recorded_signature, dict) else None
        if not (isinstance(value, str) and signing.verify(signing_key.public_key(), statement, value)):
            raise RecordingError(f"{notebook}: its signature does not verify with this session's signing key; "
                                 "run `kernel-agent audit --public-key` on it")


def recover(journal: Path, notebook: Path) -> int:
    """Rebuild ``notebook`` from ``journal`` (after a crash); returns the number of cells recovered."""
    events = read_journal(journal)
    header = events[0]["metadata"]
    cells = [e["cell"] for e in events if e.get("event") == "cell" and isinstance(e.get("cell"), dict)]
    end = next((e["metadata"] for e in reversed(events) if e.get("event") == "end"), None)
    if end is not None:
        metadata = end
    else:
        # The head is recomputed from the cells; each cell's stored hash is for audit to check.
        head = fmt.genesis_hash(header)
        for cell in cells:
            head = fmt.cell_hash(head, cell)
        metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"},
                    fmt.METADATA_KEY: {"format": fmt.FORMAT_VERSION, "session": header, "recovered": True,
                                       "chain": {"algorithm": "sha256", "genesis": fmt.genesis_hash(header),
                                                 "head": head, "length": len(cells), "hmac": None}}}
    NotebookFile(notebook).write_full([cell_json(c) for c in cells], metadata)
    return len(cells)


def load_notebook_json(path: Path) -> dict[str, Any]:
    """Parse a notebook file as recorded (no nbformat upgrade), checked as hostile input.

    See :mod:`kernel_agent.record.reader`: size and nesting bounds, strict JSON, field types;
    UnusableRecordError says what is wrong.
    """
    from kernel_agent.record.reader import read_notebook

    return read_notebook(path)
