"""What goes wrong with a value crossing the bridge, on either side (stdlib only)::

    ValueError
     +-- DecodeError          what arrived is not a valid encoding, or is over a limit (receiving side)
    TypeError
     +-- UnserializableValue  what is being sent has no form that crosses (sending side; names where)
"""

from __future__ import annotations

import json
from typing import Any


class DecodeError(ValueError):
    """The data is not a valid encoding (for example a buffer index out of range), or is over a limit."""


class UnserializableValue(TypeError):
    """A value has no form that crosses the bridge: a generator, an open file, a lock, an arbitrary object.

    ``path`` says where it is inside what was sent (``result["rows"][3]``),
    ``type_name`` what it is, ``reason`` why it cannot cross and what to do.
    Raised by the sender before anything is sent: a tool's result on the
    host, a call's arguments in the kernel (in the cell that made the call).
    """

    def __init__(self, type_name: str, reason: str, path: str = "") -> None:
        self.type_name, self.reason, self.path = type_name, reason, path
        self.root = "value"
        super().__init__(type_name, reason, path)

    def inside(self, step: Any, *, attribute: bool = False) -> UnserializableValue:
        """The same error one level further out: ``step`` is the key, index or field it was found under."""
        if attribute:
            self.path = f".{step}{self.path}"
        else:
            self.path = f"[{json.dumps(step) if isinstance(step, str) else repr(step)}]{self.path}"
        return self

    def with_root(self, root: str) -> UnserializableValue:
        """The same error, its path starting at ``root`` (``result``, ``arguments``)."""
        self.root = root
        return self

    def __str__(self) -> str:
        return f"{self.root}{self.path} cannot cross the bridge: it is of type {self.type_name}; {self.reason}"
