"""What the host records about tool calls and progress events (pydantic: they go into notebooks)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kernel_agent.protocol.calls import CallStatus as CallStatus  # re-exported: part of ToolCall's vocabulary


class CallError(BaseModel):
    """Why a call did not return a value."""

    model_config = ConfigDict(frozen=True)

    kind: CallStatus
    message: str
    details: Any = None


class ToolCall(BaseModel):
    """One tool call as the host saw it: request, decision, outcome, timings."""

    model_config = ConfigDict(frozen=True)

    id: str
    tool: str = Field(description="qualified tool name as the kernel asked for it")
    arguments: Any = Field(description="the arguments in wire encoding (JSON; bytes as buffer references)")
    status: CallStatus
    result: Any = Field(default=None, description="the result in wire encoding, when status is ok")
    error: CallError | None = None
    started_at: float = Field(description="unix time the request reached the host")
    ended_at: float
    cell: int | None = Field(default=None, description="index of the session cell that made the call")
    omitted: str | None = Field(default=None, description="what this record does not keep (over the cell's "
                                "record cap), and why")

    @property
    def duration(self) -> float:
        """Seconds from the request reaching the host to the reply being sent."""
        return self.ended_at - self.started_at


class ProgressEvent(BaseModel):
    """A ``progress(...)`` report from the cell."""

    model_config = ConfigDict(frozen=True)

    message: str
    fields: dict[str, Any] = Field(default_factory=dict)
    time: float
    cell: int | None = None
