"""The append-only journal: the durable record a notebook is materialised from.

One JSON object per line: ``{"event": "header", "metadata": {...}}`` first,
then ``{"event": "cell", "cell": {...}}`` per notebook cell, and
``{"event": "end", "metadata": {...}}`` when the session closes. Lines are
flushed and fsynced at every cell boundary, so killing the host loses at
most the cell in flight; ``kernel-agent recover`` rebuilds the notebook.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from kernel_agent.errors import RecordingError, UnsafePathError
from kernel_agent.safe_fs import open_regular


def journal_path_for(notebook: Path) -> Path:
    """``session.ipynb`` -> ``session.journal.jsonl`` next to it."""
    return notebook.with_name(f"{notebook.stem}.journal.jsonl")


class Journal:
    """Appends events durably.

    Opened through the record directory's descriptor, never following a
    link, and checked to be a plain file: even where a caller explicitly
    allowed a record the sandbox can reach, the journal is never redirected.
    """

    def __init__(self, path: Path, *, dir_fd: int, continue_existing: bool = False) -> None:
        self.path = path
        try:
            self._fd = open_regular(dir_fd, path.name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        except UnsafePathError as exc:
            raise RecordingError(f"cannot open the journal {path}: {exc}") from None
        # One writer per record, across processes: two sessions appending to one chain (two attaches to one
        # detached record, a resume of a record still being written) would each extend it from their own head.
        # The lock is held until the journal is closed; a new session truncates only once it holds it.
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = -1
            raise RecordingError(f"{path} is being written by another session (a live one, or another process "
                                 "attached to or resuming it): a record has one writer at a time") from None
        if not continue_existing:
            os.ftruncate(self._fd, 0)

    def append(self, event: dict[str, Any], *, sync: bool = True) -> None:
        """Write one event as a line; fsync it unless ``sync`` is False."""
        line = (json.dumps(event, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if sync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the journal (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal(path: Path) -> list[dict[str, Any]]:
    """All events of a journal, checked as hostile input (see :mod:`kernel_agent.record.reader`).

    A torn last line (a crash mid-write) is dropped; any other bad line is an UnusableRecordError.
    """
    from kernel_agent.record.reader import read_journal as read_checked

    return read_checked(path)
