"""How a tool call ended: the vocabulary the host's bridge answers with and the kernel's SDK raises by."""

from __future__ import annotations

from enum import Enum


class CallStatus(str, Enum):
    """How a tool call ended; the kernel raises the matching ToolError subclass for all but ``ok``."""

    OK = "ok"
    ERROR = "error"  # the tool raised
    UNSERIALIZABLE = "unserializable"  # the tool returned a value that cannot cross the bridge (a generator...)
    INVALID = "invalid"  # arguments did not match the schema, or could not be decoded
    DENIED = "denied"  # the policy or the approver refused
    TIMEOUT = "timeout"
    BUDGET = "budget"  # the session's call budget is spent
    UNKNOWN_TOOL = "unknown_tool"
    CANCELLED = "cancelled"  # the cell that made the call ended while it ran
    REFUSED = "refused"  # no cell of the session was running, or the cell's record cap was reached
