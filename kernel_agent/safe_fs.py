"""File operations the host may do inside a tree the sandbox can write.

The host often runs as root, and a kernel can plant symbolic links, hard
links, FIFOs or directories at any name inside its workspace (and any other
writable path) at any moment. A path-based operation there (``open``,
``mkdir``, ``chmod``, ``rename`` by name from the root) follows whatever the
kernel put on the way. So every operation here works from a directory
descriptor the host opened itself, refuses links at every step
(``O_NOFOLLOW``), creates with ``O_EXCL`` and checks what it opened with
``fstat`` before using it; modes and owners are changed through descriptors
(``fchmod``, ``fchown``), never by name.

Only the *top* directory is opened by path, and it must be one the caller
gave (a workspace, a record directory): its parents are the caller's, not
the kernel's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator

from kernel_agent.errors import UnsafePathError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: str | os.PathLike[str]) -> int:
    """A descriptor for a directory the caller named (its last component must not be a link)."""
    try:
        return os.open(os.fspath(path), _DIR_FLAGS)
    except OSError as exc:
        raise UnsafePathError(f"cannot open the directory {path}: {describe_os_error(exc)}") from None


def open_subdir(dir_fd: int, name: str, *, create: bool = False, mode: int = 0o755) -> int:
    """A descriptor for ``name`` inside ``dir_fd``: a real directory, never a link; made if ``create``."""
    _check_name(name)
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=dir_fd)
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        reason = describe_os_error(exc)
        raise UnsafePathError(f"{name!r} is not a directory the host can use safely: {reason}") from None
    return fd


def write_new_file(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644, sync: bool = False) -> None:
    """Create ``name`` in ``dir_fd`` (it must not exist: no link or file is ever reused) and write ``data``."""
    _check_name(name)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafePathError(f"cannot create {name!r}: {describe_os_error(exc)}") from None
    try:
        _write_all(fd, data)
        os.fchmod(fd, mode)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644) -> None:
    """Atomically replace ``name`` in ``dir_fd`` with ``data`` (temporary file made with O_EXCL, then renamed).

    A link at ``name`` is replaced, never followed; the mode is set on the
    descriptor, so nothing can be swapped in between the write and the chmod.
    """
    _check_name(name)
    temporary = f".{name}.{secrets.token_hex(6)}.tmp"
    write_new_file(dir_fd, temporary, data, mode=mode, sync=True)
    try:
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise


def open_regular(dir_fd: int, name: str, flags: int, *, mode: int = 0o600) -> int:
    """Open ``name`` in ``dir_fd`` without following a link, and check it is a regular file with one link."""
    _check_name(name)
    # O_TRUNC is applied only after the checks: truncating first would empty a hard-linked victim.
    truncate = bool(flags & os.O_TRUNC)
    try:
        fd = os.open(name, (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafePathError(f"cannot open {name!r}: {describe_os_error(exc)}") from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(fd)
        raise UnsafePathError(f"{name!r} is not a plain file (a device, FIFO, directory or hard link)")
    os.set_blocking(fd, True)
    if truncate:
        os.ftruncate(fd, 0)
    return fd


def read_at_most(fd: int, max_bytes: int) -> bytes | None:
    """The rest of an open file's bytes, or None when there are more than ``max_bytes`` (a file that grows
    while it is read included): never more than ``max_bytes`` + 1 bytes are held."""
    chunks: list[bytes] = []
    size = 0
    while size <= max_bytes:
        chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


def read_small_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """A small regular file's bytes, its last component never followed, a FIFO never blocked on.

    For files a caller names that may sit in a directory a kernel shares
    (connection files). Raises UnsafePathError for a link or a special file,
    and for one over ``max_bytes``; OSError when it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"{path} is not a regular file")
        data = os.read(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UnsafePathError(f"{path} is larger than {max_bytes} bytes")
    return data


def chown_tree(dir_fd: int, uid: int, gid: int, *, only_owned_by: int | None = None) -> int:
    """Give every entry below ``dir_fd`` (and the directory itself) to ``uid:gid``; return how many changed.

    Links are changed themselves, never followed (``lchown`` through the
    parent's descriptor); directories are entered by descriptor, without
    recursion (see :func:`walk_tree`). With ``only_owned_by``, entries owned
    by someone else (the user's own files) are left as they are.
    """
    def owned(status: os.stat_result) -> bool:
        mine = only_owned_by is None or status.st_uid == only_owned_by
        return mine and (status.st_uid, status.st_gid) != (uid, gid)

    changed = 0
    for parent_fd, name, status in walk_tree(dir_fd):  # the descriptor is valid only until the next step
        if owned(status):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
                changed += 1
    if owned(os.fstat(dir_fd)):
        os.fchown(dir_fd, uid, gid)
        changed += 1
    return changed


def remove_tree(parent_fd: int, name: str) -> None:
    """Remove ``name`` in ``parent_fd`` and everything below it: no link followed, no recursion.

    A kernel can build a directory tree thousands of levels deep in its
    workspace; ``shutil.rmtree`` recurses once a level and fails with
    RecursionError there (measured), which would leave the tree and break
    the close that called it.
    """
    _check_name(name)
    try:
        status = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(status.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    top = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        if (os.fstat(top).st_dev, os.fstat(top).st_ino) != (status.st_dev, status.st_ino):
            raise UnsafePathError(f"{name!r} changed while it was being removed")
        for entry_fd, entry, entry_status in walk_tree(top):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(entry_status.st_mode):
                    os.rmdir(entry, dir_fd=entry_fd)
                else:
                    os.unlink(entry, dir_fd=entry_fd)
    finally:
        os.close(top)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=parent_fd)


def walk_tree(top_fd: int) -> Iterator[tuple[int, str, os.stat_result]]:
    """(directory descriptor, name, lstat) of every entry below ``top_fd``, children before their directory.

    One descriptor is open at a time, however deep the tree: the walk goes
    down by ``openat(name, O_NOFOLLOW)`` and back up by ``openat("..")``,
    checking each directory's identity (device, inode) both ways, so a tree
    moved during the walk stops it (UnsafePathError) instead of leading it
    elsewhere. The descriptor yielded is valid until the next step; a
    directory's own entry comes after everything below it, so a caller may
    remove it then. The host walks trees only after their kernel is gone.
    """
    current = os.dup(top_fd)
    top = os.fstat(current)
    # Per level: (identity, the entries still to visit, this directory's name and lstat in its parent).
    levels: list[tuple[tuple[int, int], list[str], str, os.stat_result]] = [
        ((top.st_dev, top.st_ino), os.listdir(current), "", top)]
    try:
        while levels:
            _, pending, _, _ = levels[-1]
            if pending:
                name = pending.pop()
                try:
                    status = os.stat(name, dir_fd=current, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(status.st_mode):
                    yield current, name, status
                    continue
                child = os.open(name, _DIR_FLAGS, dir_fd=current)
                if (os.fstat(child).st_dev, os.fstat(child).st_ino) != (status.st_dev, status.st_ino):
                    os.close(child)
                    raise UnsafePathError(f"{name!r} changed during the walk")
                os.close(current)
                current = child
                levels.append(((status.st_dev, status.st_ino), os.listdir(current), name, status))
                continue
            _, _, name, status = levels.pop()
            if not levels:
                return
            parent = os.open("..", _DIR_FLAGS, dir_fd=current)
            if (os.fstat(parent).st_dev, os.fstat(parent).st_ino) != levels[-1][0]:
                os.close(parent)
                raise UnsafePathError("a directory was moved during the walk")
            os.close(current)
            current = parent
            yield current, name, status
    finally:
        os.close(current)


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafePathError(f"{name!r} is not a single file name")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def describe_os_error(exc: OSError) -> str:
    """What an OSError from opening a name in a kernel-writable tree means, in words (a link, not there...)."""
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link"
    if exc.errno == errno.ENOENT:
        return "it does not exist"
    if exc.errno == errno.ENOTDIR:
        return "it is not a directory"
    if exc.errno == errno.EEXIST:
        return "it already exists"
    return exc.strerror or str(exc)
