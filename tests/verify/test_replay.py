"""kernel-agent replay: re-running a recorded session against its recording (real sandboxed kernels)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from kernel_agent import Session
from kernel_agent.cli.main import main
from kernel_agent.record.journal import journal_path_for
from kernel_agent.record.recorder import side_files_dir
from kernel_agent.tools.tool import tool
from kernel_agent.verify.replay import ReplayInputError, render_cell, replay, sanitize

ROOT = Path(__file__).resolve().parents[2]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(namespace="db")
def lookup(key: str) -> dict[str, Any]:
    """Look a key up (the result's keys are deliberately not in sorted order)."""
    return {"key": key, "value": len(key), "tags": ["x", "y"]}


@tool
def fail(reason: str) -> str:
    """Always raises."""
    raise ValueError(f"bad: {reason}")


@tool
def blob(n: int) -> str:
    """A long string (large enough to be stored in a side file)."""
    return "x" * n


TOOLS = [add, lookup, fail, blob]

TASK = "Add some numbers and look things up."
CELLS = [
    "x = tools.add(a=1, b=2)\nprint('sum', x)",
    "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))\nx * 10",
    "tools.db.lookup(key='abc')",
    "tools.fail(reason='nope')",
    "1 / 0",
    "import sys\nprint(object(), hex(id(x)))\nprint('to stderr', file=sys.stderr)",
    "big = tools.blob(n=70_000)\nprint(len(big), x)",
]


async def _record(notebook: Path) -> None:
    async with Session(notebook.parent / "ws", tools=TOOLS, notebook=notebook, default_timeout=60) as session:
        session.record_message("task", TASK)
        for code in CELLS:
            await session.execute(code)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One recorded session (with a task cell, tool calls, an error, a side file), shared by the module."""
    notebook = tmp_path_factory.mktemp("recorded") / "session.ipynb"
    (notebook.parent / "ws").mkdir()
    asyncio.run(_record(notebook))
    assert side_files_dir(notebook).is_dir(), "the blob result should have gone to a side file"
    return notebook


def copy_recording(source: Path, directory: Path, *, journal: bool = True, side_files: bool = True) -> Path:
    """The notebook (with its journal and side files, unless told not to) copied into ``directory``."""
    target = directory / source.name
    shutil.copy(source, target)
    if journal:
        shutil.copy(journal_path_for(source), journal_path_for(target))
    if side_files:
        shutil.copytree(side_files_dir(source), side_files_dir(target))
    return target


def edit(notebook: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(notebook.read_text())
    change(document)
    notebook.write_text(json.dumps(document, indent=1))


def code_cell(document: dict[str, Any], starts: str) -> dict[str, Any]:
    return next(c for c in document["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(starts))


def cell_index(notebook: Path, starts: str) -> int:
    document = json.loads(notebook.read_text())
    return document["cells"].index(code_cell(document, starts))


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", "replay", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# -- faithful replays -----------------------------------------------------------------------


def test_cli_replays_faithfully_and_records_the_replay(recorded: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in (recorded, journal_path_for(recorded))}
    out = tmp_path / "replayed.ipynb"
    done = run_cli(str(recorded), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "faithful" in done.stdout
    assert f"replayed {len(CELLS)} code cells" in done.stdout
    assert "4 tool calls served from the recording" in done.stdout
    assert "warning" not in done.stdout  # same SDK hash, the journal restored the dict's key order
    assert {p: p.read_bytes() for p in before} == before, "replay must never modify its input"

    replayed = nbformat.read(out, as_version=4)
    nbformat.validate(replayed)
    cells = [c for c in replayed.cells if c.metadata["kernel_agent"]["kind"] != "setup"]
    assert [c.metadata["kernel_agent"]["kind"] for c in cells] == ["task"] + ["code"] * len(CELLS)
    assert cells[0].source == TASK
    assert [c.source for c in cells[1:]] == CELLS
    assert replayed.metadata["kernel_agent"]["session"]["replay"]["live"] is False


def test_live_replay_calls_the_real_tools(recorded: Path) -> None:
    done = run_cli(str(recorded), "--live", "--tools", "tests.verify.test_replay:TOOLS", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["faithful"] and report["live"]
    assert report["tool_calls_served"] == 0 and report["tool_calls_recorded"] == 4
    assert report["warnings"] == []  # the live tools give the recorded SDK


# -- divergences ----------------------------------------------------------------------------


def test_edited_output_is_a_divergence_with_a_diff(recorded: Path, tmp_path: Path) -> None:
    notebook = copy_recording(recorded, tmp_path)
    edit(notebook, lambda d: code_cell(d, "x = tools.add")["outputs"][0].update(text="sum 4\n"))
    done = run_cli(str(notebook))
    assert done.returncode == 1, done.stdout + done.stderr
    index = cell_index(notebook, "x = tools.add")
    seq = json.loads(notebook.read_text())["cells"][index]["metadata"]["kernel_agent"]["seq"]
    assert f"first divergence: cell {index}, seq {seq}: x = tools.add(a=1, b=2)" in done.stdout
    assert "reason: outputs differ" in done.stdout
    assert "\n-sum 4\n+sum 3\n" in done.stdout
    assert "DIVERGENT: 1 of 7 cells differ" in done.stdout


async def test_edited_tool_result_changes_what_the_cell_prints(recorded: Path, tmp_path: Path) -> None:
    notebook = copy_recording(recorded, tmp_path)
    edit(notebook, lambda d: code_cell(d, "x = tools.add")["metadata"]["kernel_agent"]["tool_calls"][0]
         .update(result=5))
    report = await replay(notebook)
    assert not report.faithful
    first = report.first_divergence
    assert first is not None and first.cell_index == cell_index(notebook, "x = tools.add")
    assert first.reason == "outputs differ"
    assert "-sum 3\n+sum 5\n" in first.diff
    # the wrong x carries on: x * 10 and the last cell's print differ too
    assert report.divergent_cells == [cell_index(notebook, c) for c in ("x = tools.add", "from IPython", "big =")]
    assert report.tool_calls_served == 4


async def test_a_call_the_recording_lacks_is_named(recorded: Path, tmp_path: Path) -> None:
    notebook = copy_recording(recorded, tmp_path)

    def change(document: dict[str, Any]) -> None:
        code_cell(document, "x = tools.add")["source"] = "x = tools.add(a=1, b=5)\nprint('sum', x)"
        # a setup cell is not replayed (this one would fail if it were)
        setup = nbformat.v4.new_code_cell("raise SystemExit('a setup cell must not be replayed')")
        setup["metadata"] = {"kernel_agent": {"kind": "setup", "seq": 99}}
        document["cells"].insert(0, dict(setup))

    edit(notebook, change)
    report = await replay(notebook)
    assert not report.faithful
    assert report.cells == len(CELLS)
    assert report.unrecorded_calls and '{"a":1,"b":5}' in report.unrecorded_calls[0]
    first = report.first_divergence
    assert first is not None and first.cell_index == cell_index(notebook, "x = tools.add")
    assert first.reason.startswith("status: recorded ok, replayed error; tool call not in the recording: add")
    assert "next recorded call of this cell is add" in first.reason
    assert "+  add {\"a\":1,\"b\":5} -> error: replay divergence" in first.diff
    assert "+ToolError: add: replay divergence" in first.diff


async def test_bytes_results_are_a_reported_limitation(recorded: Path, tmp_path: Path) -> None:
    notebook = copy_recording(recorded, tmp_path)
    edit(notebook, lambda d: code_cell(d, "x = tools.add")["metadata"]["kernel_agent"]["tool_calls"][0]
         .update(result={"__ka__": "bytes", "buffer": 0}))
    report = await replay(notebook)
    assert not report.faithful
    assert report.first_divergence is not None and "replay limitation" in report.first_divergence.reason
    assert any("bytes" in w for w in report.warnings)


# -- comparison --------------------------------------------------------------------------------


def test_sanitizing_addresses_ansi_and_trailing_space() -> None:
    assert sanitize("<object object at 0x7f3a2b1c9d40>  \n\x1b[31mred\x1b[0m") == "<object object at 0x...>\nred"
    assert sanitize("0xff stays") == "0xff stays"
    first = [{"output_type": "stream", "name": "stdout", "text": "a\n"},
             {"output_type": "stream", "name": "stderr", "text": "warn\n"},
             {"output_type": "stream", "name": "stdout", "text": "b\n"},
             {"output_type": "display_data", "data": {"image/png": "AAAA", "text/plain": "<Figure>"}, "metadata": {}},
             {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["one"]}]
    second = [{"output_type": "stream", "name": "stdout", "text": ["a\n", "b\n"]},
              {"output_type": "stream", "name": "stderr", "text": "warn\n"},
              {"output_type": "display_data", "data": {"image/png": "BBBB", "text/plain": "<Figure>"}, "metadata": {}},
              {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["two"]}]
    assert render_cell("ok", first, []) == render_cell("ok", second, [])
    assert render_cell("ok", first, []) != render_cell("error", first, [])


def test_which_stream_comes_first_is_not_a_difference_but_their_text_and_place_are() -> None:
    # os.write(2, ...) then print(...): the kernel's descriptor capture delivers stderr before or after stdout.
    stderr_first = [{"output_type": "stream", "name": "stderr", "text": "forged\n"},
                    {"output_type": "stream", "name": "stdout", "text": "forged\nwrote\n"}]
    stdout_first = [{"output_type": "stream", "name": "stdout", "text": "forged\n"},
                    {"output_type": "stream", "name": "stderr", "text": "forged\n"},
                    {"output_type": "stream", "name": "stdout", "text": "wrote\n"}]
    assert render_cell("ok", stderr_first, []) == render_cell("ok", stdout_first, [])
    other_text = [{"output_type": "stream", "name": "stderr", "text": "forged\n"},
                  {"output_type": "stream", "name": "stdout", "text": "wrote\n"}]
    assert render_cell("ok", stderr_first, []) != render_cell("ok", other_text, [])
    table = {"output_type": "display_data", "data": {"text/plain": "table"}, "metadata": {}}
    assert render_cell("ok", [table, *stdout_first], []) != render_cell("ok", [*stdout_first, table], [])


# -- unusable input -------------------------------------------------------------------------------


def test_unusable_input_exits_2_without_a_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ipynb"
    garbage.write_text("{ not json")
    done = run_cli(str(garbage))
    assert done.returncode == 2
    assert "is not valid JSON" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("case", ["missing", "list", "plain notebook", "newer format", "side file", "out is input"])
def test_unusable_inputs(case: str, recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notebook = tmp_path / "n.ipynb"
    args: list[str] = []
    expected = {"missing": "cannot read", "list": "not a Jupyter notebook", "plain notebook": "not a kernel-agent",
                "newer format": "format 99", "side file": "side file", "out is input": "--out"}[case]
    if case == "list":
        notebook.write_text("[]")
    elif case == "plain notebook":
        notebook.write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])))
    elif case == "newer format":
        notebook = copy_recording(recorded, tmp_path)
        edit(notebook, lambda d: d["metadata"]["kernel_agent"].update(format=99))
    elif case == "side file":
        notebook = copy_recording(recorded, tmp_path, side_files=False)
    elif case == "out is input":
        notebook = copy_recording(recorded, tmp_path)
        args = ["--out", str(notebook)]
    assert main(["replay", str(notebook), *args]) == 2
    assert expected in capsys.readouterr().err


def test_live_needs_the_tools(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(recorded), "--live"]) == 2
    assert "needs the real tools" in capsys.readouterr().err
    assert main(["replay", str(recorded), "--tools", "tests.verify.test_replay:TOOLS"]) == 2
    assert "--live" in capsys.readouterr().err


async def test_the_api_raises_for_unusable_input(tmp_path: Path) -> None:
    with pytest.raises(ReplayInputError, match="not valid JSON"):
        await replay(_write(tmp_path / "x.ipynb", "nope"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
