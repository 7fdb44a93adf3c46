"""Directories held by a live host, and a reaper that removes only what no live host holds.

A host process that is killed leaves its run directories, temporary
workspaces and cgroups behind, so each session start reaps leftovers. Whether
a leftover's host is alive cannot be told from its pid: hosts in other pid
namespaces (containers, CI runners) share ``/tmp`` and their pids mean
nothing here. So every such directory has a lock file next to it
(``<name>.lock``, in the host-only parent, never inside the directory: a
kernel can write its workspace, but not the parent), created and
``flock``-ed *before* the directory exists and held for as long as the
directory lives. The kernel releases a lock only by dying with its host. The
reaper removes a directory only if it can take that lock itself
(``LOCK_EX | LOCK_NB``), and a directory without a lock file never.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from kernel_agent.safe_fs import open_dir, remove_tree

LOCK_SUFFIX = ".lock"
REAPED_PREFIX = "kernel-agent-"

_held: dict[Path, int] = {}  # directory -> descriptor of its held lock file
_held_guard = threading.Lock()


def make_held_dir(prefix: str, parent: Path | None = None, mode: int = 0o700) -> Path:
    """Create ``parent/<prefix><random>`` (default parent: the temporary directory) with its lock held.

    The lock is taken before the directory exists, so no reaper ever sees
    the directory unheld; it is released by :func:`remove_held_dir` or when
    this process ends.
    """
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    parent_fd = open_dir(parent)
    try:
        while True:
            name = prefix + secrets.token_hex(5)
            try:
                lock_fd = os.open(name + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, 0o600, dir_fd=parent_fd)
            except FileExistsError:
                continue
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                os.mkdir(name, mode, dir_fd=parent_fd)
            except FileExistsError:  # a leftover without a lock file: not ours, choose another name
                os.unlink(name + LOCK_SUFFIX, dir_fd=parent_fd)
                os.close(lock_fd)
                continue
            path = parent / name
            with _held_guard:
                _held[path] = lock_fd
            return path
    finally:
        os.close(parent_fd)


def remove_held_dir(path: Path) -> None:
    """Remove a directory made by :func:`make_held_dir` (descriptor-based), then its lock (idempotent)."""
    with contextlib.suppress(OSError):
        parent_fd = open_dir(path.parent)
        try:
            remove_tree(parent_fd, path.name)  # no recursion, no link followed: the kernel shaped this tree
        finally:
            os.close(parent_fd)
    with _held_guard:
        lock_fd = _held.pop(path, None)
    if lock_fd is not None:
        with contextlib.suppress(OSError):
            os.unlink(path.parent / (path.name + LOCK_SUFFIX))
        os.close(lock_fd)


def reap(parent: Path | None = None, on_reap: Callable[[str], None] | None = None) -> list[str]:
    """Remove every ``kernel-agent-*`` directory in ``parent`` whose lock no live host holds; return their names.

    ``on_reap(name)`` runs while the lock is held, before the directory is
    removed (the provisioner removes the leftover's cgroups there).
    """
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    reaped: list[str] = []
    try:
        parent_fd = open_dir(parent)
    except OSError:
        return reaped
    try:
        for entry in os.listdir(parent_fd):
            if entry.startswith(REAPED_PREFIX) and entry.endswith(LOCK_SUFFIX):
                name = entry[: -len(LOCK_SUFFIX)]
                if _reap_one(parent_fd, name, on_reap):
                    reaped.append(name)
    finally:
        os.close(parent_fd)
    return reaped


def lock_is_free(name: str, parent: Path | None = None) -> bool:
    """Whether ``<name>.lock`` exists, is this user's, and no live host holds it (checked by taking it)."""
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    lock_fd = _open_lock(parent / (name + LOCK_SUFFIX))
    if lock_fd is None:
        return False
    try:
        return _try_lock(lock_fd)
    finally:
        os.close(lock_fd)  # closing releases a lock taken just now


def _reap_one(parent_fd: int, name: str, on_reap: Callable[[str], None] | None) -> bool:
    try:
        lock_fd = os.open(name + LOCK_SUFFIX, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                          dir_fd=parent_fd)
    except OSError:
        return False
    try:
        if not _ours(lock_fd) or not _try_lock(lock_fd):
            return False
        if on_reap is not None:
            on_reap(name)
        with contextlib.suppress(FileNotFoundError):
            remove_tree(parent_fd, name)  # links inside are removed, not followed; any depth
        with contextlib.suppress(OSError):
            os.unlink(name + LOCK_SUFFIX, dir_fd=parent_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(lock_fd)


def _open_lock(path: Path) -> int | None:
    try:
        lock_fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    if not _ours(lock_fd):
        os.close(lock_fd)
        return None
    return lock_fd


def _ours(lock_fd: int) -> bool:
    """A plain file of this user: another user's leftovers are not this host's to judge."""
    status = os.fstat(lock_fd)
    return stat.S_ISREG(status.st_mode) and status.st_uid == os.getuid()


def _try_lock(lock_fd: int) -> bool:
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True
