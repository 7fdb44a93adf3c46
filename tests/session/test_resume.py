"""Resuming a recorded session: state rebuilt from the recording, then recording goes on in the same chain."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from kernel_agent import Session, tool
from kernel_agent.errors import RecordingError
from kernel_agent.record import format as fmt
from kernel_agent.record.journal import journal_path_for, read_journal

CALLS: list[tuple[int, int]] = []


@tool
def add(a: int, b: int) -> int:
    """Add two integers (and count real calls)."""
    CALLS.append((a, b))
    return a + b


def chain_head(path: Path) -> tuple[str, str]:
    """(recomputed head, recorded head) of a notebook."""
    document = json.loads(path.read_text())
    ours = document["metadata"][fmt.METADATA_KEY]
    head = fmt.genesis_hash(ours["session"])
    for cell in document["cells"]:
        head = fmt.cell_hash(head, cell)
    return head, ours["chain"]["head"]


async def record_session(workspace: Path) -> Path:
    notebook = workspace.parent / "analysis.ipynb"  # the record lives out of the sandbox's reach
    async with Session(workspace, tools=[add], notebook=notebook) as session:
        session.record_message("task", "Add things up.")
        await session.execute("x = tools.add(a=1, b=2)")
        await session.execute("y = x * 10\nopen('saved.txt', 'w').write(str(y))")
    return notebook


async def test_resume_rebuilds_state_without_calling_tools_again(workspace: Path) -> None:
    """Variables come back, recorded tool results are reused, and new cells extend the same notebook and chain."""
    notebook = await record_session(workspace)
    CALLS.clear()
    session = await Session.resume(notebook, tools=[add])
    try:
        assert CALLS == []  # the recorded call was answered from the recording
        assert session.resume_differences == []
        assert (await session.execute("y")).result == "30"
        assert (await session.execute("tools.add(a=y, b=1)")).result == "31"
        assert CALLS == [(30, 1)]  # new cells use the live tool
    finally:
        await session.close()
    cells = nbformat.read(notebook, as_version=4).cells
    assert cells[0].metadata.kernel_agent.kind == "setup" and cells[1].metadata.kernel_agent.kind == "task"
    assert [c.source for c in cells[2:4]] + [c.source for c in cells[5:]] == [
        "x = tools.add(a=1, b=2)", "y = x * 10\nopen('saved.txt', 'w').write(str(y))", "y", "tools.add(a=y, b=1)"]
    note = cells[4].metadata.kernel_agent  # the resume is part of the record: when, what was rebuilt, what differed
    assert note.kind == "resumed" and note.rebuilt_cells == 2 and note.differences == []
    assert note.previous_end.reason == "closed"
    recomputed, recorded = chain_head(notebook)
    assert recomputed == recorded
    assert [c.metadata.kernel_agent.seq for c in cells] == list(range(len(cells)))
    events = read_journal(journal_path_for(notebook))
    assert sum(e["event"] == "header" for e in events) == 1
    assert sum(e["event"] == "cell" for e in events) == len(cells)


async def test_resume_refuses_a_tampered_notebook(workspace: Path) -> None:
    """A notebook whose chain does not verify is not resumed (nothing is appended to it)."""
    notebook = await record_session(workspace)
    document = json.loads(notebook.read_text())
    document["cells"][1]["source"] = "x = tools.add(a=1, b=3)"
    notebook.write_text(json.dumps(document))
    before = notebook.read_bytes()
    with pytest.raises(RecordingError, match="does not match its recorded hash"):
        await Session.resume(notebook, tools=[add])
    assert notebook.read_bytes() == before


async def test_resume_refuses_other_tools(workspace: Path) -> None:
    """Live tools whose SDK differs from the recording's are refused with a clear error."""
    notebook = await record_session(workspace)

    @tool
    def add(a: int, b: int, c: int = 0) -> int:  # noqa: F811 - a different tool of the same name
        """Add three integers."""
        return a + b + c

    with pytest.raises(RecordingError, match="not the ones this session was recorded with"):
        await Session.resume(notebook, tools=[add])


async def test_restore_on_death_rebuilds_state_from_the_session_so_far(workspace: Path) -> None:
    """With restore_on_death, a kernel death re-runs earlier cells (tools answered from their records)."""
    CALLS.clear()
    async with Session(workspace, tools=[add], notebook=False, restore_on_death=True) as session:
        await session.execute("x = tools.add(a=2, b=3)")
        await session.execute("y = x * 2")
        died = await session.execute("import os\nos._exit(9)")
        assert died.kernel_restarted and not died.state_lost
        assert "state is back" in died.error.evalue  # type: ignore[union-attr]
        assert (await session.execute("x, y")).result == "(5, 10)"
        assert CALLS == [(2, 3)]  # the tool ran once: the restore used the recorded result
        assert (await session.execute("tools.add(a=1, b=1)")).result == "2"  # live tools again
    async with Session(workspace, tools=[add], notebook=False) as default:
        await default.execute("x = 1")
        died = await default.execute("import os\nos._exit(9)")
        assert died.state_lost  # off by default


async def test_resume_with_keys_refuses_a_record_they_did_not_sign(workspace: Path, tmp_path: Path) -> None:
    """Resuming re-signs the record, so it must not launder a rewrite: a consistent rewrite (chain, end, seal
    recomputed, as anyone can) of a record signed with the HMAC key and an Ed25519 key is refused before any
    recorded cell runs; the genuine record resumes and stays verifiable with both keys."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kernel_agent.verify.audit import audit_notebook

    signing_key = Ed25519PrivateKey.generate()
    notebook = workspace.parent / "signed.ipynb"
    async with Session(workspace, tools=[add], notebook=notebook, audit_key="k", signing_key=signing_key) as session:
        await session.execute("x = tools.add(a=1, b=2)")
    genuine = notebook.read_text()

    document = json.loads(genuine)
    code = next(c for c in document["cells"] if c["source"] == "x = tools.add(a=1, b=2)")
    code["source"] = "open('ran.txt', 'w').write('the forged cell ran')"
    ours = document["metadata"][fmt.METADATA_KEY]
    head = fmt.genesis_hash(ours["session"])
    for cell in document["cells"]:
        head = fmt.cell_hash(head, cell)
        cell["metadata"][fmt.METADATA_KEY]["hash"] = head
    ours["chain"]["head"] = ours["end"]["head"] = head
    ours["chain"]["seal"] = fmt.seal_hash(head, ours["end"])
    notebook.write_text(json.dumps(document))
    marker = workspace / "ran.txt"
    for keys in ({"audit_key": "k"}, {"signing_key": signing_key}):
        with pytest.raises(RecordingError, match="HMAC is missing or does not match|signature does not verify"):
            await Session.resume(notebook, tools=[add], workspace=workspace, **keys)
    assert not marker.exists()

    notebook.write_text(genuine)
    resumed = await Session.resume(notebook, tools=[add], workspace=workspace, audit_key="k", signing_key=signing_key)
    try:
        assert (await resumed.execute("print(x)")).stdout == "3\n"
    finally:
        await resumed.close()
    report = audit_notebook(notebook, b"k", signing_key.public_key())
    assert report.verdict == "intact" and report.chain.hmac == "valid" and report.chain.signature == "valid"
