"""Reading an Arrow IPC stream someone else wrote, within bounds (pyarrow imported only when used).

The host reads what a hostile kernel wrote, so a stream is checked before
pyarrow builds anything that costs memory, and again before pandas sees it:

* Its messages are walked one by one first: only a schema, dictionary
  batches and record batches, and none of them compressed. A compressed
  buffer declares its own uncompressed length, so a few kilobytes of zstd
  would make the reader allocate gigabytes; an uncompressed stream is read
  in place (zero copy), so reading it costs no more memory than was sent.
* The schema may hold only flat, plain types (booleans, numbers, strings,
  binary, dates, times, timestamps with a checked time zone, durations,
  decimals, dictionaries of those for categoricals; lists and structs of
  them a few levels deep). No extension types: their metadata is the
  writer's to choose, and a registered one is rebuilt by its own code.
* The data is validated in full (offsets, lengths, dictionary indices),
  and the table may have at most ``max_cells`` cells (rows times columns,
  at least one column): a table of null columns has no buffers at all, yet
  pandas makes a Python object of every one of its cells.
* The pandas metadata (how to rebuild the index, the dtypes, the column
  names) is parsed as strict, bounded JSON and every field it uses is
  checked against what pyarrow itself writes, before ``to_pandas`` reads it.
"""

from __future__ import annotations

import importlib
import re
import struct
from typing import Any

from kernel_agent.protocol import strict_json
from kernel_agent.protocol.errors import DecodeError

#: The most bytes of pandas metadata a stream may carry (pyarrow writes about 200 per column).
MAX_PANDAS_METADATA_BYTES = 1024**2
#: The most columns (index levels included) a table may have.
MAX_COLUMNS = 10_000
_MAX_TYPE_DEPTH = 4
_TIME_ZONE = re.compile(r"(?:[A-Za-z][A-Za-z0-9_+\-]{0,30})(?:/[A-Za-z0-9_+\-]{1,30}){0,2}|[+-]\d\d:\d\d")
_UNITS = r"(?:s|ms|us|ns)"
_NUMPY_TYPE = re.compile(
    rf"bool|u?int(?:8|16|32|64)|float(?:16|32|64)|object|str|bytes|U?Int(?:8|16|32|64)|Float(?:32|64)|boolean"
    rf"|string|category|datetime64\[{_UNITS}\]|timedelta64\[{_UNITS}\]"
    rf"|datetime64\[{_UNITS}, (?:{_TIME_ZONE.pattern})\]")
_PANDAS_TYPES = frozenset({
    "bool", "boolean", "bytes", "categorical", "date", "datetime", "datetimetz", "decimal", "empty", "floating",
    "integer", "mixed", "mixed-integer", "mixed-integer-float", "object", "string", "time", "timedelta", "unicode",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64",
})
_PANDAS_TYPE = re.compile(r"([a-z0-9\-]{1,24})|list\[([a-z0-9\-]{1,24})\]")
_COLUMN_METADATA: dict[str, type] = {"timezone": str, "num_categories": int, "ordered": bool, "precision": int,
                                     "scale": int, "encoding": str}
# Flatbuffers header types of an IPC message (format/Message.fbs): what a stream of a table may hold.
_SCHEMA, _DICTIONARY_BATCH, _RECORD_BATCH = 1, 2, 3


def pyarrow_module() -> Any:
    """pyarrow if this process has it, else None."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        return None


def read_table(buffer: bytes, max_cells: int) -> Any:
    """The table an Arrow IPC stream holds, checked (see the module docstring); DecodeError if it is refused."""
    pa = pyarrow_module()
    if pa is None:
        raise DecodeError("an Arrow table arrived, but pyarrow is not installed here")
    if _version(pa.__version__) < (14, 0, 1):
        # Older versions unpickle the metadata of 'arrow.py_extension_type' columns (CVE-2023-47248).
        raise DecodeError(f"Arrow tables are not read with pyarrow {pa.__version__}: versions before 14.0.1 "
                          "unpickle what the writer put in a stream; upgrade pyarrow")
    source = pa.py_buffer(buffer)
    reader = pa.ipc.MessageReader.open_stream(source)
    while (message := _next_message(reader)) is not None:
        _check_message(message.metadata.to_pybytes())
    table = pa.ipc.open_stream(source).read_all()
    check_schema(table.schema)
    cells = table.num_rows * max(1, table.num_columns)
    if cells > max_cells:
        raise DecodeError(f"a table of {table.num_rows:,} rows and {table.num_columns:,} columns has more than "
                          f"{max_cells:,} cells, the limit of one value")
    # Nested values count too: pandas makes a Python object of every element of a list or field of a struct,
    # and a list of a million nulls is a few bytes on the wire (a null array has no buffers).
    cells = sum(_elements(chunk, max_cells) for column in table.columns for chunk in column.chunks)
    if cells > max_cells:
        raise DecodeError(f"a table of {table.num_rows:,} rows holds more than {max_cells:,} values in its "
                          "columns, lists and structs, the limit of one value")
    table.validate(full=True)
    return table


def _elements(array: Any, limit: int) -> int:
    """The values ``array`` holds, nested ones included (stops counting past ``limit``)."""
    count = len(array)
    types = importlib.import_module("pyarrow").types
    if types.is_list(array.type) or types.is_large_list(array.type):
        count += _elements(array.values, limit)
    elif types.is_struct(array.type):
        for index in range(array.type.num_fields):
            if count > limit:
                break
            count += _elements(array.field(index), limit)
    elif types.is_dictionary(array.type):
        count += _elements(array.dictionary, limit)
    return count


def _version(text: str) -> tuple[int, ...]:
    parts = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(p) for p in parts.groups()) if parts else (0,)


def _next_message(reader: Any) -> Any:
    try:
        return reader.read_next_message()
    except StopIteration:
        return None


def _check_message(metadata: bytes) -> None:
    """Refuse a message that is not a schema or an uncompressed (dictionary) batch: read from its flatbuffer."""
    try:
        message = _u32(metadata, 0)
        header_type = _field(metadata, message, 1)
        kind = metadata[header_type] if header_type is not None else 0
        header = _field(metadata, message, 2)
        if kind == _SCHEMA:
            return
        if kind not in (_DICTIONARY_BATCH, _RECORD_BATCH) or header is None:
            raise DecodeError(f"an Arrow stream holds a message of type {kind}, not a table's")
        batch: int | None = header + _u32(metadata, header)
        if kind == _DICTIONARY_BATCH:
            data = _field(metadata, header + _u32(metadata, header), 1)
            batch = data + _u32(metadata, data) if data is not None else None
        if batch is not None and _field(metadata, batch, 3) is not None:
            raise DecodeError("an Arrow stream holds compressed buffers, which are refused (their declared "
                              "size, not what was sent, would decide what reading them allocates)")
    except (struct.error, IndexError):
        raise DecodeError("an Arrow stream holds a message whose metadata is malformed") from None


def _u32(data: bytes, position: int) -> int:
    if position < 0:
        raise IndexError(position)
    return int(struct.unpack_from("<I", data, position)[0])


def _field(data: bytes, table: int, index: int) -> int | None:
    """Where field ``index`` of the flatbuffers table at ``table`` is (None: absent)."""
    if table < 0:
        raise IndexError(table)
    vtable = table - int(struct.unpack_from("<i", data, table)[0])
    if vtable < 0:
        raise IndexError(vtable)
    vtable_size = int(struct.unpack_from("<H", data, vtable)[0])
    slot = 4 + 2 * index
    if slot + 2 > vtable_size:
        return None
    offset = int(struct.unpack_from("<H", data, vtable + slot)[0])
    return table + offset if offset else None


# -- the schema ---------------------------------------------------------------------------------------


def check_schema(schema: Any) -> None:
    """Refuse a schema with a type outside the plain set, or pandas metadata unlike pyarrow's own."""
    if len(schema) > MAX_COLUMNS:
        raise DecodeError(f"a table has {len(schema):,} columns; the limit is {MAX_COLUMNS:,}")
    for field in schema:
        _check_type(field.type, f"column {field.name[:100]!r}", 0)
    raw = (schema.metadata or {}).get(b"pandas")
    if raw is not None:
        check_pandas_metadata(raw, set(schema.names))


def _check_type(arrow_type: Any, where: str, depth: int) -> None:
    pa = importlib.import_module("pyarrow")
    types = pa.types
    if depth > _MAX_TYPE_DEPTH:
        raise DecodeError(f"{where} nests types more than {_MAX_TYPE_DEPTH} levels deep")
    if isinstance(arrow_type, pa.BaseExtensionType):
        raise DecodeError(f"{where} has the extension type {str(arrow_type)[:100]}; only plain types cross")
    if any(check(arrow_type) for check in (
            types.is_null, types.is_boolean, types.is_integer, types.is_floating, types.is_string,
            types.is_large_string, types.is_binary, types.is_large_binary, types.is_date, types.is_time,
            types.is_duration, types.is_decimal)):
        return
    if types.is_timestamp(arrow_type):
        if arrow_type.tz is not None:
            check_time_zone(arrow_type.tz, where)
        return
    if types.is_dictionary(arrow_type):
        if not types.is_integer(arrow_type.index_type):
            raise DecodeError(f"{where} is a dictionary whose indices are not integers")
        # Only a column's own dictionary of flat values (a categorical): inside a list or a struct, or holding
        # lists or structs, pandas decodes it for every element, so one long value sent once is copied per row.
        if depth > 0 or types.is_nested(arrow_type.value_type) or types.is_dictionary(arrow_type.value_type):
            raise DecodeError(f"{where} has a dictionary inside a list or struct, or of lists or structs; only "
                              "a column's own dictionary of plain values (a categorical) crosses")
        _check_type(arrow_type.value_type, where, depth + 1)
        return
    if types.is_list(arrow_type) or types.is_large_list(arrow_type):
        _check_type(arrow_type.value_type, where, depth + 1)
        return
    if types.is_struct(arrow_type):
        for index in range(arrow_type.num_fields):
            _check_type(arrow_type.field(index).type, where, depth + 1)
        return
    raise DecodeError(f"{where} has the Arrow type {str(arrow_type)[:100]}, which does not cross the bridge")


def check_time_zone(zone: Any, where: str) -> None:
    """Refuse a time zone that is not a plain IANA name or a fixed offset (it becomes a file lookup)."""
    if not isinstance(zone, str) or not _TIME_ZONE.fullmatch(zone) or ".." in zone:
        raise DecodeError(f"{where} has the time zone {str(zone)[:60]!r}, which is not a zone name or offset")


def check_pandas_metadata(raw: bytes, field_names: set[str]) -> None:
    """Refuse pandas metadata with fields pyarrow would not write (see the module docstring)."""
    try:
        metadata = strict_json.loads(raw, max_bytes=MAX_PANDAS_METADATA_BYTES, max_depth=16)
    except strict_json.StrictJSONError as exc:
        raise DecodeError(f"a table's pandas metadata {exc}") from None
    if not isinstance(metadata, dict) or not set(metadata) <= {
            "index_columns", "column_indexes", "columns", "attributes", "creator", "pandas_version"}:
        raise DecodeError("a table's pandas metadata has fields pyarrow does not write")
    index_columns = metadata.get("index_columns", [])
    column_indexes = metadata.get("column_indexes", [])
    columns = metadata.get("columns", [])
    if not (isinstance(index_columns, list) and isinstance(column_indexes, list) and isinstance(columns, list)):
        raise DecodeError("a table's pandas metadata is malformed (lists expected)")
    if len(column_indexes) > 1:
        raise DecodeError("a table with several levels of column names (a MultiIndex) does not cross the bridge")
    for index in index_columns:
        if isinstance(index, str):
            if index not in field_names:
                raise DecodeError(f"a table's pandas metadata names the index column {index[:100]!r}, "
                                  "which it does not have")
        elif not (isinstance(index, dict) and index.get("kind") == "range" and _scalar(index.get("name"))
                  and all(type(index.get(k)) is int for k in ("start", "stop", "step")) and index["step"] != 0):
            raise DecodeError("a table's pandas metadata describes an index pyarrow does not write")
    for column in [*columns, *column_indexes]:
        _check_column_metadata(column)
    if not isinstance(metadata.get("attributes", {}), dict):
        raise DecodeError("a table's pandas attributes are not an object")


def _check_column_metadata(column: Any) -> None:
    if not isinstance(column, dict) or not _scalar(column.get("name")) or not _scalar(column.get("field_name")):
        raise DecodeError("a table's pandas metadata describes a column pyarrow does not write")
    pandas_type, numpy_type = column.get("pandas_type"), column.get("numpy_type")
    match = _PANDAS_TYPE.fullmatch(pandas_type) if isinstance(pandas_type, str) else None
    if match is None or (match.group(1) or match.group(2)) not in _PANDAS_TYPES:
        raise DecodeError(f"a table's pandas metadata has the pandas type {str(pandas_type)[:60]!r}")
    if not isinstance(numpy_type, str) or not _NUMPY_TYPE.fullmatch(numpy_type):
        raise DecodeError(f"a table's pandas metadata has the dtype {str(numpy_type)[:60]!r}, which does not "
                          "cross the bridge")
    extra = column.get("metadata")
    if extra is None:
        return
    if not isinstance(extra, dict):
        raise DecodeError("a table's pandas metadata has column details that are not an object")
    for key, value in extra.items():
        expected = _COLUMN_METADATA.get(key)
        if expected is None or type(value) is not expected or (type(value) is int and not 0 <= value <= 1 << 31):
            raise DecodeError(f"a table's pandas metadata has the column detail {key[:60]!r}={str(value)[:60]}")
    if "timezone" in extra:
        check_time_zone(extra["timezone"], "a column")


def _scalar(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float, bool)) and len(str(value)) <= 1000)
