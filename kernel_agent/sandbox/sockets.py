"""The host reaches the kernel's ipc sockets only through links the kernel cannot touch.

The kernel binds its ipc sockets in the run directory's ``sandbox/`` part,
which it can write: it can replace a socket file with a symbolic link to any
unix socket of the host. libzmq reconnects by path whenever a connection
drops, and so does the host after an iopub cut, so a path in that directory
is never trusted. Once the kernel has bound its sockets (before any user
code runs: the host sends no cell before the kernel is ready), the host
makes a hard link to each socket *inode* in a host-only directory
(``linkat`` without ``AT_SYMLINK_FOLLOW`` links a symlink itself, never its
target), checks with ``lstat`` that the link is a socket owned by the
sandbox's uid, and connects (and reconnects, by libzmq or by hand) only
through those links. A socket inode cannot be changed into something else,
so every reconnection reaches the socket the kernel bound, or fails.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path

from kernel_agent.errors import SandboxError
from kernel_agent.safe_fs import open_dir

SOCKET_KEYS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
_POLL_SECONDS = 0.01


async def link_sockets(
    shared_dir: Path, links_dir: Path, stem: str, ports: dict[str, int], owner: int,
    alive: Callable[[], bool], timeout: float,
) -> None:
    """Wait (bounded) until the kernel has bound every socket, then hard-link each into ``links_dir``.

    Raises :class:`SandboxError` if a socket path is anything but a socket
    of ``owner``; returns early (linking what exists) if the kernel dies.
    """
    names = [f"{stem}-{ports[key]}" for key in SOCKET_KEYS if key in ports]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    shared_fd, links_fd = open_dir(shared_dir), open_dir(links_dir)
    try:
        pending = list(names)
        while pending and alive() and loop.time() < deadline:
            pending = [name for name in pending if not _link_one(shared_fd, links_fd, name, owner)]
            if pending:
                await asyncio.sleep(_POLL_SECONDS)
    finally:
        os.close(shared_fd)
        os.close(links_fd)


def _link_one(shared_fd: int, links_fd: int, name: str, owner: int) -> bool:
    """Link ``name`` if the kernel has bound it; False if it does not exist yet."""
    try:
        os.link(name, name, src_dir_fd=shared_fd, dst_dir_fd=links_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except FileExistsError:
        pass  # linked already
    status = os.stat(name, dir_fd=links_fd, follow_symlinks=False)
    if not stat.S_ISSOCK(status.st_mode) or status.st_uid != owner:
        os.unlink(name, dir_fd=links_fd)
        raise SandboxError(f"the kernel's socket {name} is not a socket it bound (mode {status.st_mode:o}, "
                           f"owner {status.st_uid}); refusing to connect to it")
    return True
