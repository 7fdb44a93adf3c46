"""Positional tool calls mean the same thing on replay, resume and restore: the recorded SDK comes back exactly.

A recording stores JSON with sorted keys; before tool definitions kept
their key order, ``tools.shift(10, 3, 5)`` (parameters value, step, base)
was replayed as ``shift(value=10, base=3, step=5)``, and the replay's SDK
hash differed from the recording's. Real kernels, real sandbox.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kernel_agent import Session, tool
from kernel_agent.record import format as fmt
from kernel_agent.record.journal import journal_path_for
from kernel_agent.verify.replay import ReplayInputError, replay

CALLS: list[tuple[int, int, int]] = []


class Window(BaseModel):
    """A window whose fields are not in alphabetical order (its TypedDict must keep them)."""

    start: int
    end: int


@tool
def shift(value: int, step: int = 1, base: int = 0) -> int:
    """value * step + base; the optional parameters are not in alphabetical order."""
    CALLS.append((value, step, base))
    return value * step + base


@tool(namespace="stats")
def width(window: Window, scale: int = 1, pad: int = 0) -> int:
    """The window's width, scaled and padded."""
    return (window.end - window.start) * scale + pad


TOOLS = [shift, width]
CELLS = ["r = tools.shift(10, 3, 5)\nr", "w = tools.stats.width({'start': 2, 'end': 7}, 2, 1)\nw"]


async def _record(notebook: Path) -> None:
    async with Session(notebook.parent / "ws", tools=TOOLS, notebook=notebook) as session:
        results = [await session.execute(code) for code in CELLS]
    assert [r.result for r in results] == ["35", "11"]  # 10*3+5; (7-2)*2+1


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    notebook = tmp_path_factory.mktemp("order") / "session.ipynb"
    (notebook.parent / "ws").mkdir()
    asyncio.run(_record(notebook))
    return notebook


def _copy(source: Path, directory: Path) -> Path:
    target = directory / source.name
    shutil.copy(source, target)
    shutil.copy(journal_path_for(source), journal_path_for(target))
    return target


def _header(notebook: Path) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(notebook.read_text())["metadata"][fmt.METADATA_KEY]["session"]
    return header


async def test_replay_maps_positional_calls_as_recorded_and_has_the_recorded_sdk(recorded: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "replayed.ipynb"
    report = await replay(recorded, out=out)
    assert report.faithful, report
    assert report.tool_calls_served == 2 and report.unrecorded_calls == []
    assert not [w for w in report.warnings if "SDK" in w], report.warnings
    assert _header(out)["tools"]["sdk_hash"] == _header(recorded)["tools"]["sdk_hash"]


async def test_resume_maps_positional_calls_as_recorded(recorded: Path, tmp_path: Path) -> None:
    """The rebuilt cells match their records, and new positional calls reach the live tool as the SDK says."""
    notebook = _copy(recorded, tmp_path)
    (tmp_path / "ws").mkdir()
    CALLS.clear()
    session = await Session.resume(notebook, workspace=tmp_path / "ws", tools=TOOLS)
    try:
        assert session.resume_differences == []
        assert CALLS == []  # answered from the recording
        assert (await session.execute("r, w")).result == "(35, 11)"
        assert (await session.execute("tools.shift(1, 2, 3)")).result == "5"
        assert CALLS == [(1, 2, 3)]
        help_text = (await session.execute("import inspect\nstr(inspect.signature(tools.shift))")).result
        assert help_text == "'(value: int, step: int = 1, base: int = 0) -> int'"
    finally:
        await session.close()


async def test_restore_on_death_maps_positional_calls_as_recorded(workspace: Path) -> None:
    CALLS.clear()
    async with Session(workspace, tools=TOOLS, notebook=False, restore_on_death=True) as session:
        await session.execute("r = tools.shift(10, 3, 5)")
        died = await session.execute("import os\nos._exit(9)")
        assert died.kernel_restarted and not died.state_lost
        assert (await session.execute("r")).result == "35"
        assert CALLS == [(10, 3, 5)]  # once: the restore was answered from its record


async def test_a_notebook_with_a_crafted_key_order_is_refused(recorded: Path, tmp_path: Path) -> None:
    """A key order that is not a permutation of the schema's properties: a named error before any kernel starts."""
    notebook = _copy(recorded, tmp_path)
    document = json.loads(notebook.read_text())
    definition = next(d for d in document["metadata"][fmt.METADATA_KEY]["session"]["tools"]["definitions"]
                      if d["name"] == "shift")
    definition["key_order"]["input_schema"] = [[["properties"], ["value", "step", "base", "__class__"]]]
    notebook.write_text(json.dumps(document))
    with pytest.raises(ReplayInputError, match=r"'shift'.*key_order.input_schema.*not an order"):
        await replay(notebook)
