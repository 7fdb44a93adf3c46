"""The value encoding of tool calls, shared by the host and the kernel (stdlib only).

Values cross the comm bridge as JSON plus binary buffers, never pickle: the
kernel is untrusted and the host must be able to decode anything it sends
without executing code. Types JSON lacks are tagged objects
``{"__ka__": TAG, ...}``:

==============  ===============================================================
Python value    arrives as
==============  ===============================================================
datetime, date, time, timedelta, Decimal, UUID, complex, Path: the same type
float NaN, inf, -inf: the same float (tagged: JSON has no such numbers)
tuple, set, frozenset: the same type (items encoded recursively)
bytes, bytearray: bytes, carried in a binary buffer (no base64)
dict with non-string keys: the same dict
pydantic model, dataclass, NamedTuple: a :class:`Record` (a dict with attribute access) named after the class
enum member: its value
numpy array: a numpy array if numpy is importable on the receiving side, else nested lists
pandas DataFrame / Series: the same if pandas is importable, else a list of records / a dict
anything else: ``str(value)`` tagged ``repr`` (so nothing is silently lost)
==============  ===============================================================

This module is the one piece of code both processes import; it must stay
dependency-free (numpy/pandas are only used when already imported).

Decoding is bounded, because the host decodes what a hostile kernel sends:
nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_ITEMS` values,
and decimals with more than :data:`MAX_DECIMAL_DIGITS` digits or an exponent
beyond that are refused with :class:`DecodeError` (``Decimal("1e10000000")``
is a short string, but validating it as an ``int`` costs seconds of CPU).
An array's dtype must be a plain scalar type (:func:`array_dtype`): a dtype
string can carry a shape (``"(1000,1000,1000)f8"`` is 8 GB) or a structure.
Every failure, whatever Python raises underneath (an overflowing timedelta,
a too-deep value, an allocation that fails), is a :class:`DecodeError`.
Encoded output never holds a non-finite float, so it is valid JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

TAG = "__ka__"
#: Limits of :func:`decode` (see the module docstring).
MAX_DEPTH = 200
MAX_ITEMS = 10_000_000
MAX_DECIMAL_DIGITS = 10_000
#: The most memory a decoded string or bytes array may take (numpy gives every element the longest width).
MAX_ARRAY_BYTES = 64 * 1024**2
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class Record(dict):  # type: ignore[type-arg]
    """A structured value from the other side: a dict whose keys are also attributes."""

    __record_name__: str = "Record"

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{self.__record_name__} has no field {name!r}") from None

    def __dir__(self) -> list[str]:
        return [*self.keys(), *super().__dir__()]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"{self.__record_name__}({fields})"


def make_record(name: str, fields: dict[str, Any]) -> Record:
    """A Record called ``name`` (its repr and errors use the name)."""
    record = Record(fields)
    record.__record_name__ = name
    return record


class Encoder:
    """Turns a value into JSON-compatible data plus a list of binary buffers."""

    def __init__(self) -> None:
        self.buffers: list[bytes] = []

    def encode(self, value: Any) -> Any:
        """The JSON-compatible form of ``value``."""
        if isinstance(value, float) and not math.isfinite(value):
            return {TAG: "float", "value": "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list,)):
            return [self.encode(v) for v in value]
        if isinstance(value, dict) and not isinstance(value, Record):
            if all(isinstance(k, str) for k in value) and TAG not in value:
                return {k: self.encode(v) for k, v in value.items()}
            return {TAG: "dict", "items": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        return self._encode_special(value)

    def _encode_special(self, value: Any) -> Any:
        if isinstance(value, Record):
            return {TAG: "record", "name": value.__record_name__, "fields": self.encode(dict(value))}
        if isinstance(value, (bytes, bytearray, memoryview)):
            self.buffers.append(bytes(value))
            return {TAG: "bytes", "buffer": len(self.buffers) - 1}
        if isinstance(value, enum.Enum):
            return self.encode(value.value)
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple
            return self._record(type(value).__name__, value._asdict())  # type: ignore[attr-defined]
        for collection in (tuple, set, frozenset):
            if isinstance(value, collection):
                return {TAG: collection.__name__, "items": [self.encode(v) for v in value]}
        if isinstance(value, (dt.datetime, dt.date, dt.time)):
            tag = "datetime" if isinstance(value, dt.datetime) else "date" if isinstance(value, dt.date) else "time"
            return {TAG: tag, "value": value.isoformat()}
        if isinstance(value, dt.timedelta):
            return {TAG: "timedelta", "seconds": value.total_seconds()}
        if isinstance(value, decimal.Decimal):
            return {TAG: "decimal", "value": str(value)}
        if isinstance(value, uuid.UUID):
            return {TAG: "uuid", "value": str(value)}
        if isinstance(value, complex):
            return {TAG: "complex", "real": self.encode(value.real), "imag": self.encode(value.imag)}
        if isinstance(value, PurePath):
            return {TAG: "path", "value": str(value)}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return self._record(type(value).__name__, fields)
        if hasattr(value, "model_dump") and hasattr(type(value), "model_fields"):  # pydantic v2
            return self._record(type(value).__name__, {name: getattr(value, name) for name in type(value).model_fields})
        return self._encode_array_like(value)

    def _record(self, name: str, fields: dict[str, Any]) -> Any:
        return {TAG: "record", "name": name, "fields": {k: self.encode(v) for k, v in fields.items()}}

    def _encode_array_like(self, value: Any) -> Any:
        module = type(value).__module__.split(".")[0]
        if module == "numpy" and hasattr(value, "tolist"):
            if getattr(value, "ndim", 0) == 0:
                return self.encode(value.item())
            return {TAG: "ndarray", "dtype": str(value.dtype), "items": self.encode(value.tolist())}
        if module == "pandas" and type(value).__name__ == "DataFrame":
            return {TAG: "dataframe", "columns": self.encode(list(value.columns)),
                    "rows": self.encode(value.to_numpy().tolist()), "index": self.encode(list(value.index))}
        if module == "pandas" and type(value).__name__ == "Series":
            return {TAG: "series", "name": self.encode(value.name), "items": self.encode(value.to_dict())}
        if module == "pandas" and type(value).__name__ == "Timestamp":
            return {TAG: "datetime", "value": value.isoformat()}
        return {TAG: "repr", "type": type(value).__qualname__, "value": str(value)}


def encode(value: Any) -> tuple[Any, list[bytes]]:
    """Encode a value: (JSON-compatible data, binary buffers)."""
    encoder = Encoder()
    return encoder.encode(value), encoder.buffers


def keep_key_order(data: Any) -> Any:
    """Encoded ``data`` in a form that survives JSON writers that sort keys (nbformat, canonical JSON).

    A recording stores tool results inside notebook JSON, which Jupyter
    rewrites with sorted keys; a replayed tool must still return its dicts
    in their original order (printing a row would differ otherwise). Dicts
    and record fields whose keys are not already sorted become ordered
    ``[key, value]`` pairs, which :func:`decode` reads back the same.
    """
    if isinstance(data, list):
        return [keep_key_order(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        if list(data) == sorted(data):
            return {k: keep_key_order(v) for k, v in data.items()}
        return {TAG: "dict", "items": [[k, keep_key_order(v)] for k, v in data.items()]}
    if tag == "record" and isinstance(data.get("fields"), dict):
        fields = data["fields"]
        ordered = [[k, keep_key_order(v)] for k, v in fields.items()]
        return {**data, "fields": ordered if list(fields) != sorted(fields) else dict(ordered)}
    return {k: keep_key_order(v) if k != TAG else v for k, v in data.items()}


class DecodeError(ValueError):
    """The data is not a valid encoding (for example a buffer index out of range), or is over a limit."""


def decode(data: Any, buffers: list[bytes] | None = None) -> Any:
    """Rebuild a value from :func:`encode`'s output. Never executes code; bounded (see the module docstring).

    Raises :class:`DecodeError` and nothing else for bad input: callers that
    decode hostile data handle one exception, so no input can kill them.
    """
    try:
        return _Decoder(buffers or []).decode(data, 0)
    except DecodeError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise DecodeError(f"the value could not be decoded: {type(exc).__name__}") from None
    except Exception as exc:  # noqa: BLE001 - any other failure is bad input too (see the docstring)
        raise DecodeError(f"the value could not be decoded: {type(exc).__name__}: {exc}"[:1000]) from None


class _Decoder:
    """One decoding: counts values and depth so that hostile input costs bounded work."""

    def __init__(self, buffers: list[bytes]) -> None:
        self.buffers = buffers
        self.items = 0

    def decode(self, data: Any, depth: int) -> Any:
        self.items += 1
        if depth > MAX_DEPTH:
            raise DecodeError(f"the value is nested more than {MAX_DEPTH} levels deep")
        if self.items > MAX_ITEMS:
            raise DecodeError(f"the value has more than {MAX_ITEMS:,} parts")
        if isinstance(data, list):
            return [self.decode(v, depth + 1) for v in data]
        if not isinstance(data, dict):
            return data
        tag = data.get(TAG)
        if tag is None:
            return {k: self.decode(v, depth + 1) for k, v in data.items()}
        try:
            return self._tagged(tag, data, depth + 1)
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as exc:  # Overflow, InvalidOperation
            raise DecodeError(f"invalid {tag!r} value: {exc}") from None

    def _tagged(self, tag: str, data: dict[str, Any], depth: int) -> Any:
        simple: dict[str, Callable[[], Any]] = {
            "float": lambda: _NON_FINITE[str(data["value"])],
            "datetime": lambda: dt.datetime.fromisoformat(data["value"]),
            "date": lambda: dt.date.fromisoformat(data["value"]),
            "time": lambda: dt.time.fromisoformat(data["value"]),
            "timedelta": lambda: dt.timedelta(seconds=float(data["seconds"])),
            "decimal": lambda: _decimal(data["value"]),
            "uuid": lambda: uuid.UUID(str(data["value"])),
            "complex": lambda: complex(float(self.decode(data["real"], depth)),
                                       float(self.decode(data["imag"], depth))),
            "path": lambda: PurePath(str(data["value"])),
            "repr": lambda: str(data["value"]),
        }
        if tag in simple:
            return simple[tag]()
        if tag == "bytes":
            index = data["buffer"]
            if not isinstance(index, int) or not 0 <= index < len(self.buffers):
                raise DecodeError(f"bytes value names buffer {index!r}, but {len(self.buffers)} were sent")
            return bytes(self.buffers[index])
        if tag in ("tuple", "set", "frozenset"):
            items = [self.decode(v, depth) for v in data["items"]]
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict":
            return {_hashable(self.decode(k, depth)): self.decode(v, depth) for k, v in data["items"]}
        if tag == "record":
            fields = data["fields"]
            pairs = fields.items() if isinstance(fields, dict) else fields  # a list of pairs keeps the order
            return make_record(str(data["name"]), {str(k): self.decode(v, depth) for k, v in pairs})
        return self._array_like(tag, data, depth)

    def _array_like(self, tag: str, data: dict[str, Any], depth: int) -> Any:
        numpy = sys.modules.get("numpy")
        pandas = sys.modules.get("pandas")
        if tag == "ndarray":
            items = self.decode(data["items"], depth)
            if numpy is None:
                return items
            dtype = array_dtype(data["dtype"])
            width = _fixed_width(dtype)
            if width is not None:
                _check_string_array(items, width)
            return numpy.array(items, dtype=dtype)
        if tag == "dataframe":
            columns, rows, index = (self.decode(data[k], depth) for k in ("columns", "rows", "index"))
            if pandas is not None:
                return pandas.DataFrame(rows, columns=columns, index=index)
            return [dict(zip(columns, row, strict=False)) for row in rows]  # rows as sent, short or long
        if tag == "series":
            items = self.decode(data["items"], depth)
            return pandas.Series(items, name=self.decode(data["name"], depth)) if pandas is not None else items
        raise DecodeError(f"unknown value tag {tag!r}")


def _decimal(text: Any) -> decimal.Decimal:
    """A Decimal within the digit and exponent limits (checked on the string first: it is cheap)."""
    text = str(text)
    if len(text) > MAX_DECIMAL_DIGITS + 32:
        raise DecodeError(f"a decimal of {len(text):,} characters is over the limit of {MAX_DECIMAL_DIGITS:,} digits")
    value = decimal.Decimal(text)
    if value.is_finite() and abs(value.adjusted()) > MAX_DECIMAL_DIGITS:
        raise DecodeError(f"the decimal's exponent {value.adjusted():,} is beyond +/-{MAX_DECIMAL_DIGITS:,}: "
                          "such a number costs seconds of CPU to convert")
    return value


_SCALAR_DTYPES = frozenset({
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128", "object", "str", "bytes",
})
# What str(numpy.dtype) gives for the same types in another byte order ("<i4", ">f8", "|b1"), strings
# and bytes ("<U12", "|S5"), dates and durations ("datetime64[ns]", "<m8[25s]"). No shape ("(2,3)f8",
# "10f8"), no structure ("f8,i4", "[('a', '<i4')]"): those make numpy allocate what the sender chose.
_DTYPE_PATTERN = re.compile(
    r"[<>|=]?(?:[?bBiufc](?:1|2|4|8|16)?|[US]\d{0,7}"
    r"|(?:datetime64|timedelta64|M8|m8)(?:\[\d{0,6}(?:Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\])?)")
_WIDTH_PATTERN = re.compile(r"[<>|=]?([US])(\d*)|(str|bytes)")


def array_dtype(text: Any) -> str:
    """``text`` if it names a plain scalar numpy dtype; else :class:`DecodeError` (see the module docstring)."""
    if isinstance(text, str) and (text in _SCALAR_DTYPES or _DTYPE_PATTERN.fullmatch(text)):
        return text
    raise DecodeError(f"array dtype {str(text)[:100]!r} is not a plain scalar type (no shapes or structures)")


def _fixed_width(dtype: str) -> int | None:
    """For a string or bytes dtype, its declared width in characters (0: as wide as the longest item); else None."""
    match = _WIDTH_PATTERN.fullmatch(dtype)
    if match is None:
        return None
    return int(match.group(2)) if match.group(2) else 0


def _check_string_array(items: Any, width: int) -> None:
    """Refuse a string array numpy would make huge: every element gets the longest one's width (4 bytes a character).

    A million one-letter strings and one of a million letters are a small
    message but a 4 TB array.
    """
    count, longest, stack = 0, width, [items]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
            continue
        count += 1
        longest = max(longest, len(item) if isinstance(item, (str, bytes)) else 32)  # 32: a number's text
    if count * longest * 4 > MAX_ARRAY_BYTES:
        raise DecodeError(f"a string array of {count:,} items {longest:,} characters wide would take "
                          f"{count * longest * 4:,} bytes; the limit is {MAX_ARRAY_BYTES:,}")


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
