"""A resumed kernel's SDK is made from the notebook's tool definitions (now unchecked): the live tools that answer
its calls afterwards must generate that same SDK, not only the one the notebook's header names.

A forger without the keys rewrites the definitions (here: the parameters' order, through ``key_order``) and
re-chains the record. Resume checked the live tools against the header's sdk_hash, which the forger left as it
was, so they passed; but the kernel kept the forged SDK, and ``tools.move("a.txt", "b.txt")`` reached the host
tool as ``move(source="b.txt", target="a.txt")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Session, tool
from kernel_agent.errors import RecordingError
from kernel_agent.record import format as fmt

MOVES: list[tuple[str, str]] = []


@tool
def move(source: str, target: str) -> str:
    """Move a file of the host's (here: only note the move)."""
    MOVES.append((source, target))
    return f"{source} -> {target}"


def rechain(document: dict[str, Any]) -> None:
    """Make the chain consistent again after an edit (what a forger without the HMAC key can do)."""
    ours = document["metadata"][fmt.METADATA_KEY]
    head = fmt.genesis_hash(ours["session"])
    for cell in document["cells"]:
        head = fmt.cell_hash(head, cell)
        cell["metadata"][fmt.METADATA_KEY]["hash"] = head
    chain = ours["chain"]
    chain["genesis"], chain["head"], chain["length"] = fmt.genesis_hash(ours["session"]), head, len(document["cells"])
    end = ours.get("end")
    if isinstance(end, dict):
        end.update(head=head, cells=len(document["cells"]))
        chain["seal"] = fmt.seal_hash(head, end)


@pytest.mark.parametrize("drop_hash", [False, True], ids=["header-hash-kept", "header-hash-dropped"])
async def test_a_forged_parameter_order_is_refused_at_resume(tmp_path: Path, drop_hash: bool) -> None:
    (tmp_path / "ws").mkdir()
    notebook = tmp_path / "moves.ipynb"
    async with Session(tmp_path / "ws", tools=[move], notebook=notebook, default_timeout=60) as session:
        assert (await session.execute("tools.move('a.txt', 'b.txt')")).result == "'a.txt -> b.txt'"
    document = json.loads(notebook.read_text())
    (definition,) = document["metadata"][fmt.METADATA_KEY]["session"]["tools"]["definitions"]
    definition["key_order"] = {"input_schema": [[["properties"], ["target", "source"]]]}  # swapped
    definition["input_schema"]["required"] = ["target", "source"]
    if drop_hash:  # a header without one (as very old records are) was held to nothing
        del document["metadata"][fmt.METADATA_KEY]["session"]["tools"]["sdk_hash"]
    rechain(document)
    notebook.write_text(json.dumps(document))
    MOVES.clear()
    try:
        resumed = await Session.resume(notebook, workspace=tmp_path / "ws", tools=[move], default_timeout=60)
    except RecordingError as error:
        assert "SDK differs" in str(error)
    else:
        try:
            await resumed.execute("tools.move('a.txt', 'b.txt')")
        finally:
            await resumed.close()
        pytest.fail(f"resumed with a kernel SDK other than its live tools' one: the host tool got {MOVES}")
    assert MOVES == []  # the recorded call was answered from the record, and nothing ran after
