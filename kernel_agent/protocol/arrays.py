"""NumPy arrays across the bridge: raw buffers with their dtype and shape, or JSON items (stdlib at import).

An array of a plain scalar dtype (numbers, booleans, dates, durations,
fixed-width strings and bytes) travels as its C-order bytes in one binary
buffer, with ``dtype`` (``numpy.dtype.str``, byte order included) and
``shape`` beside it: the receiver gets an array of the same dtype and shape,
its own writable copy. An object array has no such form; its items travel
as JSON values (encoded one by one) and become an object array again.

The receiver checks what it is told before numpy sees it (the host decodes
what a hostile kernel sends): the dtype must be a plain scalar type, never
``object`` or a structure, and never carry a shape (``"(1000,1000,1000)f8"``
is 8 GB); the shape must be a short list of non-negative ints whose product
times the item size is exactly the buffer's length, so a declared shape can
never make the receiver allocate more than it was sent. Nothing is
unpickled: numpy's ``allow_pickle`` is never involved.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from typing import Any

from kernel_agent.protocol.errors import DecodeError

#: The most memory a decoded string or bytes array from JSON items may take (numpy gives every element the
#: longest width).
MAX_ARRAY_BYTES = 64 * 1024**2
#: Dimensions an array may have (numpy's own limit is 64).
MAX_DIMENSIONS = 32
# One dimension's largest size: far above any real array, far below an int64 overflow of the product.
_MAX_DIMENSION = 1 << 48

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
# The dtype kinds a binary buffer may hold: bool, ints, floats, complex, datetimes, durations, str, bytes.
_BINARY_KINDS = frozenset("biufcmMUS")


def numpy_module() -> Any:
    """numpy if this process has it (imported now if need be), else None."""
    module = sys.modules.get("numpy")
    if module is not None:
        return module
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None


def array_dtype(text: Any) -> str:
    """``text`` if it names a plain scalar numpy dtype; else :class:`DecodeError` (see the module docstring)."""
    if isinstance(text, str) and (text in _SCALAR_DTYPES or _DTYPE_PATTERN.fullmatch(text)):
        return text
    raise DecodeError(f"array dtype {str(text)[:100]!r} is not a plain scalar type (no shapes or structures)")


# -- the binary form -----------------------------------------------------------------------------------


def binary_form(array: Any) -> tuple[dict[str, Any], bytes] | None:
    """(dtype and shape, the C-order bytes) of ``array``; None for a dtype a buffer cannot carry (objects)."""
    dtype = array.dtype
    if dtype.kind not in _BINARY_KINDS or dtype.hasobject or dtype.fields is not None or dtype.itemsize == 0:
        return None
    return {"dtype": dtype.str, "shape": list(array.shape)}, array.tobytes(order="C")


def from_binary(meta: dict[str, Any], buffer: bytes) -> Any:
    """The array that :func:`binary_form` described, checked against the buffer it came with."""
    numpy = numpy_module()
    if numpy is None:
        raise DecodeError("a numpy array arrived, but numpy is not installed here")
    dtype = _binary_dtype(numpy, meta.get("dtype"))
    shape = meta.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS or not all(
            type(n) is int and 0 <= n <= _MAX_DIMENSION for n in shape):
        raise DecodeError(f"an array's shape must be a list of at most {MAX_DIMENSIONS} sizes "
                          f"(ints from 0 to 2**48), not {str(shape)[:100]}")
    count = math.prod(shape)
    if count * dtype.itemsize != len(buffer):
        raise DecodeError(f"an array of shape {tuple(shape)} and dtype {dtype.str} takes "
                          f"{count * dtype.itemsize:,} bytes, but its buffer has {len(buffer):,}")
    if count == 0:
        return numpy.empty(shape, dtype=dtype)  # no memory, whatever the other sizes
    return numpy.frombuffer(buffer, dtype=dtype, count=count).reshape(shape).copy()  # writable, owns its data


def _binary_dtype(numpy: Any, text: Any) -> Any:
    if not isinstance(text, str) or not _DTYPE_PATTERN.fullmatch(text):
        raise DecodeError(f"array dtype {str(text)[:100]!r} is not a plain scalar type a buffer can carry "
                          "(no objects, shapes or structures)")
    dtype = numpy.dtype(text)
    if dtype.kind not in _BINARY_KINDS or dtype.hasobject or dtype.fields is not None \
            or dtype.subdtype is not None or dtype.itemsize == 0:
        raise DecodeError(f"array dtype {text[:100]!r} cannot be carried in a buffer")
    return dtype


# -- the JSON form (object arrays; receivers without numpy) ------------------------------------------


def from_items(numpy: Any, items: Any, dtype: str) -> Any:
    """An array from decoded JSON ``items`` of ``dtype`` (checked: see :func:`array_dtype`)."""
    dtype = array_dtype(dtype)
    width = _fixed_width(dtype)
    if width is not None:
        _check_string_array(items, width)
    return numpy.array(items, dtype=dtype)


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
        if isinstance(item, (str, bytes)):
            longest = max(longest, len(item))
        elif item is None or isinstance(item, (bool, int, float)):  # an int's text is bounded by its digit limit
            longest = max(longest, len(str(item)))
        else:  # numpy would take its str(): a dict or a record of any length, counted as one item
            raise DecodeError(f"a string array holds a {type(item).__name__} item; only text, bytes and numbers")
    if count * longest * 4 > MAX_ARRAY_BYTES:
        raise DecodeError(f"a string array of {count:,} items {longest:,} characters wide would take "
                          f"{count * longest * 4:,} bytes; the limit is {MAX_ARRAY_BYTES:,}")
