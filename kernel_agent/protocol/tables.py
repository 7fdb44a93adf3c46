"""pandas DataFrames and Series across the bridge: Arrow IPC with pandas metadata (pandas, pyarrow used lazily).

A DataFrame travels as one Arrow IPC stream in one binary buffer, written by
``pyarrow.Table.from_pandas``: its schema carries pandas' own metadata, so
the receiver's ``to_pandas`` rebuilds the same frame: dtypes (nullable ints
and booleans, ``string``, categoricals, datetimes with and without a time
zone, durations), the index (named or not, a RangeIndex without any data)
and missing values (NaN, None, ``pd.NA``, ``NaT``) as they were. A Series
travels as a one-column frame, its name beside it (a name can be any value).

What Arrow cannot hold without losing what the value is (a column of mixed
Python objects, an extension type such as periods or intervals, several
levels of column names) raises :class:`UnserializableValue` on the sending
side, with the column and what to do; the receiver checks the same and more
(see :mod:`kernel_agent.protocol.arrow_ipc`).
"""

from __future__ import annotations

import importlib
from typing import Any

from kernel_agent.protocol.arrow_ipc import check_schema, read_table
from kernel_agent.protocol.arrow_ipc import pyarrow_module as pyarrow_module
from kernel_agent.protocol.errors import DecodeError, UnserializableValue

#: The kinds of pandas values that travel as Arrow.
KINDS = ("dataframe", "series")
_SERIES_COLUMN = "values"


def pandas_module() -> Any:
    """pandas if this process has it, else None."""
    try:
        return importlib.import_module("pandas")
    except ImportError:
        return None


def to_ipc(value: Any, kind: str) -> bytes:
    """The Arrow IPC stream of a DataFrame or Series; UnserializableValue if Arrow cannot hold it faithfully."""
    pa = pyarrow_module()
    assert pa is not None  # the caller checked
    type_name = "pandas DataFrame" if kind == "dataframe" else "pandas Series"
    frame = value if kind == "dataframe" else value.to_frame(name=_SERIES_COLUMN)
    try:
        table = pa.Table.from_pandas(frame)
        check_schema(table.schema)
    except DecodeError as exc:
        raise UnserializableValue(type_name, f"{str(exc)[:300]}; convert such columns first "
                                  "(e.g. .astype(str))") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds (ArrowInvalid, ArrowTypeError, ValueError)
        raise UnserializableValue(type_name, f"Arrow cannot hold it as it is ({type(exc).__name__}: "
                                  f"{str(exc)[:300]}); convert the columns it names first (e.g. a column of "
                                  "mixed objects with .astype(str))") from None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_ipc(kind: str, buffer: bytes, name: Any, max_cells: int) -> Any:
    """The DataFrame or Series an Arrow IPC stream holds (checked: see :func:`arrow_ipc.read_table`)."""
    if kind not in KINDS:
        raise DecodeError(f"unknown kind of Arrow value {str(kind)[:40]!r}")
    if pandas_module() is None:
        raise DecodeError("a pandas value arrived as Arrow, but pandas is not installed here")
    frame = read_table(buffer, max_cells).to_pandas()
    if kind == "dataframe":
        return frame
    if frame.shape[1] != 1:
        raise DecodeError(f"a Series arrived as a table of {frame.shape[1]} columns")
    series = frame.iloc[:, 0]
    series.name = name
    return series


def plain_frame(value: Any) -> dict[str, Any]:
    """The JSON form of a DataFrame, for a receiver without pyarrow: columns, rows and index as values."""
    return {"columns": list(value.columns), "rows": value.astype(object).to_numpy().tolist(),
            "index": list(value.index)}


def from_plain_frame(columns: list[Any], rows: list[Any], index: list[Any]) -> Any:
    """A DataFrame from its JSON form (pandas infers its dtypes again), or a list of records without pandas."""
    pandas = pandas_module()
    if pandas is not None:
        return pandas.DataFrame(rows, columns=columns, index=index)
    return [dict(zip(columns, row, strict=False)) for row in rows]  # rows as sent, short or long
