"""Reply cache files, journals and spec files read as hostile input: named errors, nothing lost, no link followed.

No kernel is needed: these attack the files an experiment reads back
(a cache shipped with a repository, a journal edited or cut short by a kill).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kernel_agent.errors import ExperimentError, ReplyCacheError, UnsafePathError
from kernel_agent.experiment import Configuration, Experiment, ExperimentResults, ReplyCache, Task
from kernel_agent.experiment.cache import MAX_ENTRY_BYTES, conversation_key
from kernel_agent.experiment.journal import ExperimentDirectory, read_journal, row_json
from kernel_agent.experiment.runs import put_files
from kernel_agent.models.base import (
    CODE_TOOL,
    AssistantTurn,
    CodeRequest,
    ModelReply,
    Observation,
    ObservationTurn,
    Usage,
    UserTurn,
)
from kernel_agent.models.images import ImagePart

KEY = "ab" + "0" * 62


def a_reply() -> ModelReply:
    return ModelReply(text="Let me look.", code=(CodeRequest("call-1", "print(1)"),),
                      usage=Usage(input_tokens=10, output_tokens=3), stop_reason="tool_use", model="m",
                      malformed=(("call-2", "{not json"),))


def entry_path(cache: ReplyCache, key: str = KEY) -> Path:
    return cache.directory / key[:2] / f"{key}.json"


def test_a_reply_round_trips_and_the_file_is_the_key(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "cache")
    assert cache.get(KEY) is None
    cache.put(KEY, a_reply())
    assert cache.get(KEY) == a_reply() and len(cache) == 1
    assert oct(entry_path(cache).stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="64 lowercase hex"):
        cache.get("../../etc/passwd")


def test_the_key_is_the_exact_conversation() -> None:
    image = ImagePart("image/png", "iVBORw0KGgo=", 1, 1)
    turns = [UserTurn("task"), AssistantTurn(a_reply()),
             ObservationTurn((Observation("call-1", "1", images=(image,)),))]
    base = {"model": "scripted:inline", "sample": ("c", "t", 0), "system": "sys", "tool": CODE_TOOL}
    key = conversation_key(**base, conversation=turns)  # type: ignore[arg-type]
    assert key == conversation_key(**base, conversation=list(turns))  # type: ignore[arg-type]
    changed = [
        {**base, "sample": ("c", "t", 1)}, {**base, "sample": ("d", "t", 0)}, {**base, "system": "sys2"},
        {**base, "model": "anthropic:x"},
    ]
    assert all(conversation_key(**other, conversation=turns) != key for other in changed)  # type: ignore[arg-type]
    other_image = ImagePart("image/png", "iVBORw0KGgA=", 1, 1)
    variants = [
        [UserTurn("task!"), *turns[1:]],
        [turns[0], AssistantTurn(ModelReply(text="Let me look.", code=(CodeRequest("call-9", "print(1)"),))),
         turns[2]],
        [*turns[:2], ObservationTurn((Observation("call-1", "1", images=(other_image,)),))],
        [*turns[:2], ObservationTurn((Observation("call-1", "1", is_error=True, images=(image,)),))],
    ]
    assert all(conversation_key(**base, conversation=v) != key for v in variants)  # type: ignore[arg-type]


@pytest.mark.parametrize(("content", "reason"), [
    (b'{"format": "kernel-agent-reply-cache/1", "key": "KEY", "reply": {"text": NaN}}', "NaN"),
    (b'{"format": "kernel-agent-reply-cache/1", "format": "x"}', "twice"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b"\xff\xfe", "UTF-8"),
    (b'{"format": "kernel-agent-reply-cache/1", "key": "KEY", "reply": {"text": 1, "code": [], "usage": {},'
     b' "stop_reason": "", "model": "", "malformed": []}}', "reply.text"),
    (b'{"format": "kernel-agent-reply-cache/1", "key": "KEY", "reply": {"text": "", "code": [], "usage":'
     b' {"input_tokens": -5}, "stop_reason": "", "model": "", "malformed": []}}', "input_tokens"),
    (b'{"format": "kernel-agent-reply-cache/1", "key": "KEY", "reply": {"text": "", "code": [{"call_id": "x",'
     b' "code": "", "via": "shell"}], "usage": {}, "stop_reason": "", "model": "", "malformed": []}}', "via"),
    (b'{"format": "kernel-agent-reply-cache/1", "key": "' + b"cd" * 32 + b'", "reply": {"text": "", "code": [],'
     b' "usage": {}, "stop_reason": "", "model": "", "malformed": []}}', "another conversation"),
    (b'{"format": "kernel-agent-reply-cache/1", "key": "KEY", "reply": {"text": "", "code": [], "usage": {},'
     b' "stop_reason": "", "model": "", "malformed": [], "run": "rm -rf /"}}', "Extra inputs"),
])
def test_a_hostile_cache_file_is_a_named_error_and_is_left_alone(tmp_path: Path, content: bytes, reason: str) -> None:
    cache = ReplyCache(tmp_path / "cache")
    cache.put(KEY, a_reply())
    data = content.replace(b"KEY", KEY.encode())
    entry_path(cache).write_bytes(data)
    with pytest.raises(ReplyCacheError, match=reason):
        cache.get(KEY)
    assert entry_path(cache).read_bytes() == data


def test_a_cache_file_past_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "cache")
    cache.put(KEY, a_reply())
    with entry_path(cache).open("r+b") as file:
        file.truncate(MAX_ENTRY_BYTES + 1)
    with pytest.raises(ReplyCacheError, match="over the limit"):
        cache.get(KEY)


def test_links_and_special_files_in_a_cache_are_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    cache = ReplyCache(tmp_path / "cache")
    (cache.directory / KEY[:2]).mkdir(parents=True)
    entry_path(cache).symlink_to(secret)
    with pytest.raises(ReplyCacheError, match="cannot open"):
        cache.get(KEY)
    entry_path(cache).unlink()
    os.mkfifo(entry_path(cache))  # a FIFO would block a plain open forever
    with pytest.raises(ReplyCacheError, match="not a plain file"):
        cache.get(KEY)
    entry_path(cache).unlink()
    (cache.directory / KEY[:2]).rmdir()
    (cache.directory / KEY[:2]).symlink_to(tmp_path)
    with pytest.raises(ReplyCacheError, match="not a directory the host can use"):
        cache.get(KEY)
    with pytest.raises(UnsafePathError):
        cache.put(KEY, a_reply())  # a write never goes through the link either
    assert secret.read_text() == "{}" and not (tmp_path / f"{KEY}.json").exists()


# -- the journal and the spec --------------------------------------------------------------------------------------


def a_row(repeat: int = 0, **changes: Any) -> dict[str, Any]:
    row = {"configuration": "c", "task": "t", "repeat": repeat, "success": True, "answer": "1", "checker_error": "",
           "stop_reason": "final_answer", "error": "", "steps": 1, "cells": 1, "tool_calls": 0, "input_tokens": 5,
           "output_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 6,
           "cost": float("nan"), "seconds": 0.5, "model_seconds": 0.0, "model_calls": 1, "cached_replies": 0,
           "notebook": f"notebooks/c/t/repeat-{repeat}.ipynb", "started_at": "2026-01-01T00:00:00+00:00"}
    return {**row, **changes}


def a_spec_directory(tmp_path: Path, repeats: int = 3) -> ExperimentDirectory:
    place = ExperimentDirectory(tmp_path / "exp")
    experiment = Experiment("e", [Task("t", "Do it.", expected=1)], [Configuration("c", "scripted:x.py")],
                            repeats=repeats, directory=place.path, cache=False)
    place.prepare("e", experiment.spec(), start_over=False)
    return place


def test_a_torn_last_line_is_dropped_and_cut_off_so_the_next_append_is_clean(tmp_path: Path) -> None:
    place = a_spec_directory(tmp_path)
    place.append(a_row(0))
    with place.journal.open("ab") as file:
        file.write(row_json(a_row(1))[:40])  # killed in the middle of the append
    assert list(place.finished()) == [("c", "t", 0)]
    place.append(a_row(2))
    assert list(read_journal(place.journal)) == [("c", "t", 0), ("c", "t", 2)]
    table = ExperimentResults.load(place.path).table
    assert list(table["repeat"]) == [0, 2] and table["cost"].isna().all()


@pytest.mark.parametrize(("line", "reason"), [
    (b"{not json}", "not valid JSON"),
    (json.dumps(a_row(1, cost=None)).replace("null", "NaN").encode(), "NaN"),
    (json.dumps(a_row(1, cost=None, notebook="../../../etc/passwd")).encode(), "notebook"),
    (json.dumps(a_row(1, cost=None, notebook="/root/x.ipynb")).encode(), "notebook"),
    (json.dumps(a_row(1, cost=None, configuration="../c")).encode(), "configuration"),
    (json.dumps(a_row(1, cost=None, success="yes")).encode(), "success"),
    (json.dumps(a_row(1, cost=None, steps=1.5)).encode(), "steps"),
    (json.dumps(a_row(1, cost=None, steps=10**1200)).encode(), "integer of"),
    (json.dumps(a_row(1, cost=None, answer="x" * 30_000)).encode(), "answer"),
    (json.dumps({**a_row(1, cost=None), "extra": 1}).encode(), "extra"),
    (json.dumps(a_row(0, cost=None)).encode(), "repeats the run"),
    (b"[" * 100 + b"]" * 100, "nested too deeply"),
    (b'{"a": "' + b"x" * 300_000 + b'"}', "over the limit"),
])
def test_a_bad_journal_line_is_a_named_error_and_changes_nothing(tmp_path: Path, line: bytes, reason: str) -> None:
    place = a_spec_directory(tmp_path)
    place.append(a_row(0))
    with place.journal.open("ab") as file:
        file.write(line + b"\n")
    before = place.journal.read_bytes()
    with pytest.raises(ExperimentError, match=reason):
        place.finished()
    with pytest.raises(ExperimentError, match=reason):
        ExperimentResults.load(place.path)
    assert place.journal.read_bytes() == before


def test_a_journal_that_is_a_link_or_a_fifo_is_refused(tmp_path: Path) -> None:
    place = a_spec_directory(tmp_path)
    target = tmp_path / "elsewhere.jsonl"
    target.write_bytes(row_json(a_row(0)))
    place.journal.symlink_to(target)
    with pytest.raises(ExperimentError, match="cannot be read"):
        place.finished()
    place.journal.unlink()
    os.mkfifo(place.journal)
    with pytest.raises(ExperimentError, match="not a regular file"):
        place.finished()


def test_rows_of_runs_the_spec_does_not_have_are_refused(tmp_path: Path) -> None:
    place = a_spec_directory(tmp_path, repeats=1)
    place.append(a_row(0))
    place.append(a_row(5))
    experiment = Experiment("e", [Task("t", "Do it.", expected=1)], [Configuration("c", "scripted:x.py")],
                            repeats=1, directory=place.path, cache=False)
    with pytest.raises(ExperimentError, match="does not have"):
        experiment.run_sync()


def test_a_changed_spec_is_refused_unless_starting_over(tmp_path: Path) -> None:
    place = a_spec_directory(tmp_path)
    place.append(a_row(0))
    (place.path / "notebooks").mkdir()
    changed = Experiment("e", [Task("t", "Do it differently.", expected=1)], [Configuration("c", "scripted:x.py")],
                         repeats=3, directory=place.path, cache=False)
    with pytest.raises(ExperimentError, match=r"tasks\[0\]\.prompt: \"Do it.\" -> \"Do it differently.\""):
        place.prepare("e", changed.spec(), start_over=False)
    assert len(read_journal(place.journal)) == 1
    place.prepare("e", changed.spec(), start_over=True)
    assert not place.journal.exists()
    (previous,) = (place.path / "previous").iterdir()
    assert len(read_journal(previous / "runs.jsonl")) == 1 and (previous / "notebooks").is_dir()
    assert place.read_spec() == {"format": "kernel-agent-experiment/1", "name": "e", "spec": changed.spec()}


@pytest.mark.parametrize("content", [b"{", b'{"format": "other"}', b"[]", b'{"format": "kernel-agent-experiment/1"}'])
def test_an_unusable_spec_file_is_a_named_error(tmp_path: Path, content: bytes) -> None:
    place = a_spec_directory(tmp_path)
    (place.path / "experiment.json").write_bytes(content)
    with pytest.raises(ExperimentError):
        ExperimentResults.load(place.path)
    assert (place.path / "experiment.json").read_bytes() == content


@pytest.mark.parametrize("name", ["", "..", ".hidden", "a/b", "x" * 101, "a b", None])
def test_names_that_cannot_be_directories_are_refused(name: Any) -> None:
    with pytest.raises(ExperimentError, match="cannot be used"):
        Task(name, "Do it.")
    with pytest.raises(ExperimentError, match="cannot be used"):
        Configuration(name, "scripted:x.py")


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b", "", ".", "a//b/..", "x\0y"])
def test_input_file_names_outside_the_workspace_are_refused(name: str) -> None:
    with pytest.raises(ExperimentError):
        Task("t", "Do it.", files={name: "x"})


def test_input_files_never_follow_a_link_planted_in_the_workspace(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "workspace", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (workspace / "data").symlink_to(outside)
    (workspace / "notes.txt").symlink_to(outside / "notes.txt")
    with pytest.raises(UnsafePathError):
        put_files(workspace, {"data/x.csv": "1,2"})
    with pytest.raises(UnsafePathError):
        put_files(workspace, {"notes.txt": "hello"})
    assert list(outside.iterdir()) == []
    put_files(workspace, {"in/deep/x.csv": b"1,2", "top.txt": "t"})
    assert (workspace / "in" / "deep" / "x.csv").read_bytes() == b"1,2" and (workspace / "top.txt").read_text() == "t"


def test_one_experiment_at_a_time_in_a_directory(tmp_path: Path) -> None:
    place = a_spec_directory(tmp_path)
    held = place.lock()
    try:
        experiment = Experiment("e", [Task("t", "Do it.", expected=1)], [Configuration("c", "scripted:x.py")],
                                repeats=3, directory=place.path, cache=False)
        with pytest.raises(ExperimentError, match="another process is running"):
            experiment.run_sync()
    finally:
        os.close(held)
    os.close(place.lock())  # released: the next one gets it


def test_a_scripted_model_cannot_be_shared_between_runs() -> None:
    from kernel_agent import ScriptedModel

    with pytest.raises(ExperimentError, match="give a factory"):
        Configuration("c", ScriptedModel(["final_answer(1)"]))
