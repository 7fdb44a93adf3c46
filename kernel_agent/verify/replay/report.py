"""What a replay reports: faithful or not, the first divergence (with its diff), the tool calls served."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Divergence(BaseModel):
    """Where a replay first stopped matching its recording."""

    cell_index: int = Field(description="index of the cell in the notebook's cells list")
    seq: int | None = Field(description="the cell's recorded seq (its position in the hash chain)")
    source_first_line: str
    diff: str = Field(description="unified diff, recorded (-) vs replayed (+), of the cell as compared")
    reason: str


class ReplayReport(BaseModel):
    """The outcome of a replay."""

    notebook: str
    live: bool = False
    faithful: bool
    cells: int = Field(description="code cells replayed")
    divergent_cells: list[int] = Field(default_factory=list, description="notebook indices of the cells that differ")
    first_divergence: Divergence | None = None
    tool_calls_recorded: int = 0
    tool_calls_served: int = Field(0, description="calls answered from the recording (0 when live)")
    unrecorded_calls: list[str] = Field(default_factory=list, description="calls the recording does not have")
    warnings: list[str] = Field(default_factory=list)
    out: str | None = Field(None, description="where the replayed session was recorded, if anywhere")
