"""Continuing a recorded agent run: the model gets the recorded conversation, the kernel its state, no tool runs
twice, the record goes on in one chain; a crafted record is refused by name before any kernel starts."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Agent, ScriptedModel, Session, StopReason, tool
from kernel_agent.agent.resume import RunRecordError, load_agent_run
from kernel_agent.errors import RecordingError
from kernel_agent.models.base import (
    AssistantTurn,
    CodeRequest,
    CodeTool,
    ModelReply,
    Observation,
    ObservationTurn,
    Turn,
    UserTurn,
)
from kernel_agent.record import format as fmt
from kernel_agent.record.journal import Journal, journal_path_for
from kernel_agent.safe_fs import open_dir
from kernel_agent.verify.audit import audit_notebook

TASK = "How warm is it in Paris?"
STEP_1 = "w = tools.weather('Paris')\nimport random\na = random.random()\nprint('temperature:', w['temp_c'], a)"
CALLS: list[str] = []


@tool
def weather(city: str) -> dict[str, Any]:
    """The current weather of a city (each real call is counted)."""
    CALLS.append(city)
    return {"city": city, "temp_c": 21}


class SeeingModel(ScriptedModel):
    """The scripted model, keeping every conversation it was sent."""

    def __init__(self, replies: list[Any]) -> None:
        super().__init__(replies)
        self.seen: list[list[Turn]] = []

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        self.seen.append(list(conversation))
        return await super().complete(system, conversation, tool)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run stopped by its step limit after one step: (its notebook, the observation its model got)."""
    place = tmp_path_factory.mktemp("agent-run")
    notebook = place / "run.ipynb"
    agent = Agent(ScriptedModel([{"text": "Weather first.", "code": STEP_1}]), tools=[weather], notebook=notebook,
                  max_steps=1)
    CALLS.clear()
    result = asyncio.run(agent.run(TASK))
    assert result.stop_reason is StopReason.MAX_STEPS and CALLS == ["Paris"]
    return notebook, result.steps[0].observation


def fresh_copy(notebook: Path, into: Path) -> Path:
    """The record with its journal, so each test continues its own copy."""
    for source in (notebook, journal_path_for(notebook)):
        (into / source.name).write_bytes(source.read_bytes())
    return into / notebook.name


async def test_a_resumed_run_continues_the_conversation_and_the_kernel(first_run: tuple[Path, str],
                                                                      tmp_path: Path) -> None:
    notebook = fresh_copy(first_run[0], tmp_path)
    observed = first_run[1]
    recorded = [UserTurn(TASK),
                AssistantTurn(ModelReply(text="Weather first.", code=(CodeRequest("script-1", STEP_1),))),
                ObservationTurn((Observation("script-1", observed),))]
    CALLS.clear()

    model = SeeingModel(["final_answer(f\"{w['temp_c']} {a}\")"])
    result = await Agent(model, tools=[weather], max_steps=1).resume(notebook)
    assert model.seen[0] == recorded  # the model's first request holds the earlier conversation
    assert result.stop_reason is StopReason.FINAL_ANSWER
    assert result.answer == "21 " + observed.split()[-1]  # kernel variables are back, the random value the same
    assert CALLS == []  # the recorded call was answered from the recording
    assert result.resumed_after_step == 1 and result.resume_differences == []
    assert [step.index for step in result.steps] == [2] and result.notebook == notebook

    # Answered: continuing needs a follow-up task, which goes after the answer.
    with pytest.raises(RunRecordError, match="already answered; give a follow-up task"):
        await Agent(ScriptedModel([]), tools=[weather]).resume(notebook)
    model = SeeingModel(["final_answer(w['temp_c'] * 2)"])
    again = await Agent(model, tools=[weather]).resume(notebook, "And twice that?")
    answer_turns = model.seen[0][3:]
    assert isinstance(answer_turns[0], AssistantTurn) and answer_turns[0].reply.code[0].call_id == "script-1"
    assert answer_turns[2] == UserTurn("And twice that?") and len(model.seen[0]) == 6
    assert again.answer == 42 and again.resumed_after_step == 2 and CALLS == []

    cells = json.loads(notebook.read_text())["cells"]
    kinds = [cell["metadata"][fmt.METADATA_KEY]["kind"] for cell in cells]
    assert kinds == ["setup", "task", "message", "code", "resumed", "code", "resumed", "task", "code"]
    assert [cell["metadata"][fmt.METADATA_KEY].get("step") for cell in cells if cell["cell_type"] == "code"][1:] \
        == [1, 2, 3]
    assert audit_notebook(notebook).verdict == "intact"  # one chain across both resumes


def edited(notebook: Path, into: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the record with ``edit`` applied to its JSON (its chain left as it was)."""
    document = copy.deepcopy(json.loads(notebook.read_text()))
    edit(document)
    path = into / "crafted.ipynb"
    path.write_text(json.dumps(document))
    return path


def code_cell(document: dict[str, Any]) -> dict[str, Any]:
    cell: dict[str, Any] = next(c["metadata"][fmt.METADATA_KEY] for c in document["cells"]
                                if c["cell_type"] == "code" and c["metadata"][fmt.METADATA_KEY]["kind"] == "code")
    return cell


def message_cell(document: dict[str, Any]) -> dict[str, Any]:
    cell: dict[str, Any] = next(c["metadata"][fmt.METADATA_KEY] for c in document["cells"]
                                if c["metadata"][fmt.METADATA_KEY]["kind"] == "message")
    return cell


CRAFTED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "long call id": (lambda d: code_cell(d).update(call_id="x" * 500), "call_id must be 1 to 128"),
    "call id with a newline": (lambda d: code_cell(d).update(call_id="id\nx"), "call_id must be 1 to 128"),
    "call id not text": (lambda d: code_cell(d).update(call_id=7), "call_id must be 1 to 128"),
    "unknown channel": (lambda d: code_cell(d).update(code_via="shell"), "code_via must be one of tool, fenced"),
    "step as text": (lambda d: code_cell(d).update(step="1"), "step must be an int from 1"),
    "step as a bool": (lambda d: code_cell(d).update(step=True), "step must be an int from 1"),
    "step out of range": (lambda d: code_cell(d).update(step=10**9), "step must be an int from 1"),
    "observation not text": (lambda d: code_cell(d).update(observation={"text": 5}), "observation.text must be"),
    "observation missing": (lambda d: code_cell(d).pop("observation"), "observation.text must be"),
    "huge observation": (lambda d: code_cell(d).update(observation={"text": "x" * 1_000_001}),
                         "observation.text must be text of at most 1,000,000"),
    "images record not a list": (lambda d: code_cell(d).update(observation={"text": "", "images": "x"}),
                                 "observation.images must be a list of at most 100"),
    "malformed not a list": (lambda d: message_cell(d).update(malformed="x"), "malformed must be a list"),
    "malformed pair": (lambda d: message_cell(d).update(malformed=[["id", 5]]), "not a [call_id, text] pair"),
    "message step": (lambda d: message_cell(d).update(step=-3), "step must be an int from 1"),
    "unknown kind": (lambda d: code_cell(d).update(kind="shell"), "kind 'shell' is not one an agent run records"),
    "no task": (lambda d: d["cells"].pop(1), "no task cell"),
    "not an agent run": (lambda d: d["metadata"][fmt.METADATA_KEY]["session"].pop("agent"),
                         "not a recorded agent run"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
async def test_a_crafted_record_is_refused_by_name_before_any_kernel(first_run: tuple[Path, str], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    case: str) -> None:
    edit, message = CRAFTED[case]
    crafted = edited(first_run[0], tmp_path, edit)
    monkeypatch.setattr(Session, "start", _no_kernel)
    with pytest.raises(RunRecordError, match=re.escape(message)):
        await Agent(ScriptedModel([]), tools=[weather]).run(resume=crafted)


async def test_records_in_other_states_are_refused_before_any_kernel(first_run: tuple[Path, str], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that detached (its kernel may still run), a record a live session still writes, one whose host
    stopped between writing the journal and the notebook, and a record changed without its chain: each a
    RecordingError saying what to do."""
    monkeypatch.setattr(Session, "start", _no_kernel)

    def detach(document: dict[str, Any]) -> None:
        document["metadata"][fmt.METADATA_KEY].pop("end")
        document["metadata"][fmt.METADATA_KEY]["chain"].pop("seal")
        document["cells"].append({"cell_type": "markdown", "source": "*Detached.*", "metadata": {
            fmt.METADATA_KEY: {"kind": "detached", "seq": len(document["cells"])}}})

    rechained = _rechain_unsealed(edited(first_run[0], tmp_path, detach))  # consistent: only its state is wrong
    with pytest.raises(RecordingError, match="detached from a kernel that may still be running"):
        await Agent(ScriptedModel([]), tools=[weather]).run(resume=rechained)

    live = fresh_copy(first_run[0], tmp_path)
    directory = open_dir(tmp_path)
    writer = Journal(journal_path_for(live), dir_fd=directory, continue_existing=True)  # a live session's lock
    try:
        with pytest.raises(RecordingError, match="being written by another session"):
            await Agent(ScriptedModel([]), tools=[weather]).run(resume=live)
    finally:
        writer.close()

    def cut_short(document: dict[str, Any]) -> None:  # the host died between the journal's fsync and the notebook
        document["metadata"][fmt.METADATA_KEY].pop("end")
        document["metadata"][fmt.METADATA_KEY]["chain"].pop("seal")
        document["cells"].pop()

    half = _rechain_unsealed(edited(first_run[0], tmp_path, cut_short))
    journal_path_for(half).write_bytes(journal_path_for(first_run[0]).read_bytes())  # one cell more
    with pytest.raises(RecordingError, match=r"its journal holds 4 cells where the notebook holds 3.*recover"):
        await Agent(ScriptedModel([]), tools=[weather]).run("Go on.", resume=half)

    tampered = edited(first_run[0], tmp_path, lambda d: code_cell(d).update(call_id="call_forged"))
    with pytest.raises(RecordingError, match="does not match its recorded hash"):
        await Agent(ScriptedModel([]), tools=[weather]).run(resume=tampered)


def _rechain_unsealed(path: Path) -> Path:
    """The unsealed record's chain recomputed, as anyone can without the keys."""
    document = json.loads(path.read_text())
    ours = document["metadata"][fmt.METADATA_KEY]
    head = fmt.genesis_hash(ours["session"])
    for cell in document["cells"]:
        head = fmt.cell_hash(head, cell)
        cell["metadata"][fmt.METADATA_KEY]["hash"] = head
    ours["chain"]["head"], ours["chain"]["length"] = head, len(document["cells"])
    path.write_text(json.dumps(document))
    return path


async def _no_kernel(self: Session) -> None:
    raise AssertionError("a kernel was started for a record that cannot be continued")


async def test_an_interrupted_run_goes_on_from_the_interrupted_step(tmp_path: Path) -> None:
    """Ctrl-C while a step's code ran: the cell is recorded with its output so far (status cancelled), so the
    resumed model is given that step with what it printed and that it was interrupted; the state is back, and the
    interrupted cell stopped again on the rebuild (it does not spin until the cell timeout)."""
    notebook = tmp_path / "run.ipynb"
    running = asyncio.Event()  # set by the cell itself (its progress event), so it is surely running
    spin = "print('spinning', flush=True)\nprogress('spinning')\nimport time\nwhile True: time.sleep(0.05)"
    agent = Agent(ScriptedModel([{"text": "Set x.", "code": "x = 41"}, {"text": "Now spin.", "code": spin}]),
                  notebook=notebook, on_event=lambda e: running.set() if e.kind == "progress" else None)
    task = asyncio.create_task(agent.run("Count"))
    await asyncio.wait_for(running.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    model = SeeingModel(["final_answer(x + 1)"])
    result = await Agent(model, cell_timeout=600).resume(notebook)
    assert [type(turn).__name__ for turn in model.seen[0]] == ["UserTurn", *["AssistantTurn", "ObservationTurn"] * 2]
    assert model.seen[0][1] == AssistantTurn(ModelReply(text="Set x.", code=(CodeRequest("script-1", "x = 41"),)))
    interrupted = model.seen[0][4]
    assert isinstance(interrupted, ObservationTurn)
    assert interrupted.observations[0].is_error and "spinning" in interrupted.observations[0].text
    assert "KeyboardInterrupt" in interrupted.observations[0].text
    assert result.answer == 42 and result.resumed_after_step == 2 and [s.index for s in result.steps] == [3]
    assert audit_notebook(notebook).verdict == "intact"


async def test_the_resumed_model_sees_the_plots_it_saw(tmp_path: Path) -> None:
    """An observation that sent a plot gets it back on resume, rebuilt from the recorded output (the bytes are not
    in the observation's record), equal to what the first run sent."""
    notebook = tmp_path / "plot.ipynb"
    plot = ("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9, 16])\nplt.show()")
    first = await Agent(ScriptedModel([plot]), notebook=notebook, max_steps=1).run("Plot the squares")
    sent = first.steps[0].executions[0].images
    assert len(sent) == 1

    model = SeeingModel(["final_answer('seen')"])
    await Agent(model).resume(notebook)
    observation = model.seen[0][2]
    assert isinstance(observation, ObservationTurn) and observation.observations[0].images == sent


def test_an_older_record_without_steps_on_messages_is_read_the_same(first_run: tuple[Path, str],
                                                                     tmp_path: Path) -> None:
    """Records from before messages carried their step and notes had their own kind: the loop's notes were
    messages, and a cell interrupted while it ran was not recorded. The step it was in is dropped (the model is
    asked for it again), even with session events after the note."""
    def older(document: dict[str, Any]) -> None:
        message_cell(document).pop("step")
        for text in ("Now spin.", "*Run interrupted in step 2 while this code was running (its output is not "
                     "recorded):*\n\n```python\nwhile True: pass\n```"):
            document["cells"].append({"cell_type": "markdown", "source": text,
                                      "metadata": {fmt.METADATA_KEY: {"kind": "message"}}})
        document["cells"].append({"cell_type": "markdown", "source": "*Resumed.*",
                                  "metadata": {fmt.METADATA_KEY: {"kind": "resumed"}}})

    run = load_agent_run(edited(first_run[0], tmp_path, older))
    assert [type(turn).__name__ for turn in run.conversation] == ["UserTurn", "AssistantTurn", "ObservationTurn"]
    assert run.conversation[1] == AssistantTurn(ModelReply(text="Weather first.",
                                                           code=(CodeRequest("script-1", STEP_1),)))
    assert (run.task, run.steps, run.answered) == (TASK, 1, False)
