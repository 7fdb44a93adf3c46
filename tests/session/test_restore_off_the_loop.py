"""A kernel that dies on purpose with restore_on_death: the host rebuilds the session's tools as recorded ones to
answer the restore (most of a second for a 2,500-tool catalogue), in a worker thread, not on the event loop every
session shares (review of issue 15: replay and resume had moved it off the loop, restore had not)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kernel_agent import Session
from kernel_agent.tools.tool import tool_from_schema

READERS: list[threading.Thread] = []


class WatchedSchema(dict[str, Any]):
    """A schema that notes which thread walks its keys (recording a tool's definition does)."""

    def __iter__(self) -> Any:
        READERS.append(threading.current_thread())
        return super().__iter__()


def echo(arguments: dict[str, Any]) -> Any:
    return arguments["x"]


async def test_the_tools_are_rebuilt_for_a_restore_off_the_event_loop(tmp_path: Path) -> None:
    schema = WatchedSchema(type="object", properties={"x": {"type": "integer"}}, required=["x"])
    watched = tool_from_schema({"name": "echo", "input_schema": schema}, echo, takes_mapping=True)
    (tmp_path / "ws").mkdir()
    async with Session(tmp_path / "ws", tools=[watched], notebook=False, restore_on_death=True,
                       default_timeout=60) as session:
        await session.execute("x = tools.echo(x=5)")
        loop_thread = threading.current_thread()
        READERS.clear()
        died = await session.execute("import os\nos._exit(9)")
        assert died.kernel_restarted and not died.state_lost
        assert (await session.execute("x")).result == "5"
    assert READERS  # the restore read the schema to record the tool
    assert loop_thread not in READERS
