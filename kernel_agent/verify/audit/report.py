"""What an audit reports: the verdict, each problem (which cell, which side file), the chain, the session."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from kernel_agent.errors import UnusableRecordError

EXIT_INTACT = 0
EXIT_PROBLEM = 1
EXIT_UNUSABLE = 2

Severity = Literal["tampered", "incomplete", "note"]
HmacStatus = Literal["valid", "invalid", "unsigned", "not_checked"]
SignatureStatus = HmacStatus


class AuditInputError(UnusableRecordError):
    """The input cannot be audited at all (exit status 2); the message says why, in one line."""


class CellRef(BaseModel):
    """Which cell a problem is about, in every way a reader might look for it."""

    index: int = Field(description="0-based position in the notebook's cells list")
    seq: int | None = Field(description="the cell's position in the chain (metadata.kernel_agent.seq)")
    id: str | None
    cell_type: str | None
    first_line: str

    def describe(self) -> str:
        """``cell at index 3 (seq 3, id ab12, code: "print(1)")``."""
        parts = [f"seq {self.seq}" if self.seq is not None else "no seq"]
        if self.id:
            parts.append(f"id {self.id}")
        parts.append(f"{self.cell_type or 'cell'}: {json.dumps(self.first_line, ensure_ascii=False)}")
        return f"the cell at index {self.index} ({', '.join(parts)})"


class Problem(BaseModel):
    """One finding. ``note``s inform and never change the verdict."""

    kind: str
    severity: Severity
    message: str
    cell: CellRef | None = None
    side_file: str | None = None


class ToolUsage(BaseModel):
    """How one tool was called during the session."""

    calls: int = 0
    ok: int = 0
    errors: int = 0
    denied: int = 0
    statuses: dict[str, int] = Field(default_factory=dict)
    destructive: bool | None = Field(default=None, description="from the header's tool definitions; None: not defined")


class Gap(BaseModel):
    """A time the session was detached from its kernel (which kept running on its server)."""

    kernel_id: str | None = None
    detached_at: str | None = None
    detached_by: dict[str, Any] = Field(default_factory=dict, description="user, host, pid of the detaching host")
    attached_at: str | None = Field(default=None, description="None: not attached again (yet)")
    attached_by: dict[str, Any] = Field(default_factory=dict)
    gap_seconds: float | None = None


class Summary(BaseModel):
    """What happened in the session, recomputed from the cells."""

    session_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    model: Any = None
    sandbox_mode: str | None = None
    confined: bool | None = None
    loosenings: list[str] = Field(default_factory=list)
    limits_not_enforced: list[str] = Field(default_factory=list)
    task: str | None = None
    cells: int = 0
    steps: int = Field(default=0, description="code cells")
    messages: int = Field(default=0, description="markdown cells other than the task")
    errors: int = 0
    timeouts: int = 0
    kernel_deaths: int = 0
    kernel_restarts: int = 0
    state_losses: int = 0
    tool_calls: int = 0
    tools: dict[str, ToolUsage] = Field(default_factory=dict)
    destructive_tools: list[str] = Field(default_factory=list, description="tools the header defines as destructive")
    tokens: dict[str, int | float] = Field(default_factory=dict)
    seconds_in_cells: float = 0.0
    wall_seconds: float | None = Field(default=None, description="from the header's started_at to ended_at")
    has_final_answer: bool = False
    final_answer: Any = None
    end_reason: str | None = Field(default=None, description="why the session ended, from the sealed end")
    gaps: list[Gap] = Field(default_factory=list, description="detaches from the kernel, and the attaches after them")
    settings: dict[str, Any] = Field(default_factory=dict, description="the session's limits, timeouts and budgets")
    record_reachable_from_sandbox: str | None = Field(
        default=None, description="why the sandbox could write this record (None: it could not, or not recorded)")


class ChainReport(BaseModel):
    """The chain as recorded in the metadata, and as found in the cells."""

    algorithm: Any = None
    genesis: Any = None
    head: Any = None
    length: Any = None
    computed_genesis: str | None = None
    chained_cells: int = Field(default=0, description="cells with kernel-agent metadata that take part in the chain")
    hmac: HmacStatus = "unsigned"
    signature: SignatureStatus = "unsigned"


class AuditReport(BaseModel):
    """Everything ``kernel-agent audit`` found; ``--json`` prints exactly this."""

    notebook: str
    verdict: Literal["intact", "tampered", "incomplete"]
    headline: str = Field(description="the first line of the text report")
    exit_code: int
    problems: list[Problem] = Field(description="tampered/incomplete findings, in notebook order")
    notes: list[Problem]
    chain: ChainReport
    summary: Summary


class UnusableReport(BaseModel):
    """What ``--json`` prints when the input cannot be audited."""

    notebook: str
    verdict: Literal["unusable"] = "unusable"
    exit_code: int = EXIT_UNUSABLE
    error: str

