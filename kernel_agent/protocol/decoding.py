"""Decoding what :mod:`kernel_agent.protocol.wire` encoded, bounded: the receiving side of every value.

See :mod:`kernel_agent.protocol.wire` for the forms and the limits; callers
use :func:`kernel_agent.protocol.wire.decode`, which turns every failure
into a :class:`DecodeError`.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from kernel_agent.protocol import arrays, tables
from kernel_agent.protocol.errors import DecodeError
from kernel_agent.protocol.values import MAX_DECIMAL_DIGITS, MAX_DEPTH, TAG, make_record

# The longest text of a Timestamp (isoformat with nanoseconds and an offset is 35 characters).
MAX_TIMESTAMP_CHARS = 100
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class Decoder:
    """One decoding: counts values and depth so that hostile input costs bounded work."""

    def __init__(self, buffers: list[bytes], max_items: int) -> None:
        self.buffers = buffers
        self.items = 0
        self.max_items = max_items
        self.notes: list[str] = []

    def decode(self, data: Any, depth: int) -> Any:
        self.items += 1
        if depth > MAX_DEPTH:
            raise DecodeError(f"the value is nested more than {MAX_DEPTH} levels deep")
        if self.items > self.max_items:
            raise DecodeError(f"the value has more than {self.max_items:,} parts")
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
            "repr": lambda: str(data["value"]),  # written by versions before UnserializableValue
        }
        if tag in simple:
            return simple[tag]()
        if tag == "bytes":
            return self._buffer(data, "bytes value")
        if tag in ("tuple", "set", "frozenset"):
            items = [self.decode(v, depth) for v in data["items"]]
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict":
            return {_hashable(self.decode(k, depth)): self.decode(v, depth) for k, v in data["items"]}
        if tag == "record":
            fields = data["fields"]
            pairs = fields.items() if isinstance(fields, dict) else fields  # a list of pairs keeps the order
            return make_record(str(data["name"]), {str(k): self.decode(v, depth) for k, v in pairs})
        if tag in ("timestamp", "pd_timedelta", "na", "nat"):
            return _pandas_scalar(tag, data)
        return self._array_like(tag, data, depth)

    def _buffer(self, data: dict[str, Any], what: str) -> bytes:
        """The bytes a tagged value carries: a binary buffer of the message, or inline base64 (a recording)."""
        if "base64" in data:
            text = data["base64"]
            if not isinstance(text, str):
                raise DecodeError(f"{what} has inline data that is not a string")
            return base64.b64decode(text, validate=True)
        index = data["buffer"]
        if type(index) is not int or not 0 <= index < len(self.buffers):
            raise DecodeError(f"{what} names buffer {index!r}, but {len(self.buffers)} were sent")
        return bytes(self.buffers[index])

    def _array_like(self, tag: str, data: dict[str, Any], depth: int) -> Any:
        if tag == "ndarray" and ("buffer" in data or "base64" in data):
            array = arrays.from_binary(data, self._buffer(data, "an array"))
            return array[0] if data.get("scalar") is True and array.shape == (1,) else array
        if tag == "arrow":
            name = self.decode(data.get("name"), depth)
            value = tables.from_ipc(data["kind"], self._buffer(data, "a table"), name, self.max_items - self.items)
            self.items += value.size
            return value
        if tag == "ndarray":
            items = self.decode(data["items"], depth)
            numpy = arrays.numpy_module()
            if numpy is None:
                self.notes.append("a numpy array arrived as nested lists: numpy is not installed here")
                return items
            return arrays.from_items(numpy, items, data["dtype"])
        if tag == "dataframe":
            columns, rows, index = (self.decode(data[k], depth) for k in ("columns", "rows", "index"))
            frame = tables.from_plain_frame(columns, rows, index)
            self.notes.append("a pandas DataFrame arrived in plain JSON form: " + (
                "its dtypes were inferred again" if not isinstance(frame, list)
                else "pandas is not installed here, so it is a list of records (one dict per row, no index)"))
            return frame
        if tag == "series":
            items = self.decode(data["items"], depth)
            pandas = tables.pandas_module()
            if pandas is None:
                self.notes.append("a pandas Series arrived as a dict (index: value): pandas is not installed here")
                return items
            return pandas.Series(items, name=self.decode(data["name"], depth))
        raise DecodeError(f"unknown value tag {tag!r}")


def _pandas_scalar(tag: str, data: dict[str, Any]) -> Any:
    """A pandas Timestamp, Timedelta, NA or NaT; without pandas, a datetime, timedelta or None."""
    pandas = tables.pandas_module()
    if tag == "timestamp":
        text = str(data["value"])
        if len(text) > MAX_TIMESTAMP_CHARS:  # pandas' parser is quadratic in what it is given (200 kB: 3 s)
            raise DecodeError(f"a Timestamp's text is {len(text):,} characters; an ISO timestamp has at most "
                              f"{MAX_TIMESTAMP_CHARS}")
        return pandas.Timestamp(text) if pandas is not None else dt.datetime.fromisoformat(text)
    if tag == "pd_timedelta":
        nanoseconds = data["nanoseconds"]
        if type(nanoseconds) is not int:
            raise DecodeError("a Timedelta's nanoseconds are not an int")
        return pandas.Timedelta(nanoseconds, unit="ns") if pandas is not None \
            else dt.timedelta(microseconds=nanoseconds // 1000)
    if pandas is None:
        return None
    return pandas.NA if tag == "na" else pandas.NaT


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


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
