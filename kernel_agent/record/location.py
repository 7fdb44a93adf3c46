"""Where a session's record lives: out of the sandbox's reach unless the caller says otherwise.

A record the audited code can write proves nothing: a kernel thread could
replace the notebook, its journal or a side file at any moment. So by
default recordings go to a host-owned directory that no sandbox binds
(``KERNEL_AGENT_RECORD_DIR``, else ``$XDG_DATA_HOME/kernel-agent/records``,
else ``~/.local/share/kernel-agent/records``), and a notebook path inside a
tree the session's sandbox can write (its workspace, the policy's writable
paths) is refused with :class:`~kernel_agent.errors.RecordLocationError`
unless ``allow_reachable_record=True``; then the header says so and the
audit summary repeats it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from kernel_agent.errors import RecordingError, RecordLocationError

RECORD_DIR_ENV = "KERNEL_AGENT_RECORD_DIR"


def default_record_dir() -> Path:
    """The host-owned directory recordings go to when the caller names none."""
    if configured := os.environ.get(RECORD_DIR_ENV):
        return Path(configured).expanduser().resolve()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser().resolve() / "kernel-agent" / "records"


def ensure_record_dir(directory: Path) -> None:
    """Create the default record directory (and its parents) if needed; 0755: readable, written by the host only."""
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordingError(f"cannot create the record directory {directory}: {exc.strerror}; set "
                             f"{RECORD_DIR_ENV} or pass notebook=PATH") from None


def reachable_reason(notebook: Path, writable_trees: Iterable[Path]) -> str | None:
    """Why a sandbox could write the record at ``notebook`` (None: it cannot, as far as the host can tell).

    The notebook's directory holds the notebook, its journal and its side
    files, so the directory is what must be out of reach: not inside a tree
    the sandbox binds writable, not owned by another user, not writable by
    group or others (a sticky shared directory like /tmp is fine: others
    cannot replace what the host created there).
    """
    directory = notebook.parent.resolve()
    for tree in writable_trees:
        resolved = tree.resolve()
        if directory == resolved or directory.is_relative_to(resolved):
            return f"{directory} is inside {resolved}, which the session's sandbox can write"
    try:
        status = directory.stat()
    except OSError as exc:
        raise RecordingError(f"the notebook's directory {directory} cannot be used: {exc.strerror}; "
                             "create it first") from None
    if not stat.S_ISDIR(status.st_mode):
        raise RecordingError(f"the notebook's directory {directory} is not a directory")
    if status.st_uid not in (os.geteuid(), 0):
        return f"{directory} belongs to uid {status.st_uid}, not to this host's user"
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not status.st_mode & stat.S_ISVTX:
        return f"{directory} is writable by other users (mode {stat.S_IMODE(status.st_mode):o})"
    return None


def check_record_location(notebook: Path, writable_trees: Iterable[Path], *, allowed: bool) -> str | None:
    """Refuse a reachable record unless ``allowed``; return the reason it is reachable (for the header)."""
    reason = reachable_reason(notebook, writable_trees)
    if reason is not None and not allowed:
        raise RecordLocationError(
            f"the session would be recorded at {notebook}, but {reason}: code in the kernel could rewrite its "
            "own record. Record elsewhere (notebook=PATH outside the workspace, or the default "
            f"{default_record_dir()}), or pass allow_reachable_record=True to accept a record the audit will "
            "describe as reachable from the sandbox")
    return reason
