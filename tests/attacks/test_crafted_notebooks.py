"""Crafted recordings handed to audit, replay, recover and Session.resume (issue 10, point 4).

Every notebook field is hostile input. Each crafted notebook or journal
below must end in a named error, exit status 2 from the command line
(one line on stderr, never a traceback) and a RecordingError from
Session.resume; and no directory a notebook names is ever used: the
header's workspace points at a root-only directory, which must keep its
owner, mode and content.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import contextlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Session, tool
from kernel_agent.errors import RecordingError
from kernel_agent.record import format as fmt
from kernel_agent.record.journal import journal_path_for
from kernel_agent.record.recorder import side_files_dir

Document = dict[str, Any]


@tool
def blob(n: int) -> str:
    """A long string (stored in a side file)."""
    return "x" * n


CELLS = [
    "big = tools.blob(n=70_000)\nprint(len(big))",
    "open('planted.txt', 'w').write('written by a recorded cell')\nprint('ok')",
    "1 / 0",
]


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real recording (a side file, an error cell, a cell writing to its working directory)."""
    directory = tmp_path_factory.mktemp("genuine")
    notebook = directory / "session.ipynb"
    (directory / "ws").mkdir()

    async def record() -> None:
        async with Session(directory / "ws", tools=[blob], notebook=notebook, default_timeout=60) as session:
            for code in CELLS:
                await session.execute(code)

    asyncio.run(record())
    assert side_files_dir(notebook).is_dir()
    return notebook


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-only directory that crafted headers name as their workspace."""
    path = tmp_path / "root-only"
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    (path / ".profile").write_text("the user's own file\n")
    return path


def snapshot(path: Path) -> tuple[Any, ...]:
    status = path.stat()
    return (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode), sorted(os.listdir(path)),
            (path / ".profile").read_text())


def copy_recording(source: Path, directory: Path) -> Path:
    target = directory / source.name
    shutil.copy(source, target)
    shutil.copy(journal_path_for(source), journal_path_for(target))
    shutil.copytree(side_files_dir(source), side_files_dir(target))
    return target


def load(path: Path) -> Document:
    document: Document = json.loads(path.read_text())
    return document


def ours(document: Document) -> Document:
    value: Document = document["metadata"]["kernel_agent"]
    return value


def code_cell(document: Document, starts: str = "big =") -> Document:
    return next(c for c in document["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(starts))


def cell_ours(document: Document, starts: str = "big =") -> Document:
    value: Document = code_cell(document, starts)["metadata"]["kernel_agent"]
    return value


def first_call(document: Document) -> Document:
    value: Document = cell_ours(document)["tool_calls"][0]
    return value


def rechain(document: Document) -> None:
    """Make the chain consistent again after an edit (what a forger without the HMAC key can do)."""
    head = fmt.genesis_hash(ours(document)["session"])
    for cell in document["cells"]:
        head = fmt.cell_hash(head, cell)
        cell["metadata"]["kernel_agent"]["hash"] = head
    chain = ours(document)["chain"]
    chain["genesis"], chain["head"], chain["length"] = fmt.genesis_hash(ours(document)["session"]), head, len(
        document["cells"])
    end = ours(document).get("end")
    if isinstance(end, dict):
        end.update(head=head, cells=len(document["cells"]))
        chain["seal"] = fmt.seal_hash(head, end)


# -- the corpus ------------------------------------------------------------------------------------
# Each case: (edit of the parsed document, or None; edit of the JSON text, or None; what stderr must name).

PLACEHOLDER = "__CRAFTED__"


def put(where: Callable[[Document], tuple[Any, Any]]) -> Callable[[Document], None]:
    """Put the placeholder at a place (container, key), to be replaced in the text."""
    def edit(document: Document) -> None:
        container, key = where(document)
        container[key] = PLACEHOLDER
    return edit


def setter(where: Callable[[Document], tuple[Any, Any]], value: Any) -> Callable[[Document], None]:
    def edit(document: Document) -> None:
        container, key = where(document)
        container[key] = value
    return edit


AT_RESULT = put(lambda d: (first_call(d), "result"))
AT_DURATION = put(lambda d: (cell_ours(d), "duration"))
AT_COUNT = put(lambda d: (code_cell(d), "execution_count"))

TextEdit = Callable[[str], str]
Case = tuple[Callable[[Document], None] | None, TextEdit | None, str]


def replace_placeholder(replacement: str) -> TextEdit:
    return lambda text: text.replace(json.dumps(PLACEHOLDER), replacement, 1)


NOTEBOOK_CASES: dict[str, Case] = {
    "nested 100,000 deep": (AT_RESULT, replace_placeholder("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "nested 300 deep": (AT_RESULT, replace_placeholder("[" * 300 + "]" * 300), "nested too deeply"),
    "1e999999": (AT_DURATION, replace_placeholder("1e999999"), "overflows to infinity"),
    "100,000-digit integer": (AT_COUNT, replace_placeholder("9" * 100_000), "digits"),
    "NaN": (AT_DURATION, replace_placeholder("NaN"), "NaN"),
    "-Infinity": (put(lambda d: (ours(d)["chain"], "length")), replace_placeholder("-Infinity"), "-Infinity"),
    "duplicate key": (None, lambda text: '{"cells": [],' + text.lstrip()[1:], "twice"),
    "lone surrogate": (put(lambda d: (code_cell(d), "source")), replace_placeholder('"\\ud800"'), "surrogate"),
    "not UTF-8": (put(lambda d: (code_cell(d), "source")), replace_placeholder('"\udcff"'), "UTF-8"),
    "cells not a list": (setter(lambda d: (d, "cells"), {"0": {}}), None, "cells"),
    "metadata a string": (setter(lambda d: (d, "metadata"), "kernel_agent"), None, "metadata is a string"),
    "our metadata a list": (setter(lambda d: (d["metadata"], "kernel_agent"), []), None, "kernel_agent is a list"),
    "header a list": (setter(lambda d: (ours(d), "session"), ["x"]), None, "session is a list"),
    "format a string": (setter(lambda d: (ours(d), "format"), "1"), None, "format"),
    "chain a string": (setter(lambda d: (ours(d), "chain"), "head"), None, "chain is a string"),
    "chain length a string": (setter(lambda d: (ours(d)["chain"], "length"), "9"), None, "length is a string"),
    "definitions a dict": (setter(lambda d: (ours(d)["session"]["tools"], "definitions"), {"a": 1}), None,
                           "definitions is an object"),
    "input schema a string": (setter(lambda d: (ours(d)["session"]["tools"]["definitions"][0], "input_schema"),
                                     "object"), None, "input_schema is a string"),
    "sdk modules a list": (setter(lambda d: (ours(d)["session"]["tools"], "sdk_modules"), ["x"]), None,
                           "sdk_modules is a list"),
    "a cell not an object": (lambda d: d["cells"].append("cell"), None, "is a string, not an object"),
    "cell metadata a string": (setter(lambda d: (code_cell(d), "metadata"), "x"), None, "metadata is a string"),
    "cell's kernel_agent a list": (setter(lambda d: (code_cell(d)["metadata"], "kernel_agent"), [1]), None,
                                   "kernel_agent is a list"),
    "seq a string": (setter(lambda d: (cell_ours(d), "seq"), "3"), None, "seq is a string"),
    "seq a boolean": (setter(lambda d: (cell_ours(d), "seq"), True), None, "seq is a boolean"),
    "tool_calls a dict": (setter(lambda d: (cell_ours(d), "tool_calls"), {"0": {}}), None,
                          "tool_calls is an object"),
    "a tool call without a tool": (setter(lambda d: (cell_ours(d)["tool_calls"], 0), {"status": "ok"}), None,
                                   "no tool name"),
    "a call error a string": (setter(lambda d: (first_call(d), "error"), "bad"), None, "error is a string"),
    "outputs a dict": (setter(lambda d: (code_cell(d), "outputs"), {"a": 1}), None, "outputs is an object"),
    "an output a string": (setter(lambda d: (code_cell(d), "outputs"), ["text"]), None, "outputs[0] is a string"),
    "stream text a number": (setter(lambda d: (code_cell(d)["outputs"], 0),
                                    {"output_type": "stream", "name": "stdout", "text": 5}), None,
                             "text is an integer"),
    "traceback a string": (setter(lambda d: (code_cell(d, "1 / 0")["outputs"][0], "traceback"), "x"), None,
                           "traceback is a string"),
    "source a number": (setter(lambda d: (code_cell(d), "source"), 12), None, "source is an integer"),
    "side file ../": (setter(lambda d: (first_call(d), "result"),
                             {"$side_file": "../../../../etc/passwd", "bytes": 10}), None, "side-file reference"),
    "side file absolute": (setter(lambda d: (first_call(d), "result"), {"$side_file": "/etc/passwd", "bytes": 1}),
                           None, "side-file reference"),
}


def craft(genuine: Path, directory: Path, victim: Path, case: Case) -> Path:
    """A copy of the genuine recording (with its side files), crafted; its header names ``victim``."""
    edit_document, edit_text, _ = case
    notebook = copy_recording(genuine, directory)
    document = load(notebook)
    ours(document)["session"]["workspace"] = str(victim)
    original = copy.deepcopy(document)
    rechain(document)
    if edit_document is not None:
        edit_document(document)
    assert document != original or edit_text is not None
    text = json.dumps(document, indent=1)
    if edit_text is not None:
        text = edit_text(text)
        assert PLACEHOLDER not in text
    notebook.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return notebook


def kernel_agent(*args: str, in_process: bool = True) -> subprocess.CompletedProcess[str]:
    """The command line on ``args``: its real entry point, in this process (the cost of a new interpreter per case
    was most of this file's time); :func:`test_the_command_line_refuses_in_its_own_process` runs it as a program."""
    if not in_process:
        return subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", *args], capture_output=True, text=True,
                              check=False, timeout=300)
    from kernel_agent.cli.main import main

    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()  # an async test: the command runs its own event loop, in a thread of its own
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(kernel_agent, *args).result()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return subprocess.CompletedProcess(list(args), status, out.getvalue(), err.getvalue())


def assert_refused(run: subprocess.CompletedProcess[str], command: str, named: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"kernel-agent {command}: error: ") and named in run.stderr, run.stderr


@pytest.mark.parametrize("command", ["audit", "replay"])
@pytest.mark.parametrize("name", list(NOTEBOOK_CASES))
def test_crafted_notebook_on_the_command_line(command: str, name: str, genuine: Path, tmp_path: Path,
                                             victim: Path) -> None:
    case = NOTEBOOK_CASES[name]
    notebook = craft(genuine, tmp_path, victim, case)
    before = snapshot(victim)
    assert_refused(kernel_agent(command, str(notebook)), command, case[2])
    assert snapshot(victim) == before


@pytest.mark.parametrize("command", ["audit", "replay"])
@pytest.mark.parametrize("name", list(NOTEBOOK_CASES)[:3])
def test_the_command_line_refuses_in_its_own_process(command: str, name: str, genuine: Path, tmp_path: Path,
                                                     victim: Path) -> None:
    case = NOTEBOOK_CASES[name]
    notebook = craft(genuine, tmp_path, victim, case)
    before = snapshot(victim)
    assert_refused(kernel_agent(command, str(notebook), in_process=False), command, case[2])
    assert snapshot(victim) == before


@pytest.mark.parametrize("name", list(NOTEBOOK_CASES))
async def test_crafted_notebook_is_not_resumed(name: str, genuine: Path, tmp_path: Path, victim: Path) -> None:
    notebook = craft(genuine, tmp_path, victim, NOTEBOOK_CASES[name])
    before = snapshot(victim)
    with pytest.raises(RecordingError, match=re.escape(NOTEBOOK_CASES[name][2])):
        await Session.resume(notebook, tools=[blob])
    assert snapshot(victim) == before


# -- files that are not what they claim --------------------------------------------------------------


def huge(notebook: Path) -> str:
    with notebook.open("r+b") as handle:
        handle.truncate(300 * 1024**2)  # sparse: over the 256 MiB cap without writing it
    return "over the limit"


def link(notebook: Path) -> str:
    real = notebook.with_name("real.ipynb")
    notebook.rename(real)
    notebook.symlink_to(real)
    return "symbolic link"


def fifo(notebook: Path) -> str:
    notebook.unlink()
    os.mkfifo(notebook)
    return "not a regular file"


def linked_side_files(notebook: Path) -> str:
    """The side-file directory replaced by a link to a directory holding the same (valid) files."""
    directory = side_files_dir(notebook)
    elsewhere = notebook.parent / "elsewhere"
    directory.rename(elsewhere)
    directory.symlink_to(elsewhere)
    return "side file"


def linked_side_file(notebook: Path) -> str:
    directory = side_files_dir(notebook)
    for path in directory.iterdir():
        path.rename(notebook.parent / path.name)
        path.symlink_to(notebook.parent / path.name)
    return "symbolic link"


FILE_CASES: dict[str, tuple[Callable[[Path], str], tuple[str, ...]]] = {
    "over the size cap": (huge, ("audit", "replay")),
    "a symlink": (link, ("audit", "replay")),
    "a FIFO": (fifo, ("audit", "replay")),
    "side-file directory a symlink": (linked_side_files, ("replay",)),
    "side file a symlink": (linked_side_file, ("replay",)),
}


@pytest.mark.parametrize("name", list(FILE_CASES))
async def test_crafted_files(name: str, genuine: Path, tmp_path: Path, victim: Path) -> None:
    make, commands = FILE_CASES[name]
    notebook = craft(genuine, tmp_path, victim, (lambda d: None, None, ""))
    named = make(notebook)
    before = snapshot(victim)
    for command in commands:
        assert_refused(kernel_agent(command, str(notebook)), command, named)
    with pytest.raises(RecordingError, match=re.escape(named)):
        await Session.resume(notebook, tools=[blob])
    assert snapshot(victim) == before


# -- the header's workspace is never used ---------------------------------------------------------------


async def test_resume_never_uses_the_header_workspace(genuine: Path, tmp_path: Path, victim: Path) -> None:
    """A consistent chain (a forger can compute it) naming a root-only workspace: resume works elsewhere."""
    notebook = copy_recording(genuine, tmp_path)
    document = load(notebook)
    ours(document)["session"]["workspace"] = str(victim)
    rechain(document)
    notebook.write_text(json.dumps(document, indent=1))
    before = snapshot(victim)
    session = await Session.resume(notebook, tools=[blob])
    try:
        assert session.workspace != victim
        assert (await session.execute("print(open('planted.txt').read())")).stdout.startswith("written by")
    finally:
        await session.close()
    assert snapshot(victim) == before
    mine = tmp_path / "given"
    mine.mkdir()
    session = await Session.resume(notebook, tools=[blob], workspace=mine)
    try:
        assert session.workspace == mine.resolve()
    finally:
        await session.close()
    assert (mine / "planted.txt").is_file()
    assert snapshot(victim) == before


# -- journals for recover ---------------------------------------------------------------------------------

JournalEdit = Callable[[list[str]], list[str]]


def line_edit(index: int, change: Callable[[Document], None]) -> JournalEdit:
    def edit(lines: list[str]) -> list[str]:
        event = json.loads(lines[index])
        change(event)
        return [*lines[:index], json.dumps(event), *lines[index + 1:]]
    return edit


def raw_line(index: int, text: str) -> JournalEdit:
    return lambda lines: [*lines[:index], text, *lines[index + 1:]]


def cell_event(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if '"tool_calls"' in line)


JOURNAL_CASES: dict[str, tuple[JournalEdit, str]] = {
    "nested 100,000 deep": (raw_line(1, '{"event": "cell", "cell": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                            "nested too deeply"),
    "NaN": (raw_line(1, '{"event": "cell", "cell": {"cell_type": "code", "execution_count": NaN}}'), "NaN"),
    "1e999999": (raw_line(1, '{"event": "cell", "cell": {"cell_type": "code", "execution_count": 1e999999}}'),
                 "infinity"),
    "100,000-digit integer": (raw_line(1, '{"event": "cell", "cell": {"execution_count": ' + "7" * 100_000 + "}}"),
                              "digits"),
    "header metadata a string": (line_edit(0, lambda e: e.update(metadata="x")), "metadata is a string"),
    "header tools a list": (line_edit(0, lambda e: e["metadata"].update(tools=[])), "tools is a list"),
    "a cell a string": (line_edit(1, lambda e: e.update(cell="x")), "is a string"),
    "cell metadata a string": (line_edit(1, lambda e: e["cell"].update(metadata="x")), "metadata is a string"),
    "event name a number": (line_edit(1, lambda e: e.update(event=3)), "not a kernel-agent journal event"),
    "end metadata a list": (lambda lines: [*lines, json.dumps({"event": "end", "metadata": []})],
                            "metadata is a list"),
    "duplicate key": (raw_line(1, '{"event": "cell", "event": "header"}'), "twice"),
    "tool_calls a dict": (lambda lines: line_edit(cell_event(lines), lambda e: e["cell"]["metadata"]["kernel_agent"]
                                                  .update(tool_calls={}))(lines), "tool_calls is an object"),
}


@pytest.mark.parametrize("name", list(JOURNAL_CASES))
def test_crafted_journal_is_not_recovered(name: str, genuine: Path, tmp_path: Path) -> None:
    edit, named = JOURNAL_CASES[name]
    journal = tmp_path / "s.journal.jsonl"
    journal.write_text("\n".join(edit(journal_path_for(genuine).read_text().splitlines())) + "\n")
    out = tmp_path / "out.ipynb"
    assert_refused(kernel_agent("recover", str(journal), "--out", str(out)), "recover", named)
    assert not out.exists()


@pytest.mark.parametrize("make", [huge, link, fifo])
def test_crafted_journal_files(make: Callable[[Path], str], genuine: Path, tmp_path: Path) -> None:
    journal = tmp_path / "s.journal.jsonl"
    shutil.copy(journal_path_for(genuine), journal)
    named = make(journal)
    out = tmp_path / "out.ipynb"
    assert_refused(kernel_agent("recover", str(journal), "--out", str(out)), "recover", named)
    assert not out.exists()
