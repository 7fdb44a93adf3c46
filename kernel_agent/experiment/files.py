"""An experiment's table on disk: CSV or Parquet, written whole or not at all."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

#: the formats a table can be written in -> the file name's suffix
FORMATS = {"csv": ".csv", "parquet": ".parquet"}


def write_table(table: Any, path: Path, format: str) -> Path:
    """Write ``table`` at ``path`` as ``format`` (csv or parquet) through a temporary file and a rename, so a
    reader (or a crash) never sees half a table. Parquet needs pyarrow (ImportError saying so)."""
    if format not in FORMATS:
        raise ValueError(f"unknown table format {format!r}; known: {', '.join(FORMATS)}")
    if format == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ImportError("writing Parquet needs pyarrow (pip install pyarrow); CSV needs nothing more")
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            if format == "csv":
                table.to_csv(stream, index=False)
            else:
                table.to_parquet(stream, index=False)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path
