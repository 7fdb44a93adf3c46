"""Reading what a session wrote in its workspace, for a client: descriptors only, no link followed, bounded.

The workspace is the kernel's: every name in it may be a link it planted
(``report.txt -> /etc/shadow``, ``out -> /root``), a FIFO that would block
a reader forever, a hard link to a host file, or a file growing while it is
read; the host often runs as root. So a path from the client is split into
names (no absolute path, no ``..``, no empty or NUL name), each directory is
opened below the workspace's descriptor without following a link
(:mod:`kernel_agent.safe_fs`), the file must be a plain file with one link,
and at most ``max_bytes`` are read. Blocking work runs in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kernel_agent import safe_fs
from kernel_agent.errors import UnsafePathError
from kernel_agent.mcp_server.errors import BadArgumentError

MAX_PATH_CHARS = 1024
MAX_LISTED = 500
MAX_COUNTED = 100_000  # entries counted in one directory at most (a kernel can make millions)

_IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


@dataclass(frozen=True)
class FileRead:
    """What was read: the bytes (at most the limit), the file's size, and its image type if it is one."""

    data: bytes
    size: int
    media_type: str | None

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


def path_names(path: str) -> list[str]:
    """The names of a workspace-relative path; BadArgumentError for anything that could leave the workspace."""
    if not isinstance(path, str) or len(path) > MAX_PATH_CHARS or "\x00" in path:
        raise BadArgumentError(f"path must be a workspace-relative path of at most {MAX_PATH_CHARS} characters")
    if path.startswith("/"):
        raise BadArgumentError(f"path {path!r} is absolute: give it relative to the session's workspace")
    names = [name for name in path.split("/") if name not in ("", ".")]
    if any(name == ".." for name in names):
        raise BadArgumentError(f"path {path!r} leaves the workspace ('..' is not allowed)")
    return names


@contextlib.contextmanager
def _directory(workspace: Path, names: list[str]) -> Iterator[int]:
    """A descriptor of the directory ``names`` lead to below ``workspace``, no link followed on the way."""
    try:
        fd = safe_fs.open_dir(workspace)
    except UnsafePathError as exc:
        raise BadArgumentError(f"the workspace cannot be opened: {exc}") from None
    try:
        for name in names:
            try:
                child = safe_fs.open_subdir(fd, name)
            except UnsafePathError as exc:
                raise BadArgumentError(f"{'/'.join(names)}: {exc}") from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def read_file(workspace: Path, path: str, max_bytes: int) -> FileRead:
    """Read up to ``max_bytes`` of the plain file ``path`` in ``workspace`` (blocking: run it in a thread)."""
    names = path_names(path)
    if not names:
        raise BadArgumentError("path names the workspace itself: give a file (list_files shows them)")
    with _directory(workspace, names[:-1]) as directory:
        try:
            fd = safe_fs.open_regular(directory, names[-1], os.O_RDONLY)
        except UnsafePathError as exc:
            raise BadArgumentError(f"{path}: {exc}") from None
        try:
            size = os.fstat(fd).st_size
            chunks: list[bytes] = []
            left = max_bytes
            while left > 0 and (chunk := os.read(fd, min(left, 65536))):
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
    data = b"".join(chunks)
    media_type = next((kind for magic, kind in _IMAGE_SIGNATURES.items() if data.startswith(magic)), None)
    return FileRead(data, max(size, len(data)), media_type)


def list_files(workspace: Path, path: str) -> tuple[list[dict[str, object]], int]:
    """The entries of directory ``path`` in ``workspace`` (name, kind, size), at most MAX_LISTED, and how many
    (counted up to MAX_COUNTED + 1)."""
    with _directory(workspace, path_names(path)) as directory:
        entries: list[dict[str, object]] = []
        total = 0
        with os.scandir(directory) as scan:
            for entry in scan:
                total += 1
                if total > MAX_COUNTED:
                    break
                if len(entries) >= MAX_LISTED:
                    continue
                try:
                    status = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                entries.append({"name": entry.name, "kind": _kind(status.st_mode),
                                **({"size": status.st_size} if stat.S_ISREG(status.st_mode) else {})})
    entries.sort(key=lambda item: str(item["name"]))
    return entries, total


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link (not followed)"
    return "special"
