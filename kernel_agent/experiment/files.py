"""An experiment's table on disk: CSV or Parquet, written whole or not at all.

CSV cells that a spreadsheet would run as a formula (``=HYPERLINK(...)``,
``+cmd|...``, ``@SUM(...)``: CSV injection) get a leading ``'``: the answer,
error and checker columns hold kernel-made text, and a journal may have been
written by someone else. Numbers (``-5``) are left as they are; Parquet and
the journal keep the exact text.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any

#: the formats a table can be written in -> the file name's suffix
FORMATS = {"csv": ".csv", "parquet": ".parquet"}
#: What a spreadsheet takes as the start of a formula (OWASP's list, and the full-width forms some read too).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?:inf|nan)")


def write_table(table: Any, path: Path, format: str) -> Path:
    """Write ``table`` at ``path`` as ``format`` (csv or parquet) through a temporary file and a rename, so a
    reader (or a crash) never sees half a table. Parquet needs pyarrow (ImportError saying so)."""
    if format not in FORMATS:
        raise ValueError(f"unknown table format {format!r}; known: {', '.join(FORMATS)}")
    if format == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ImportError("writing Parquet needs pyarrow (pip install pyarrow); CSV needs nothing more")
    buffer = io.BytesIO()  # a results table is small: rendered whole, then written in one go
    if format == "csv":
        without_formulas(table).to_csv(buffer, index=False)
    else:
        table.to_parquet(buffer, index=False)
    return write_bytes(buffer.getvalue(), Path(path))


def write_bytes(data: bytes, path: Path) -> Path:
    """Write ``data`` at ``path`` through a temporary file and a rename (a reader never sees half a file)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def without_formulas(table: Any) -> Any:
    """A copy of ``table`` whose text cells (and column names) a spreadsheet would not run as formulas."""
    safe = table.rename(columns=lambda name: _inert(name) if isinstance(name, str) else name)
    for column in safe.columns:
        if safe[column].dtype == object or str(safe[column].dtype) in {"string", "str"}:
            safe[column] = safe[column].map(_inert)
    return safe


def _inert(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    stripped = value.lstrip(" ")
    if stripped.startswith(_FORMULA_START) and not _NUMBER.fullmatch(stripped):
        return "'" + value
    return value
