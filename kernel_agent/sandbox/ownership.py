"""Lending directories to the sandbox uid on a root host, and giving them back.

Only directories the caller explicitly gave (the workspace, the policy's
writable paths) or that kernel-agent created are ever lent. Each is opened
once (the caller named it: its last component must not be a link), its
owner and mode are recorded from ``fstat``, and everything after goes
through that descriptor. Files already inside keep their owner: the kernel
can read them (if their mode allows) but not change them.

After the kernel is dead, :meth:`Lent.give_back` returns the directory and
everything the kernel created in it (entries owned by the sandbox uid, found
through descriptors, links changed and never followed) to the directory's
original owner, and restores the directory's mode. A chown by root clears
setuid and setgid bits, so nothing the kernel made becomes the owner's
privilege.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from kernel_agent.safe_fs import chown_tree, open_dir


@dataclass
class Lent:
    """One directory handed to the sandbox uid, with what it was before."""

    path: Path
    fd: int
    uid: int
    gid: int
    mode: int
    to_uid: int

    def give_back(self) -> int:
        """Return the directory and the kernel's files in it to their original owner; how many entries changed."""
        if self.fd < 0:
            return 0
        try:
            changed = chown_tree(self.fd, self.uid, self.gid, only_owned_by=self.to_uid)
            os.fchmod(self.fd, self.mode)
            return changed
        finally:
            os.close(self.fd)
            self.fd = -1


def lend(path: Path, uid: int) -> Lent:
    """Hand the directory ``path`` (not what is inside) to ``uid:uid``, through a descriptor."""
    fd = open_dir(path)
    status = os.fstat(fd)
    lent = Lent(path, fd, status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode), uid)
    try:
        os.fchown(fd, uid, uid)
    except BaseException:
        os.close(fd)
        raise
    return lent


def hand_to(dir_fd: int, name: str, uid: int) -> None:
    """Give an entry kernel-agent itself created (socket directory, connection file, home) to ``uid``."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        os.fchown(fd, uid, uid)
    finally:
        os.close(fd)


def give_back_all(lent: list[Lent]) -> None:
    """Give back every lent directory, innermost last-lent first; one failure does not stop the others."""
    for item in reversed(lent):
        with contextlib.suppress(OSError):
            item.give_back()
    lent.clear()
