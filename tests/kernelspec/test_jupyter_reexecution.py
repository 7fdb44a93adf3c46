"""Standard Jupyter tooling re-executes a recorded notebook; the kernel serves tool calls from the recording.

nbclient, ``jupyter nbconvert --execute``, nbval and papermill start the
kernel-agent kernelspec in the notebook's directory; the recorded setup cell
(kind "setup") reads the recording there and answers each tool call from it.
No kernel-agent host code runs (only the kernelspec's sandbox provisioner).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from kernel_agent import Session, tool
from kernel_agent.kernel import replay
from kernel_agent.kernelspec.spec import KERNEL_NAME, install_kernelspec
from kernel_agent.record import format as fmt


@tool(namespace="data", read_only=True)
def table(rows: int) -> list[dict[str, object]]:
    """A table of ``rows`` rows."""
    return [{"id": i, "label": f"row {i}", "padding": "x" * 40} for i in range(rows)]


@tool
def fail(reason: str) -> str:
    """Always raises."""
    raise ValueError(reason)


@tool
def blob(size: int) -> bytes:
    """``size`` bytes."""
    return b"x" * size


CLEAN_CELLS = [
    'rows = tools.data.table(3)\nprint(rows[1]["label"], len(rows))',
    "tools.data.table(2)",
    'try:\n    tools.fail("nope")\nexcept ToolError as e:\n    print(type(e).__name__, "|", e.message)',
    "import asyncio\nparts = await asyncio.gather(tools.data.table.aio(1), tools.data.table.aio(2))\n"
    "[len(p) for p in parts]",
    'progress("half way", n=1)\nfinal_answer(len(rows))\nprint("done")',
]
ERROR_CELLS = ['tools.fail("boom")', "tools.blob(3)", "len(tools.data.table(5000))"]
# Errors that re-execution reproduces exactly (a tool's recorded error, a plain exception), and cells after them.
EXPECTED_ERROR_CELLS = ['rows = tools.data.table(2)\nprint(len(rows))', 'tools.fail("boom")', "1 / 0",
                        'print("after the errors", len(rows))']


async def _record(directory: Path, name: str, cells: list[str]) -> Path:
    workspace = directory / f"{name}-workspace"
    workspace.mkdir()
    notebook = directory / f"{name}.ipynb"
    async with Session(workspace, tools=[table, fail, blob], notebook=notebook, default_timeout=60) as session:
        session.record_message("task", "Exercise the tools.")
        for code in cells:
            await session.execute(code)
    return notebook


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three recorded sessions (two with uncaught errors) and the kernelspec installed in a private prefix."""
    root = tmp_path_factory.mktemp("recorded")
    # Jupyter starts the kernel here; on a root host the kernel reads its launch directory as "other"
    # (it is never lent to the sandbox uid), and pytest makes its directories 0700.
    root.chmod(0o755)
    prefix = tmp_path_factory.mktemp("prefix")
    install_kernelspec(user=False, prefix=str(prefix))

    async def all_three() -> tuple[Path, Path, Path]:
        clean, errors, expected = await asyncio.gather(_record(root, "session", CLEAN_CELLS),
                                                       _record(root, "errors", ERROR_CELLS),
                                                       _record(root, "expected", EXPECTED_ERROR_CELLS))
        return clean, errors, expected

    clean, errors, expected = asyncio.run(all_three())
    return {"clean": clean, "errors": errors, "expected": expected,
            "kernels": prefix / "share" / "jupyter" / "kernels", "jupyter_path": prefix / "share" / "jupyter"}


def _outputs(cell: Any) -> list[dict[str, Any]]:
    """A cell's outputs as nbval compares them: streams coalesced, no execution counts, errors by ename and evalue."""
    found: list[dict[str, Any]] = []
    for output in cell.get("outputs", []):
        output = fmt.normalised_output(dict(output))
        output.pop("execution_count", None)
        output.pop("traceback", None)
        if found and output["output_type"] == found[-1]["output_type"] == "stream" \
                and output["name"] == found[-1]["name"]:
            found[-1]["text"] += output["text"]
        else:
            found.append(output)
    return found


def _code_cells(notebook: Any) -> list[Any]:
    return [c for c in notebook.cells if c.cell_type == "code" and c.metadata.kernel_agent.kind == "code"]


async def _nbclient(notebook: nbformat.NotebookNode, directory: Path, kernels: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                 kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(notebook, km=manager, kernel_name=KERNEL_NAME, allow_errors=True, timeout=60,
                            resources={"metadata": {"path": str(directory)}})
    try:
        return await client.async_execute()
    finally:  # nbclient leaves a kernel manager it was given running
        if client.kc is not None:
            client.kc.stop_channels()
        await manager.shutdown_kernel(now=True)


def _env(recorded: dict[str, Path]) -> dict[str, str]:
    return {**os.environ, "JUPYTER_PATH": str(recorded["jupyter_path"])}


# -- the recording ---------------------------------------------------------------------------


def test_the_setup_cell_is_recorded_first_and_chained(recorded: dict[str, Path]) -> None:
    """Cell 0 is the setup cell: no outputs, never executed by the session, in the hash chain."""
    document = json.loads(recorded["clean"].read_text())
    setup = document["cells"][0]
    ours = setup["metadata"]["kernel_agent"]
    assert setup["cell_type"] == "code" and ours["kind"] == "setup" and ours["seq"] == 0
    assert setup["outputs"] == [] and setup["execution_count"] is None
    session_id = document["metadata"]["kernel_agent"]["session"]["session_id"]
    assert "from kernel_agent.kernel.replay import serve_recording" in setup["source"]
    assert f"serve_recording('session.ipynb', session_id='{session_id}')" in setup["source"]
    head = fmt.genesis_hash(document["metadata"]["kernel_agent"]["session"])
    for cell in document["cells"]:
        head = fmt.cell_hash(head, cell)
        assert cell["metadata"]["kernel_agent"]["hash"] == head
    assert document["metadata"]["kernel_agent"]["chain"]["head"] == head
    # The session ran only the agent's cells: the first of them got execution count 1.
    assert [c["execution_count"] for c in document["cells"] if c["cell_type"] == "code"] == [None, 1, 2, 3, 4, 5]
    assert document["metadata"]["kernel_agent"]["session"]["tools"]["sdk_modules"]


# -- nbclient ----------------------------------------------------------------------------------


async def test_nbclient_reproduces_the_recorded_outputs(recorded: dict[str, Path]) -> None:
    """Tool results, a caught tool error, gathered async calls, progress and final_answer: same outputs."""
    notebook = nbformat.read(recorded["clean"], as_version=4)
    executed = await _nbclient(nbformat.read(recorded["clean"], as_version=4), recorded["clean"].parent,
                               recorded["kernels"])
    assert executed.cells[0].outputs == []  # the setup cell prints nothing
    expected = [_outputs(c) for c in _code_cells(notebook)]
    assert [_outputs(c) for c in _code_cells(executed)] == expected
    assert expected[0] == [{"output_type": "stream", "name": "stdout", "text": "row 1 3\n"}]
    assert expected[2][0]["text"] == "ToolError | ValueError: nope\n"


@pytest.fixture(scope="module")
def errors_executed(recorded: dict[str, Path]) -> list[list[dict[str, Any]]]:
    """The outputs of the error session's cells re-executed by nbclient, plus one cell the session never ran."""
    notebook = nbformat.read(recorded["errors"], as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("tools.data.table(99)"))
    executed = asyncio.run(_nbclient(notebook, recorded["errors"].parent, recorded["kernels"]))
    return [_outputs(c) for c in executed.cells if c.cell_type == "code"][1:]


def test_nbclient_raises_recorded_errors_and_refuses_unrecorded_calls(
        recorded: dict[str, Path], errors_executed: list[list[dict[str, Any]]]) -> None:
    """A recorded tool error is raised again (same class, same message); a call not in the recording fails clearly."""
    raised, blob_cell, _, extra = errors_executed
    recorded_cells = _code_cells(nbformat.read(recorded["errors"], as_version=4))
    assert raised == _outputs(recorded_cells[0])
    assert raised == [{"output_type": "error", "ename": "ToolError", "evalue": "fail: ValueError: boom"}]
    assert extra[0]["ename"] == "ToolError" and replay.NOT_RECORDED in extra[0]["evalue"]
    assert extra[0]["evalue"].startswith("data.table: this call is not in the recording")
    # A limit: bytes travel in binary buffers, which the recording does not keep.
    assert _outputs(recorded_cells[1])[0]["data"] == {"text/plain": "b'xxx'"}
    assert blob_cell[0]["ename"] == "ToolError" and "holds bytes" in blob_cell[0]["evalue"]


def test_nbclient_serves_large_results_from_side_files(
        recorded: dict[str, Path], errors_executed: list[list[dict[str, Any]]]) -> None:
    """A result recorded in a side file is read from ``<stem>.files/`` next to the notebook."""
    assert errors_executed[2] == [{"output_type": "execute_result", "metadata": {}, "data": {"text/plain": "5000"}}]


async def test_side_files_the_kernel_can_read_are_served(recorded: dict[str, Path], tmp_path: Path) -> None:
    """With its side files readable (mode 0644), a copied recording serves its large result."""
    tmp_path.chmod(0o755)  # the launch directory: read by the kernel as "other" (see the fixture)
    shutil.copy(recorded["errors"], tmp_path / "errors.ipynb")
    shutil.copytree(recorded["errors"].with_name("errors.files"), tmp_path / "errors.files")
    for side_file in (tmp_path / "errors.files").iterdir():
        side_file.chmod(0o644)
    executed = await _nbclient(nbformat.read(tmp_path / "errors.ipynb", as_version=4), tmp_path, recorded["kernels"])
    assert _outputs(_code_cells(executed)[2]) == [{"output_type": "execute_result", "metadata": {},
                                                   "data": {"text/plain": "5000"}}]


# -- nbconvert, nbval, papermill (subprocesses, kernelspec found through JUPYTER_PATH) --------------------


def test_nbconvert_executes_a_renamed_copy(recorded: dict[str, Path], tmp_path: Path) -> None:
    """``jupyter nbconvert --execute`` on a copy under another name: the kernel finds it by session id."""
    tmp_path.chmod(0o755)  # the launch directory: read by the kernel as "other" (see the fixture)
    copy = tmp_path / "renamed.ipynb"
    shutil.copy(recorded["clean"], copy)
    result = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", str(copy), "--output", "executed"],
        cwd=tmp_path, env=_env(recorded), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    expected = nbformat.read(recorded["clean"], as_version=4)
    assert [_outputs(c) for c in _code_cells(executed)] == [_outputs(c) for c in _code_cells(expected)]


def _nbval(recorded: dict[str, Path], notebook: Path) -> subprocess.CompletedProcess[str]:
    (notebook.parent / "pytest.ini").write_text("[pytest]\n")  # not this project's pytest configuration
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(notebook.parent / "pytest.ini"),
         "--nbval", notebook.name, "--nbval-kernel-name", KERNEL_NAME],
        cwd=notebook.parent, env=_env(recorded), capture_output=True, text=True, timeout=120)


def test_nbval_passes_on_the_recording_and_fails_on_an_edited_output(recorded: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """nbval compares every re-executed output with the recorded one."""
    passed = _nbval(recorded, recorded["clean"])
    assert passed.returncode == 0, passed.stdout[-3000:]
    assert "6 passed" in passed.stdout

    edited_dir = tmp_path / "edited"
    edited_dir.mkdir()
    document = json.loads(recorded["clean"].read_text())
    first = next(c for c in document["cells"] if c["metadata"]["kernel_agent"]["kind"] == "code")
    first["outputs"][0]["text"] = "row 2 3\n"
    (edited_dir / "session.ipynb").write_text(json.dumps(document))
    failed = _nbval(recorded, edited_dir / "session.ipynb")
    assert failed.returncode == 1, failed.stdout[-3000:]
    assert "1 failed, 5 passed" in failed.stdout and "row 2 3" in failed.stdout


def test_papermill_executes_the_recording(recorded: dict[str, Path], tmp_path: Path) -> None:
    """papermill (if installed) writes an output notebook with the recorded outputs."""
    if importlib.util.find_spec("papermill") is None:
        print("papermill is not installed (optional test dependency)")
        pytest.skip("papermill is not installed")
    directory = tmp_path / "papermill"
    directory.mkdir()
    shutil.copy(recorded["clean"], directory / "session.ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "papermill", "session.ipynb", "output.ipynb", "-k", KERNEL_NAME,
         "--cwd", str(directory), "--no-progress-bar"],
        cwd=directory, env=_env(recorded), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    executed = nbformat.read(directory / "output.ipynb", as_version=4)
    expected = nbformat.read(recorded["clean"], as_version=4)
    assert [_outputs(c) for c in _code_cells(executed)] == [_outputs(c) for c in _code_cells(expected)]


def _plain(text: str) -> str:
    """Terminal text without its colour codes (IPython colours tracebacks)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _papermill(recorded: dict[str, Path], name: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``papermill NAME.ipynb out.ipynb`` on a copy of a recording (and its side files), as a user types it."""
    if importlib.util.find_spec("papermill") is None:
        pytest.skip("papermill is not installed (optional test dependency)")
    directory.mkdir()
    directory.chmod(0o755)  # the launch directory: read by the kernel as "other" (see the fixture)
    shutil.copy(recorded[name], directory / f"{name}.ipynb")
    if recorded[name].with_name(f"{name}.files").is_dir():
        shutil.copytree(recorded[name].with_name(f"{name}.files"), directory / f"{name}.files")
    return subprocess.run([sys.executable, "-m", "papermill", f"{name}.ipynb", "out.ipynb"], cwd=directory,
                          env=_env(recorded), capture_output=True, text=True, timeout=120)


def test_papermill_executes_a_recording_with_error_cells(recorded: dict[str, Path], tmp_path: Path) -> None:
    """papermill fails a run on any error output, whatever the raises-exception tag; run by papermill, a recorded
    error reproduced exactly goes to stderr instead, so the recording runs to its end and papermill succeeds."""
    result = _papermill(recorded, "expected", tmp_path / "papermill")
    assert result.returncode == 0, result.stderr[-3000:]
    executed = _code_cells(nbformat.read(tmp_path / "papermill" / "out.ipynb", as_version=4))
    recorded_cells = _code_cells(nbformat.read(recorded["expected"], as_version=4))
    assert [c.metadata.get("tags") for c in recorded_cells] == [None, ["raises-exception"], ["raises-exception"],
                                                                None]
    assert [o["ename"] for c in recorded_cells for o in _outputs(c) if o["output_type"] == "error"] == [
        "ToolError", "ZeroDivisionError"]
    assert not [o for c in executed for o in c.outputs if o.output_type == "error"]
    tool_error, zero_division = (_outputs(c) for c in executed[1:3])
    assert tool_error[0]["name"] == "stderr" and "ToolError: fail: ValueError: boom" in _plain(
        tool_error[0]["text"])
    assert zero_division[0]["name"] == "stderr" and "ZeroDivisionError: division by zero" in _plain(
        zero_division[0]["text"])
    # The cells that did not raise have their recorded outputs, the one after the errors included.
    assert [_outputs(c) for c in (executed[0], executed[3])] == [_outputs(c) for c in (recorded_cells[0],
                                                                                       recorded_cells[3])]
    assert _outputs(executed[3]) == [{"output_type": "stream", "name": "stdout", "text": "after the errors 2\n"}]


def test_papermill_still_fails_where_the_recording_is_not_reproduced(recorded: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    """A cell that raises what the recording does not have (bytes the recording cannot serve) is an error output:
    papermill fails the run and names it, while the recorded error before it was reproduced (on stderr)."""
    result = _papermill(recorded, "errors", tmp_path / "papermill")
    assert result.returncode == 1
    assert "PapermillExecutionError" in result.stderr and "holds bytes" in result.stderr
    executed = _code_cells(nbformat.read(tmp_path / "papermill" / "out.ipynb", as_version=4))
    reproduced, diverged = executed[0], executed[1]
    assert [o.output_type for o in reproduced.outputs] == ["stream"]
    assert "ToolError: fail: ValueError: boom" in _plain(reproduced.outputs[0].text)
    assert [(o.output_type, o.ename) for o in diverged.outputs] == [("error", "ToolError")]


# -- the in-kernel bridge on its own (no kernel) ---------------------------------------------------------


def _document(calls: list[dict[str, Any]], source: str = "x") -> dict[str, Any]:
    cell = {"cell_type": "code", "source": source, "outputs": [], "execution_count": 1,
            "metadata": {"kernel_agent": {"kind": "code", "seq": 1, "tool_calls": calls}}}
    setup = {"cell_type": "code", "source": "setup", "outputs": [], "execution_count": None,
             "metadata": {"kernel_agent": {"kind": "setup", "seq": 0}}}
    return {"cells": [setup, cell], "metadata": {"kernel_agent": {"session": {"session_id": "abc", "tools": {}}}}}


def _call(tool_name: str, arguments: Any, result: Any = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"tool": tool_name, "arguments": arguments, "status": error["kind"] if error else "ok",
            "result": result, "error": error}


def test_bridge_answers_in_order_by_tool_and_arguments(tmp_path: Path) -> None:
    """Repeated identical calls get their answers in order; errors keep their class; side files are checked."""
    big = {"__ka__": "tuple", "items": [1, 2]}
    text = fmt.canonical_json(big)
    reference, name = fmt.side_file_reference(text)
    (tmp_path / "run.files").mkdir()
    (tmp_path / "run.files" / name).write_text(text)
    recording = replay.Recording(_document([
        _call("t", {"n": 1}, result=10), _call("t", {"n": 1}, result=11), _call("t", {"n": 2}, result=reference),
        _call("u", {}, error={"kind": "denied", "message": "no", "details": None}),
    ]), [tmp_path / "run.files"])
    bridge = replay.RecordingBridge(recording)
    bridge.begin_cell("x\n")
    assert bridge.call("t", {"n": 2}) == (1, 2)
    assert [bridge.call("t", {"n": 1}), bridge.call("t", {"n": 1})] == [10, 11]
    with pytest.raises(replay.sdk.ToolDenied, match=r"^u: no$"):
        bridge.call("u", {})
    with pytest.raises(replay.sdk.ToolError, match="not in the recording"):
        bridge.call("t", {"n": 1})
    bridge.notify("final_answer", {"value": 3})
    assert bridge.final_answers == [3]

    (tmp_path / "run.files" / name).write_text(text.replace("1", "7"))
    tampered = replay.RecordingBridge(replay.Recording(_document([_call("t", {}, result=reference)]),
                                                       [tmp_path / "run.files"]))
    with pytest.raises(replay.sdk.ToolError, match="does not match its name"):
        tampered.call("t", {})


def test_the_recording_is_found_by_session_id(tmp_path: Path) -> None:
    """A renamed notebook is found by the session id in its metadata; a missing one is a clear error."""
    (tmp_path / "other.ipynb").write_text(json.dumps(_document([])))
    path, _ = replay.find_notebook("gone.ipynb", "abc", tmp_path)
    assert path.name == "other.ipynb"
    with pytest.raises(replay.ReplayError, match="no notebook recording session zzz"):
        replay.find_notebook("gone.ipynb", "zzz", tmp_path)
    with pytest.raises(replay.ReplayError, match="sdk_modules"):
        _ = replay.Recording(_document([]), []).sdk_modules


async def test_a_live_session_does_not_serve_a_recording(recorded: dict[str, Path], session: Session) -> None:
    """Run by hand in a live session (a host is attached), the setup cell refuses: tools stay on the host."""
    setup = json.loads(recorded["clean"].read_text())["cells"][0]["source"]
    result = await session.execute(setup)
    assert result.error is not None and result.error.ename == "ReplayError"
    assert "a kernel-agent host is attached" in result.error.evalue
