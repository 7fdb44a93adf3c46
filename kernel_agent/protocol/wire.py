"""The value encoding of tool calls, shared by the host and the kernel (stdlib only at import).

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
numpy array: the same dtype and shape, its bytes in a binary buffer (:mod:`.arrays`); object arrays as JSON items
numpy scalar: the Python scalar (``.item()``); datetime64 / timedelta64 scalars: the same numpy scalar
pandas DataFrame / Series: the same, as Arrow IPC in a binary buffer (:mod:`.tables`)
pandas Timestamp, Timedelta, NA, NaT: the same
anything else: :class:`UnserializableValue` on the sending side, naming where the value is
==============  ===============================================================

The binary forms need the library on the receiving side: each side says
what it accepts (:func:`local_accepts`; the kernel in its comm_open, the
host when it installs the SDK), and the sender falls back to a plain form
the receiver can read, noted in ``notes``: an array as nested lists, a
DataFrame as JSON rows (pandas infers the dtypes again; without pandas, a
list of records), a Series as a dict. A recording keeps binary values
inline as base64 (:func:`inline_buffers`), so a replay decodes the same.

This module is the one piece of code both processes import; it must stay
dependency-free (numpy, pandas and pyarrow are imported only for values of theirs).

Decoding is bounded, because the host decodes what a hostile kernel sends:
nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_ITEMS` values
(a table's cells count), and decimals with more than
:data:`MAX_DECIMAL_DIGITS` digits or an exponent beyond that are refused
with :class:`DecodeError` (``Decimal("1e10000000")`` is a short string, but
validating it as an ``int`` costs seconds of CPU). Arrays and tables are
checked before they are built (:mod:`.arrays`, :mod:`.arrow_ipc`); nothing
is ever unpickled. Every failure, whatever Python raises underneath (an
overflowing timedelta, a too-deep value, an allocation that fails), is a
:class:`DecodeError`. Encoded output never holds a non-finite float, so it is valid JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from kernel_agent.protocol import arrays, tables
from kernel_agent.protocol.arrays import MAX_ARRAY_BYTES as MAX_ARRAY_BYTES
from kernel_agent.protocol.arrays import array_dtype as array_dtype
from kernel_agent.protocol.decoding import Decoder
from kernel_agent.protocol.errors import DecodeError as DecodeError
from kernel_agent.protocol.errors import UnserializableValue as UnserializableValue
from kernel_agent.protocol.values import ARROW as ARROW
from kernel_agent.protocol.values import MAX_BUFFERS as MAX_BUFFERS
from kernel_agent.protocol.values import MAX_DECIMAL_DIGITS as MAX_DECIMAL_DIGITS
from kernel_agent.protocol.values import MAX_DEPTH as MAX_DEPTH
from kernel_agent.protocol.values import MAX_ITEMS as MAX_ITEMS
from kernel_agent.protocol.values import NUMPY as NUMPY
from kernel_agent.protocol.values import TAG as TAG
from kernel_agent.protocol.values import Record as Record
from kernel_agent.protocol.values import local_accepts as local_accepts
from kernel_agent.protocol.values import make_record as make_record

_BINARY_TAGS = ("ndarray", "arrow")
_HINTS = {
    "generator": "a generator is consumed lazily: send list(...) of it",
    "TextIOWrapper": "an open file is not data: send its content (or a path) instead",
    "BufferedReader": "an open file is not data: send its content (or a path) instead",
    "MaskedArray": "it would lose its mask: send .filled(...), or the data and the mask apart",
}
_GENERAL_HINT = ("only JSON values, bytes, dates, decimals, UUIDs, paths, dataclasses, pydantic models, numpy "
                 "arrays and pandas values cross; convert it to one of those first")


class Encoder:
    """Turns a value into JSON-compatible data plus a list of binary buffers.

    ``accepts`` is what the receiver decodes besides JSON (see
    :func:`local_accepts`); ``notes`` collects what went in a plain form
    instead. A value without a form raises :class:`UnserializableValue`.
    """

    def __init__(self, accepts: Iterable[str] | None = None) -> None:
        self.buffers: list[bytes] = []
        self.accepts = local_accepts() if accepts is None else frozenset(accepts)
        self.notes: list[str] = []

    def encode(self, value: Any) -> Any:
        """The JSON-compatible form of ``value``."""
        if isinstance(value, float) and not math.isfinite(value):
            return {TAG: "float", "value": "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list,)):
            return self._all(value)
        if isinstance(value, dict) and not isinstance(value, Record):
            if all(isinstance(k, str) for k in value) and TAG not in value:
                try:
                    return {k: self.encode(v) for k, v in value.items()}
                except UnserializableValue:
                    self._locate(value.items())
                    raise
            try:
                return {TAG: "dict", "items": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
            except UnserializableValue:
                self._locate(value.items(), keys=True)
                raise
        return self._encode_special(value)

    def _all(self, values: Iterable[Any]) -> list[Any]:
        """Each of ``values`` encoded; a failure names the index where it happened."""
        try:
            return [self.encode(v) for v in values]
        except UnserializableValue:
            self._locate(enumerate(values))
            raise

    def _locate(self, pairs: Iterable[tuple[Any, Any]], *, keys: bool = False, attribute: bool = False) -> None:
        """Encode ``pairs`` again (only after a failure) and raise the first failure one level further out."""
        for step, item in pairs:
            for part in ((step, item) if keys else (item,)):
                try:
                    self.encode(part)
                except UnserializableValue as exc:
                    raise exc.inside(step, attribute=attribute) from None

    def _encode_special(self, value: Any) -> Any:
        if isinstance(value, Record):
            return self._record(value.__record_name__, dict(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            self.buffers.append(bytes(value))
            return {TAG: "bytes", "buffer": len(self.buffers) - 1}
        if isinstance(value, enum.Enum):
            return self.encode(value.value)
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple
            return self._record(type(value).__name__, value._asdict())  # type: ignore[attr-defined]
        for collection in (tuple, set, frozenset):
            if isinstance(value, collection):
                return {TAG: collection.__name__, "items": self._all(value)}
        module = type(value).__module__.partition(".")[0]
        if module in ("numpy", "pandas"):
            return self._encode_array_like(value, module)
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
        return self._unserializable(value)

    def _record(self, name: str, fields: dict[str, Any]) -> Any:
        try:
            return {TAG: "record", "name": name, "fields": {k: self.encode(v) for k, v in fields.items()}}
        except UnserializableValue:
            self._locate(fields.items(), attribute=True)
            raise

    @staticmethod
    def _unserializable(value: Any) -> Any:
        name = type(value).__name__
        qualified = name if type(value).__module__ == "builtins" else f"{type(value).__module__}.{name}"
        raise UnserializableValue(qualified, _HINTS.get(name, _GENERAL_HINT))

    def _encode_array_like(self, value: Any, module: str) -> Any:
        name = type(value).__name__
        if module == "numpy" and name != "MaskedArray" and hasattr(value, "tolist") and hasattr(value, "dtype"):
            if getattr(value, "ndim", 0) == 0:
                if value.dtype.kind in "mM" and NUMPY in self.accepts:  # .item() would lose the unit
                    return {**self._binary_array(value.reshape(1)), "scalar": True}
                return self.encode(value.item())
            if NUMPY in self.accepts and (binary := arrays.binary_form(value)) is not None:
                meta, buffer = binary
                self.buffers.append(buffer)
                return {TAG: "ndarray", **meta, "buffer": len(self.buffers) - 1}
            if NUMPY not in self.accepts:
                self.notes.append(f"a numpy array of {value.dtype} went as nested lists: the receiver has no numpy")
            return {TAG: "ndarray", "dtype": str(value.dtype), "items": self.encode(value.tolist())}
        if module == "pandas" and name in ("DataFrame", "Series"):
            return self._encode_pandas(value, name)
        if module == "pandas" and name == "Timestamp":
            return {TAG: "timestamp", "value": value.isoformat()}
        if module == "pandas" and name == "Timedelta":
            return {TAG: "pd_timedelta", "nanoseconds": int(value.value)}
        if module == "pandas" and name in ("NAType", "NaTType"):
            return {TAG: "na" if name == "NAType" else "nat"}
        return self._unserializable(value)

    def _binary_array(self, value: Any) -> dict[str, Any]:
        binary = arrays.binary_form(value)
        assert binary is not None  # datetime64 / timedelta64 always have one
        self.buffers.append(binary[1])
        return {TAG: "ndarray", **binary[0], "buffer": len(self.buffers) - 1}

    def _encode_pandas(self, value: Any, name: str) -> Any:
        kind = name.lower()
        if ARROW in self.accepts and tables.pyarrow_module() is not None:
            self.buffers.append(tables.to_ipc(value, kind))
            arrow: dict[str, Any] = {TAG: "arrow", "kind": kind, "buffer": len(self.buffers) - 1}
            if kind == "series":
                arrow["name"] = self.encode(value.name)
            return arrow
        why = "the receiver has no pandas and pyarrow" if ARROW not in self.accepts else "this side has no pyarrow"
        self.notes.append(f"a pandas {name} went in a plain JSON form ({why}): its dtypes are inferred again")
        if kind == "series":
            return {TAG: "series", "name": self.encode(value.name), "items": self.encode(value.to_dict())}
        return {TAG: "dataframe", **{k: self.encode(v) for k, v in tables.plain_frame(value).items()}}


def encode(value: Any, accepts: Iterable[str] | None = None, *, root: str = "value",
           notes: list[str] | None = None) -> tuple[Any, list[bytes]]:
    """Encode a value: (JSON-compatible data, binary buffers) for a receiver that ``accepts`` these forms.

    Raises :class:`UnserializableValue` naming ``root`` and the path inside
    it (``result["rows"][3]``) when part of the value cannot cross.
    """
    encoder = Encoder(accepts)
    try:
        data = encoder.encode(value)
    except UnserializableValue as exc:
        exc.root = root
        raise
    except RecursionError:
        error = UnserializableValue(type(value).__name__, "it is nested too deeply, or holds itself")
        error.root = root
        raise error from None
    if notes is not None:
        notes.extend(encoder.notes)
    return data, encoder.buffers


def inline_buffers(data: Any, buffers: list[bytes]) -> Any:
    """``data`` with its arrays and tables carrying their bytes inline (base64), for a recording.

    A recording is JSON: it cannot keep binary buffers, but a replay must
    give back the same arrays and frames. Plain ``bytes`` keep their buffer
    reference (a recording does not keep their content).
    """
    if not buffers:
        return data
    try:
        return _inline(data, buffers)
    except RecursionError:
        return data


def _inline(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, list):
        return [_inline(v, buffers) for v in data]
    if not isinstance(data, dict):
        return data
    index = data.get("buffer")
    if data.get(TAG) in _BINARY_TAGS and type(index) is int and 0 <= index < len(buffers):
        inline = {k: v for k, v in data.items() if k != "buffer"}
        inline["base64"] = base64.b64encode(buffers[index]).decode("ascii")
        return {k: _inline(v, buffers) if k not in (TAG, "base64") else v for k, v in inline.items()}
    return {k: _inline(v, buffers) for k, v in data.items()}


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


def decode(data: Any, buffers: list[bytes] | None = None, *, notes: list[str] | None = None,
           max_items: int = MAX_ITEMS) -> Any:
    """Rebuild a value from :func:`encode`'s output. Never executes code; bounded (see the module docstring).

    Raises :class:`DecodeError` and nothing else for bad input: callers that
    decode hostile data handle one exception, so no input can kill them.
    ``notes`` collects what arrived in a plain form instead of its own type.
    """
    decoder = Decoder(buffers or [], max_items)
    try:
        return decoder.decode(data, 0)
    except DecodeError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise DecodeError(f"the value could not be decoded: {type(exc).__name__}") from None
    except Exception as exc:  # noqa: BLE001 - any other failure is bad input too (see the docstring)
        raise DecodeError(f"the value could not be decoded: {type(exc).__name__}: {exc}"[:1000]) from None
    finally:
        if notes is not None:
            notes.extend(decoder.notes)


