"""The notebook's cells as the verifier sees them: position, kernel-agent metadata, hash links, side-file references.

Every value is type-checked on the way in: a tampered file may hold anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kernel_agent.record import format as fmt
from kernel_agent.verify.audit.report import CellRef

HEX64 = re.compile(r"[0-9a-f]{64}")


def cell_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return ""


def first_line_of(source: str, limit: int = 72) -> str:
    line = next((part for part in source.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class Cell:
    """One entry of the notebook's cells list, with its kernel-agent metadata if it has any."""

    index: int
    raw: dict[str, Any]
    ours: dict[str, Any] | None
    seq: int | None

    @classmethod
    def of(cls, index: int, raw: Any) -> Cell:
        cell = raw if isinstance(raw, dict) else {}
        metadata = cell.get("metadata")
        ours = metadata.get(fmt.METADATA_KEY) if isinstance(metadata, dict) else None
        ours = ours if isinstance(ours, dict) else None
        seq = ours.get("seq") if ours is not None else None
        valid = isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0
        return cls(index, cell, ours, seq if valid else None)

    @property
    def ref(self) -> CellRef:
        cell_id = self.raw.get("id")
        cell_type = self.raw.get("cell_type")
        return CellRef(index=self.index, seq=self.seq, id=cell_id if isinstance(cell_id, str) else None,
                       cell_type=cell_type if isinstance(cell_type, str) else None,
                       first_line=first_line_of(cell_text(self.raw.get("source"))))

    @property
    def stored_hash(self) -> str | None:
        value = (self.ours or {}).get("hash")
        return value if isinstance(value, str) else None

    @property
    def kind(self) -> str | None:
        value = (self.ours or {}).get("kind")
        return value if isinstance(value, str) else None


def link(previous: str, cell: dict[str, Any]) -> str | None:
    """The cell's hash given its predecessor's, or None if the cell cannot be hashed at all."""
    try:
        return fmt.cell_hash(previous, cell)
    except (TypeError, ValueError, AttributeError):
        return None


def links(previous: str | None, cell: Cell) -> bool:
    return previous is not None and cell.stored_hash is not None and link(previous, cell.raw) == cell.stored_hash



def is_side_file_reference(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {fmt.SIDE_FILE_KEY, "bytes"}
            and isinstance(value[fmt.SIDE_FILE_KEY], str) and bool(HEX64.fullmatch(value[fmt.SIDE_FILE_KEY]))
            and isinstance(value["bytes"], int) and not isinstance(value["bytes"], bool))


def side_file_references(ours: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, reference) for the values the recorder may move to side files: call arguments and results, the final
    answer."""
    calls = ours.get("tool_calls")
    for number, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            continue
        for key in ("arguments", "result"):
            if is_side_file_reference(call.get(key)):
                yield f"the {key} of tool call {number} ({call.get('tool')})", call[key]
    if is_side_file_reference(ours.get("final_answer")):
        yield "the final answer", ours["final_answer"]

