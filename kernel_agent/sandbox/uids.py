"""One unprivileged uid per session on a root host, leased exclusively across sessions and host processes.

``RLIMIT_NPROC`` counts every process and thread of a *real uid*. With one
uid shared by all sessions it is one pool: a session's (bounded) fork bomb
stops every other session from starting threads. Where no writable pids
cgroup bounds each session, a uid of its own makes the limit per session.

A uid is leased by taking an ``flock`` on ``<uid>`` in a host-only directory
(0700, owned by the host's uid) in the temporary directory, so hosts in
other pid namespaces that share ``/tmp`` see each other's leases. The lock is
held for the session's life and released by :meth:`UidLease.release` or when
the host process ends; the lock files stay (removing a lock file others may
be opening would let two hosts lease the same uid).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kernel_agent.errors import SandboxError, UnsafePathError
from kernel_agent.safe_fs import open_dir

LEASE_DIR_PREFIX = ".kernel-agent-uids-"


@dataclass
class UidLease:
    """A uid (and the gid of the same number) that no other session uses while the lease is held."""

    uid: int
    _fd: int

    def release(self) -> None:
        """Give the uid back (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def lease_uid(first: int, last: int, lease_dir: Path | None = None) -> UidLease:
    """Lease the lowest free uid in ``first..last`` (inclusive); :class:`SandboxError` if all are taken."""
    dir_fd = _open_lease_dir(lease_dir)
    try:
        for uid in range(first, last + 1):
            fd = os.open(str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600,
                         dir_fd=dir_fd)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue
                raise
            return UidLease(uid, fd)
    finally:
        os.close(dir_fd)
    raise SandboxError(f"every sandbox uid in {first}..{last} is leased by a running session; "
                       "widen SandboxPolicy.uid_range")


def _open_lease_dir(lease_dir: Path | None) -> int:
    """The host-only lease directory, made 0700 if missing; refused unless it is a real directory of ours."""
    path = lease_dir or Path(tempfile.gettempdir()) / f"{LEASE_DIR_PREFIX}{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    dir_fd = open_dir(path)
    status = os.fstat(dir_fd)
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        os.close(dir_fd)
        raise UnsafePathError(f"the uid lease directory {path} is not private to this user (owner {status.st_uid}, "
                              f"mode {stat.S_IMODE(status.st_mode):o}); remove it")
    return dir_fd


def kill_uid_processes(uid: int) -> list[int]:
    """SIGKILL every process whose real uid is ``uid`` (a leased uid: they are all this session's); return them.

    Without a cgroup this is how a process that escaped the sandbox's death
    is found: nothing else runs as a leased uid.
    """
    killed: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                real_uid = next((int(line.split()[1]) for line in status if line.startswith("Uid:")), None)
            if real_uid == uid:
                os.kill(int(entry), 9)
                killed.append(int(entry))
        except (OSError, ValueError):
            continue
    return killed
