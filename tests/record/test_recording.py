"""Sessions recorded as notebooks: content, chain, side files, crash safety, symlink safety."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from kernel_agent import Session, tool
from kernel_agent.errors import RecordingError

from ..conftest import sandbox_processes
from kernel_agent.record import format as fmt
from kernel_agent.record.journal import journal_path_for
from kernel_agent.record.recorder import side_files_dir


@tool(namespace="data", read_only=True)
def table(rows: int) -> list[dict[str, object]]:
    """A table of ``rows`` rows."""
    return [{"id": i, "label": f"row {i}", "padding": "x" * 40} for i in range(rows)]


def session_cells(cells: list) -> list:  # type: ignore[type-arg]
    """The cells a session recorded, without the setup cell (cell 0, for Jupyter re-execution)."""
    return [c for c in cells if c["metadata"]["kernel_agent"].get("kind") != "setup"]


def recomputed_head(document: dict[str, object]) -> str:
    """The chain head recomputed from the cells, as an auditor would."""
    ours = document["metadata"][fmt.METADATA_KEY]  # type: ignore[index]
    head = fmt.genesis_hash(ours["session"])
    for cell in document["cells"]:  # type: ignore[union-attr]
        head = fmt.cell_hash(head, cell)
    return head


async def test_a_session_becomes_a_valid_notebook(workspace: Path) -> None:
    """Task, code cells with real outputs and per-cell metadata, session metadata and chain."""
    notebook = workspace.parent / "run.ipynb"
    async with Session(workspace, tools=[table], notebook=notebook, audit_key="secret",
                       record_metadata={"model": {"provider": "scripted", "name": "test"}}) as session:
        session.record_message("task", "Find the largest row.")
        await session.execute("rows = tools.data.table(3)\nprogress('loaded', n=len(rows))\nprint(len(rows))",
                              record_extras={"observation": {"text": "3", "truncated": False}})
        await session.execute("from IPython.display import HTML\nHTML('<b>bold</b>')")
        await session.execute("rows[10]")
        await session.execute("final_answer(max(r['id'] for r in rows))")
    document = nbformat.read(notebook, as_version=4)
    nbformat.validate(document)
    assert document.cells[0].metadata.kernel_agent.kind == "setup"
    cells = session_cells(document.cells)
    assert [c.cell_type for c in cells] == ["markdown", "code", "code", "code", "code"]
    assert all(c.get("id") for c in document.cells)
    assert document.metadata.kernelspec.name == "kernel-agent"
    task, loaded, html, failed, answer = cells
    assert task.source == "Find the largest row." and task.metadata.kernel_agent.kind == "task"
    assert loaded.outputs[0]["text"] == "3\n"
    meta = loaded.metadata.kernel_agent
    assert meta.status == "ok" and meta.observation == {"text": "3", "truncated": False}
    assert [c["tool"] for c in meta.tool_calls] == ["data.table"] and meta.tool_calls[0]["arguments"] == {"rows": 3}
    assert meta.progress[0]["message"] == "loaded" and meta.duration > 0
    assert html.outputs[0]["data"]["text/html"] == "<b>bold</b>"
    assert failed.metadata.kernel_agent.status == "error" and failed.outputs[-1]["ename"] == "IndexError"
    assert answer.metadata.kernel_agent.final_answer == 2
    ours = document.metadata.kernel_agent
    session_header = ours.session
    assert session_header.model == {"provider": "scripted", "name": "test"}
    assert session_header.sandbox.mode == "bwrap" and "ipykernel_version" in session_header
    assert "tools.data.table(rows)" in session_header.tools.manifest and len(session_header.tools.sdk_hash) == 64
    totals = ours.end["totals"]
    assert totals["cells"] == 4 and totals["errors"] == 1 and totals["tool_calls"] == 1
    assert ours.end["reason"] == "closed" and ours.end["cells"] == 6 and ours.end["head"] == ours.chain["head"]
    assert ours.end["settings"]["default_timeout"] == 600.0 and ours.end["record"]["reachable_from_sandbox"] is False
    assert ours.chain["length"] == 6
    raw = json.loads(notebook.read_text())
    assert ours.chain["head"] == recomputed_head(raw)
    assert ours.chain["seal"] == fmt.seal_hash(ours.chain["head"], dict(ours.end))
    statement = fmt.chain_statement(ours.chain["genesis"], 6, ours.chain["head"], ours.chain["seal"])
    assert ours.chain["hmac"] == fmt.hmac_statement(statement, b"secret")


async def test_large_tool_results_go_to_side_files(workspace: Path) -> None:
    """A tool result above the threshold is stored next to the notebook, content-addressed."""
    notebook = workspace.parent / "big.ipynb"
    async with Session(workspace, tools=[table], notebook=notebook) as session:
        await session.execute("len(tools.data.table(5000))")
    call = session_cells(json.loads(notebook.read_text())["cells"])[0]["metadata"]["kernel_agent"]["tool_calls"][0]
    reference = call["result"]
    assert set(reference) == {fmt.SIDE_FILE_KEY, "bytes"}
    stored = side_files_dir(notebook) / f"{reference[fmt.SIDE_FILE_KEY]}.json"
    assert fmt.sha256_hex(stored.read_text()) == reference[fmt.SIDE_FILE_KEY]
    assert len(json.loads(stored.read_text())) == 5000


async def test_notebook_edited_between_cells_is_rewritten_whole(workspace: Path) -> None:
    """If something changes the notebook file mid-session, the next cell rewrites it from the recorder's state."""
    notebook = workspace.parent / "edited.ipynb"
    async with Session(workspace, notebook=notebook) as session:
        await session.execute("a = 1")
        notebook.write_text("garbage")
        await session.execute("b = 2")
        assert len(session_cells(nbformat.read(notebook, as_version=4).cells)) == 2
    document = json.loads(notebook.read_text())
    assert [c["source"] for c in session_cells(document["cells"])] == ["a = 1", "b = 2"]
    assert document["metadata"]["kernel_agent"]["chain"]["head"] == recomputed_head(document)


async def test_the_kernel_cannot_redirect_the_notebook_with_a_symlink(workspace: Path, tmp_path: Path) -> None:
    """A notebook explicitly allowed in the kernel's workspace: links planted there never make the host write elsewhere."""
    sentinel = tmp_path / "host-file.txt"
    sentinel.write_text("host data")
    notebook = workspace / "session.ipynb"
    async with Session(workspace, notebook=notebook, allow_reachable_record=True) as session:
        await session.execute("x = 1")
        journal = journal_path_for(notebook)
        attack = (f"import os\nos.remove({str(notebook)!r})\nos.symlink({str(sentinel)!r}, {str(notebook)!r})\n"
                  f"os.remove({str(journal)!r})\nos.symlink({str(sentinel)!r}, {str(journal)!r})")
        await session.execute(attack)
        await session.execute("y = 2")
    assert sentinel.read_text() == "host data"
    assert not notebook.is_symlink() and len(session_cells(nbformat.read(notebook, as_version=4).cells)) == 3


def test_killed_host_loses_at_most_the_cell_in_flight(tmp_path: Path) -> None:
    """SIGKILL the host mid-session at several points; recover rebuilds a valid notebook with every finished cell."""
    for kill_after in (1, 4):
        workspace = tmp_path / f"ws{kill_after}"
        workspace.mkdir()
        notebook = tmp_path / f"crash{kill_after}.ipynb"
        script = textwrap.dedent(f"""
            import sys
            from kernel_agent import SyncSession
            s = SyncSession({str(workspace)!r}, notebook={str(notebook)!r}).start()
            for i in range(100):
                s.execute(f"v{{i}} = {{i}}\\nprint(v{{i}})")
                print("done", i, flush=True)
        """)
        host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert host.stdout is not None
        finished = -1
        while finished < kill_after:
            finished = int(host.stdout.readline().split()[1])
        host.send_signal(signal.SIGKILL)
        host.wait()
        host.stdout.close()
        recovered = tmp_path / f"recovered{kill_after}.ipynb"
        run = subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", "recover", str(journal_path_for(notebook)),
                              "--out", str(recovered)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        document = nbformat.read(recovered, as_version=4)
        nbformat.validate(document)
        sources = [c.source for c in session_cells(document.cells)]
        assert sources[: finished + 1] == [f"v{i} = {i}\nprint(v{i})" for i in range(finished + 1)]
        assert document.metadata.kernel_agent.chain["head"] == recomputed_head(json.loads(recovered.read_text()))


def test_recover_handles_torn_and_corrupt_journals(tmp_path: Path) -> None:
    """A torn last line is dropped; a corrupt line in the middle is a clear error, and nothing is written."""
    header = {"event": "header", "metadata": {"session_id": "x"}}
    cell = {"event": "cell", "cell": {"cell_type": "code", "source": "1", "outputs": [], "execution_count": 1,
                                      "id": "a1", "metadata": {"kernel_agent": {"seq": 0, "kind": "code"}}}}
    torn = tmp_path / "torn.journal.jsonl"
    torn.write_text(json.dumps(header) + "\n" + json.dumps(cell) + "\n" + '{"event": "cell", "cel')
    run = subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", "recover", str(torn)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "recovered 1 cells" in run.stdout
    assert len(nbformat.read(tmp_path / "torn.ipynb", as_version=4).cells) == 1
    corrupt = tmp_path / "corrupt.journal.jsonl"
    corrupt.write_text(json.dumps(header) + "\nnot json\n" + json.dumps(cell) + "\n")
    run = subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", "recover", str(corrupt)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "line 2 is not valid JSON" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "corrupt.ipynb").exists()
    other = tmp_path / "other.journal.jsonl"
    other.write_text('{"hello": 1}\n')
    run = subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", "recover", str(other)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "not a kernel-agent journal" in run.stderr


async def test_where_sessions_are_recorded(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default in the host's record directory, never the workspace; not at all for a temporary workspace
    (unless notebook=True) or with notebook=False."""
    records = tmp_path / "records"
    monkeypatch.setenv("KERNEL_AGENT_RECORD_DIR", str(records))
    async with Session(workspace) as session:
        await session.execute("1")
        default = session.notebook
    assert default is not None and default.parent == records and default.is_file()
    assert list(workspace.iterdir()) == []
    async with Session() as temporary:
        assert temporary.notebook is None
    async with Session(notebook=True) as asked:
        assert asked.notebook is not None and asked.notebook.parent == records
    async with Session(workspace, notebook=False) as off:
        assert off.notebook is None
    with pytest.raises(RecordingError, match="does not exist"):
        await Session(workspace, notebook=workspace / "missing-dir" / "x.ipynb").start()
    assert sandbox_processes(workspace) == []  # a failed start leaves no kernel behind


async def test_recording_survives_kernel_death(workspace: Path) -> None:
    """A kernel death is recorded as such, and recording goes on in the fresh kernel."""
    notebook = workspace.parent / "death.ipynb"
    async with Session(workspace, notebook=notebook) as session:
        await session.execute("import os\nos._exit(3)")
        await session.execute("print('after')")
    cells = session_cells(nbformat.read(notebook, as_version=4).cells)
    assert cells[0].metadata.kernel_agent.status == "kernel_died" and cells[0].metadata.kernel_agent.state_lost
    assert cells[1].outputs[0]["text"] == "after\n"


def test_a_value_json_cannot_hold_never_erases_a_cell(tmp_path: Path) -> None:
    """NaN in an output, an infinity in the extras, an object in a progress field: the cell is recorded with
    each replaced value named, the notebook is valid JSON, and the chain verifies."""
    from kernel_agent.verify.audit import audit_notebook
    from kernel_agent.runtime.results import CellResult, CellStatus
    from kernel_agent.record.recorder import Recorder

    notebook = tmp_path / "nan.ipynb"
    recorder = Recorder(notebook, {"session_id": "nan-test"})
    result = CellResult(code="x", status=CellStatus.OK, duration=0.1, outputs=[
        {"output_type": "display_data", "data": {"application/json": {"x": float("nan")}}, "metadata": {}}])
    cell = recorder.record_code(result, {"usage": {"cost": float("inf")}, "note": object()})
    recorder.close({"cells": 1, "ratio": float("-inf")})
    problems = cell["metadata"]["kernel_agent"]["recording_problems"]
    assert any("NaN is not valid JSON" in p and "application/json" in p for p in problems)
    assert any("Infinity" in p and "usage" in p for p in problems) and any("object is not JSON" in p for p in problems)
    document = json.loads(notebook.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the notebook"))
    recorded = session_cells(document["cells"])[0]
    assert recorded["outputs"][0]["data"]["application/json"] == {"x": "NaN"}
    assert document["metadata"]["kernel_agent"]["end"]["totals"]["ratio"] == "-Infinity"
    assert audit_notebook(notebook).verdict == "intact"
