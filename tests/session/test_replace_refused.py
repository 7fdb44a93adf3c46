"""Tools refused by replace_tools (their SDK is not the kernel's) take no part in the session afterwards: the items
were taken before the check, so a refused source still wrote its entries into the sealed end of the record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Session, tool
from kernel_agent.errors import RecordingError
from kernel_agent.record import format as fmt


@tool
def ping() -> str:
    """Answer pong."""
    return "pong"


@tool
def other(x: int) -> int:
    """Another tool."""
    return x


class EndWriter:
    """Tools that add to the sealed end of the record (as the skills source adds its pins)."""

    def __init__(self) -> None:
        self.tools = [other.__kernel_agent_tool__]  # type: ignore[attr-defined]

    def record_end(self, session: object) -> dict[str, Any]:
        return {"refused_source_was_here": True}


async def test_refused_tools_do_not_write_the_record_end(tmp_path: Path) -> None:
    notebook = tmp_path / "s.ipynb"
    async with Session(tools=[ping], notebook=notebook, default_timeout=60) as session:
        with pytest.raises(RecordingError, match="SDK differs"):
            await session.replace_tools([EndWriter()], sdk_hash=session.sdk_hash)
        assert (await session.execute("tools.ping()")).result == "'pong'"  # the session's own tools still answer
    end = json.loads(notebook.read_text())["metadata"][fmt.METADATA_KEY]["end"]
    assert "refused_source_was_here" not in end
