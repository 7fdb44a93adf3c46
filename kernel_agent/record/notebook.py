"""The notebook file: written atomically in full, or extended by one cell in place.

Rewriting the whole notebook after every cell costs O(cells) per cell. JSON
key order does not matter, so the file is laid out as ``cells`` first and
the small ``metadata`` tail after them; recording a cell truncates the tail
and writes the new cell and a new tail: O(1) per cell. Before appending,
the file is checked to be the one last written (inode, size, mtime); if
anything changed it (or replaced it with a symlink, from a workspace the
kernel can write), the notebook is rewritten in full, atomically (temporary
file + rename, which replaces a symlink rather than following it). The
journal is what makes a crash mid-append harmless.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kernel_agent import safe_fs
from kernel_agent.errors import UnsafePathError

_HEAD = b'{\n "cells": ['


def _tail(metadata: dict[str, Any]) -> bytes:
    body = json.dumps(metadata, indent=1, sort_keys=True, ensure_ascii=False).replace("\n", "\n ")
    return f'\n ],\n "metadata": {body},\n "nbformat": 4,\n "nbformat_minor": 5\n}}\n'.encode()


def cell_json(cell: dict[str, Any]) -> bytes:
    """How one cell is stored in the file (keys in their own order: a tool's dict keeps its order;
    only the hash uses canonical, sorted JSON)."""
    return ("  " + json.dumps(cell, indent=1, ensure_ascii=False).replace("\n", "\n  ")).encode()


class NotebookFile:
    """Keeps one .ipynb on disk in step with the recorded cells.

    Every operation goes through a descriptor of the notebook's directory
    (opened once, never following a link): the temporary file is made with
    O_EXCL and its mode set with fchmod before the rename, and the in-place
    append opens the file with O_NOFOLLOW and checks it is the file last
    written. Even a record directory a sandbox could reach (only when the
    caller allowed it) cannot redirect a write.
    """

    def __init__(self, path: Path, *, dir_fd: int | None = None) -> None:
        self.path = path
        self._own_dir_fd = dir_fd is None
        self._dir_fd = safe_fs.open_dir(path.parent) if dir_fd is None else dir_fd
        self._cells: list[bytes] = []
        self._cells_end = 0  # offset where the tail starts
        self._stamp: tuple[int, int, int] | None = None

    def write_full(self, cells: list[bytes], metadata: dict[str, Any]) -> None:
        """Write the whole notebook atomically."""
        self._cells = list(cells)
        body = _HEAD + b",".join(b"\n" + c for c in self._cells)
        safe_fs.replace_file(self._dir_fd, self.path.name, body + _tail(metadata), mode=0o644)
        self._cells_end = len(body)
        self._remember()

    def rewrite(self, metadata: dict[str, Any]) -> None:
        """Write the cells recorded so far with new metadata, atomically."""
        self.write_full(self._cells, metadata)

    def append(self, cell: bytes, metadata: dict[str, Any]) -> None:
        """Add one cell (and the new metadata) in place; rewrite in full if the file was touched."""
        try:
            descriptor = safe_fs.open_regular(self._dir_fd, self.path.name, os.O_RDWR)
        except UnsafePathError:
            self.write_full([*self._cells, cell], metadata)
            return
        with os.fdopen(descriptor, "r+b") as handle:
            status = os.fstat(handle.fileno())
            if (status.st_ino, status.st_size, status.st_mtime_ns) != self._stamp:
                handle.close()
                self.write_full([*self._cells, cell], metadata)
                return
            handle.seek(self._cells_end)
            chunk = b"\n" + cell if not self._cells else b",\n" + cell
            handle.write(chunk + _tail(metadata))
            handle.truncate()
            handle.flush()
            self._cells.append(cell)
            self._cells_end += len(chunk)
            status = os.fstat(handle.fileno())
            self._stamp = (status.st_ino, status.st_size, status.st_mtime_ns)

    def close(self) -> None:
        """Close the directory descriptor this file opened (idempotent)."""
        if self._own_dir_fd and self._dir_fd >= 0:
            os.close(self._dir_fd)
        self._dir_fd = -1

    def _remember(self) -> None:
        status = os.stat(self.path.name, dir_fd=self._dir_fd, follow_symlinks=False)
        self._stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
