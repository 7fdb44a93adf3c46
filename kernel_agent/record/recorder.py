"""The Recorder: turns a session's cells into journal events and notebook cells.

It observes; it never drives. The session hands it each finished cell (and
the agent its messages); the recorder chains their hashes, moves large
values to side files, appends to the journal (fsync) and then to the
notebook (in place). See :mod:`kernel_agent.record.format` for the format.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kernel_agent.record import format as fmt
from kernel_agent.record.journal import Journal, journal_path_for, read_journal
from kernel_agent.record.notebook import NotebookFile, cell_json

KERNELSPEC = {"name": "kernel-agent", "display_name": "kernel-agent (sandboxed Python)", "language": "python"}


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat()


def side_files_dir(notebook: Path) -> Path:
    """``session.ipynb`` -> ``session.files/``."""
    return notebook.with_name(f"{notebook.stem}.files")


class Recorder:
    """Records one session into ``notebook`` (and its journal and side files)."""

    def __init__(self, notebook: Path, header: dict[str, Any], *, hmac_key: bytes | None = None,
                 cells: list[dict[str, Any]] | None = None) -> None:
        self.notebook = notebook
        self.header = header
        self.hmac_key = hmac_key
        self.file = NotebookFile(notebook)
        self.genesis = fmt.genesis_hash(header)
        self.head = self.genesis
        self.length = 0
        self.ended: dict[str, Any] = {}
        resumed = cells is not None
        self.journal = Journal(journal_path_for(notebook), continue_existing=resumed)
        for cell in cells or []:
            self.head = fmt.cell_hash(self.head, cell)
            self.length += 1
        if not resumed:
            self.journal.append({"event": "header", "metadata": self.header})
        self.file.write_full([cell_json(c) for c in cells or []], self.metadata())
        if not resumed:
            self._record_setup()

    @classmethod
    def resume(cls, notebook: Path, *, hmac_key: bytes | None = None) -> Recorder:
        """Continue recording an existing session notebook; its chain must verify first."""
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
        if head != (ours.get("chain") or {}).get("head"):
            raise RecordingError(f"{notebook}: the chain head does not match its cells; run `kernel-agent audit`")
        return cls(notebook, ours["session"], hmac_key=hmac_key, cells=cells)

    # -- what goes in ------------------------------------------------------------------

    def record_markdown(self, kind: str, text: str) -> dict[str, Any]:
        """A markdown cell: the task (``kind="task"``) or a model message (``"message"``)."""
        return self._append({"cell_type": "markdown", "source": text, "metadata": {fmt.METADATA_KEY: {"kind": kind}}})

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
            from kernel_agent import wire

            ours["final_answer"] = self._maybe_side_file(wire.encode(result.final_answer)[0])
        ours.update(extras or {})
        metadata: dict[str, Any] = {fmt.METADATA_KEY: ours}
        if result.status.value == "error":
            # The standard tag: nbclient, nbconvert and nbval re-execute past a cell that raised.
            metadata["tags"] = ["raises-exception"]
        outputs = list(result.outputs)
        if result.error is not None and not any(o.get("output_type") == "error" for o in outputs):
            # Errors the host made up (the kernel died, or was killed after a timeout) are shown too.
            outputs.append({"output_type": "error", "ename": result.error.ename, "evalue": result.error.evalue,
                            "traceback": list(result.error.traceback) or [f"{result.error.ename}: {result.error.evalue}"]})
        return self._append({
            "cell_type": "code", "source": result.code, "execution_count": result.execution_count,
            "outputs": outputs, "metadata": metadata,
        })

    def close(self, totals: dict[str, Any]) -> None:
        """Write the closing metadata (end time, totals) and close the journal."""
        self.ended = {"ended_at": _iso(time.time()), "totals": totals}
        metadata = self.metadata()
        self.journal.append({"event": "end", "metadata": metadata})
        self.journal.close()
        self.file.rewrite(metadata)

    # -- how ------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The notebook-level metadata as it stands now."""
        chain = {"algorithm": "sha256", "genesis": self.genesis, "head": self.head, "length": self.length,
                 "hmac": fmt.sign_head(self.head, self.hmac_key) if self.hmac_key else None}
        return {
            "kernelspec": KERNELSPEC,
            "language_info": {"name": "python", "version": self.header.get("python_version", "")},
            fmt.METADATA_KEY: {"format": fmt.FORMAT_VERSION, "session": self.header, **self.ended, "chain": chain},
        }

    def _append(self, cell: dict[str, Any]) -> dict[str, Any]:
        cell["id"] = uuid.uuid4().hex[:12]
        cell["metadata"][fmt.METADATA_KEY]["seq"] = self.length
        self.head = fmt.cell_hash(self.head, cell)
        cell["metadata"][fmt.METADATA_KEY]["hash"] = self.head
        self.length += 1
        self.journal.append({"event": "cell", "cell": cell})
        self.file.append(cell_json(cell), self.metadata())
        return cell

    def _call_metadata(self, call: dict[str, Any]) -> dict[str, Any]:
        from kernel_agent import wire

        # A replayed tool must return dicts in their recorded key order; arguments are
        # only matched, so they stay plain.
        call["arguments"] = self._maybe_side_file(call.get("arguments"))
        call["result"] = self._maybe_side_file(wire.keep_key_order(call.get("result")))
        return call

    def _maybe_side_file(self, value: Any) -> Any:
        """Large values go to a content-addressed file next to the notebook."""
        text = fmt.canonical_json(value)
        if len(text) <= fmt.SIDE_FILE_THRESHOLD:
            return value
        reference, name = fmt.side_file_reference(text)
        directory = side_files_dir(self.notebook)
        directory.mkdir(exist_ok=True)
        target = directory / name
        if not target.is_file():
            descriptor, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
            # Readable by the sandboxed kernel, which serves it when Jupyter re-executes the notebook.
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        return reference


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
    """Parse a notebook file as JSON (no nbformat upgrade: the bytes as recorded)."""
    from kernel_agent.errors import RecordingError

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise RecordingError(f"{path} is not valid JSON ({exc}); it is not a usable notebook") from None
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        raise RecordingError(f"{path} is not a Jupyter notebook (no cells list)")
    return document
