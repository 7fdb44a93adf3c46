"""The vocabulary of encoded values both processes share: the tag, the limits, Record, what a side accepts."""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

TAG = "__ka__"
#: Limits of decoding (see :mod:`kernel_agent.protocol.wire`).
MAX_DEPTH = 200
MAX_ITEMS = 10_000_000
MAX_DECIMAL_DIGITS = 10_000
#: Binary buffers (bytes, arrays, frames) one message may carry: a server's websocket drops a message with
#: more than 4,096 (kernel_agent.runtime.remote.frames.MAX_BUFFERS), so the kernel refuses to send one.
MAX_BUFFERS = 4000
#: What a receiver may accept besides JSON: numpy arrays in buffers, pandas values as Arrow IPC.
NUMPY, ARROW = "numpy", "arrow"


@functools.cache
def local_accepts() -> frozenset[str]:
    """What this process can decode besides JSON: ``numpy`` if numpy is installed, ``arrow`` with pandas and pyarrow."""
    def has(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    accepts = {NUMPY} if has("numpy") else set()
    if has("pandas") and has("pyarrow"):
        accepts.add(ARROW)
    return frozenset(accepts)


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
