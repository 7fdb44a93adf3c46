"""Continue a recorded agent run: its conversation rebuilt from the notebook, its kernel state from the cells.

``Agent.run(task, resume=NOTEBOOK)`` (and ``kernel-agent run --resume``)
read the notebook here first, as hostile input: every field this module
uses is type- and size-checked, and a notebook that is not a recorded agent
run that can go on raises a :class:`RunRecordError` (a RecordingError)
before any kernel starts. Then :meth:`Session.resume
<kernel_agent.Session.resume>` rebuilds the kernel's state (recorded
cells run again, tool calls answered from the recording, the recorded seed)
and recording goes on in the same notebook and chain.

The conversation is rebuilt from the record alone: the task cells
(``UserTurn``), the model's messages and each code cell's step, call id,
channel and observation (``AssistantTurn`` with its ``CodeRequest``\\ s, then
the ``ObservationTurn``), and the tool calls the model sent malformed. What
the record names but does not decide: the model. The recorded model spec is
never used to pick a model or a URL, and no API key comes from a notebook;
the caller's model continues the run.

Which runs can be continued: one that stopped on a limit, an error of the
model, or an interruption (a step whose code never ran is asked again); one
that answered only with a follow-up ``task``. Limits (steps, tokens, cost,
time) count the continued run only, as for a new run; step numbers go on
from the recorded ones.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel_agent.agent.images import ImageLimits, images_of_record
from kernel_agent.agent.transcript import INTERRUPTED_PREFIX, NOTE, STOPPED_PREFIX, malformed_observation
from kernel_agent.errors import RecordingError, UnusableRecordError
from kernel_agent.models.base import (
    AssistantTurn,
    CodeRequest,
    ModelReply,
    Observation,
    ObservationTurn,
    Turn,
    UserTurn,
)
from kernel_agent.protocol.names import METADATA_KEY
from kernel_agent.record.recording import read_recorded_document
from kernel_agent.session.session import Session

#: The largest text of one recorded turn a resume sends back to the model (a task, a message, code, an observation).
MAX_TEXT_CHARS = 1_000_000
#: The largest conversation a resume rebuilds, in characters (the provider's context is far smaller anyway).
MAX_CONVERSATION_CHARS = 16_000_000
#: The most turns (steps times three, about) a resume rebuilds.
MAX_TURNS = 30_000
#: What a call id may be: the providers' own ids, ``fenced-N`` and ``script-N``; it goes back to the provider.
CALL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_CHANNELS = ("tool", "fenced")
#: Cells a run records that are not part of the conversation.
_NOT_CONVERSATION = {"setup", NOTE, "resumed", "attached", "detached"}


class RunRecordError(UnusableRecordError):
    """The notebook does not hold a recorded agent run that can be continued (the message says which field)."""


@dataclass
class RecordedRun:
    """What a resume continues: the recorded conversation and where the run stood."""

    notebook: Path
    task: str
    conversation: list[Turn]
    #: The highest step number recorded: the continued run numbers its steps after it.
    steps: int
    answered: bool
    #: The chain head the conversation was read at (the resume refuses a record that changed since).
    head: str
    #: The model the record names: shown, never used to choose one.
    recorded_model: str | None = None
    differences: list[str] = field(default_factory=list)


@dataclass
class _Turn:
    """An assistant turn being rebuilt: the model's text, its code requests and their observations."""

    step: int | None
    text: str = ""
    requests: list[CodeRequest] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    malformed: list[tuple[str, str]] = field(default_factory=list)
    answered: bool = False  # a code cell gave an accepted final_answer
    images: list[tuple[int, list[Any], list[Any]]] = field(default_factory=list)  # (observation, outputs, record)


def load_agent_run(notebook: str | os.PathLike[str], *, follow_up: str | None = None,
                   image_limits: ImageLimits | None = None) -> RecordedRun:
    """The recorded run in ``notebook``, checked; RunRecordError (or another RecordingError) says why not.

    ``follow_up``: the new task the caller gives; a run that answered can
    only be continued with one. The images earlier observations sent are
    rebuilt from the recorded outputs (checked again, within
    ``image_limits``), the newest ``max_in_conversation`` of them only: the
    loop sends no more than those anyway. Reads and decodes: call it off
    the event loop.
    """
    path = Path(os.path.abspath(notebook))
    document = read_recorded_document(path)
    ours = document["metadata"][METADATA_KEY]
    header = ours.get("session") if isinstance(ours.get("session"), dict) else {}
    chain = ours.get("chain")
    head = chain.get("head") if isinstance(chain, dict) else None
    if not isinstance(head, str):
        raise RunRecordError(f"{path}: the record has no chain head; run `kernel-agent audit` on it")
    if not isinstance(header.get("agent"), dict):
        raise RunRecordError(f"{path}: not a recorded agent run (its header has no agent settings): "
                             "Session.resume continues a session recorded without an agent")
    turns, task, last_step, answered = _rebuild(path, document["cells"], image_limits or ImageLimits())
    if follow_up is not None:
        _check_text(path, "the follow-up task", follow_up)
    if answered and not follow_up:
        raise RunRecordError(f"{path}: the recorded run already answered; give a follow-up task to continue it "
                             "(kernel-agent run TASK --resume NOTEBOOK)")
    model = header.get("model")
    spec = model.get("spec") if isinstance(model, dict) else None
    return RecordedRun(notebook=path, task=task, conversation=turns, steps=last_step, answered=answered, head=head,
                       recorded_model=spec[:200] if isinstance(spec, str) else None)


def _rebuild(path: Path, cells: list[Any], image_limits: ImageLimits) -> tuple[list[Turn], str, int, bool]:
    """(the conversation, the first task, the last step number, whether the run answered) from the cells."""
    turns: list[Turn] = []
    # (index of the ObservationTurn in turns, of the observation in it, the cell's outputs, its images record)
    with_images: list[tuple[int, int, list[Any], list[Any]]] = []
    size = 0
    task: str | None = None
    last_step = 0
    current: _Turn | None = None
    interrupted = False

    def grow(chars: int) -> None:
        """Count text the conversation will hold (every kind: texts, code, observations, malformed calls)."""
        nonlocal size
        size += chars
        if size > MAX_CONVERSATION_CHARS or len(turns) > MAX_TURNS:
            raise RunRecordError(f"{path}: the recorded conversation is larger than a resume rebuilds "
                                 f"({MAX_CONVERSATION_CHARS:,} characters, {MAX_TURNS:,} turns)")

    def flush() -> None:
        nonlocal current
        if current is not None:
            turns.extend(_turns_of(current))
            with_images.extend((len(turns) - 1, index, outputs, record) for index, outputs, record in current.images)
            current = None

    for index, cell in enumerate(cells):
        where = f"{path}: cell {index}"
        ours = _ours(cell, where)
        kind = ours.get("kind")
        text = _source(cell, where)
        grow(len(text))
        if kind in ("task", "message", "code") and not text.startswith((INTERRUPTED_PREFIX, STOPPED_PREFIX)):
            interrupted = False  # a later turn: an earlier interruption was gone past
        if kind == "task":
            flush()
            _check_text(path, f"cell {index} (the task)", text)
            task = text if task is None else task
            turns.append(UserTurn(text))
        elif kind == "message" and text.startswith((INTERRUPTED_PREFIX, STOPPED_PREFIX)):
            interrupted = interrupted or text.startswith(INTERRUPTED_PREFIX)  # a loop note of an older recording
        elif kind == "message":
            flush()
            step = _optional_step(ours, where)
            last_step = max(last_step, step or 0)
            _check_text(path, f"cell {index} (a model message)", text)
            current = _Turn(step=step, text=text, malformed=_malformed(ours, where))
            grow(sum(len(raw) for _, raw in current.malformed))
        elif kind == "code" and ours.get("observed_in") == "background notes":
            pass  # a cell that ran on in the background: the model saw it through the notes around it
        elif kind in ("code", "background"):
            step = _step(ours, where)
            last_step = max(last_step, step)
            if current is None or (current.step is not None and current.step != step):
                flush()
                current = _Turn(step=step)
            current.step = step
            if kind == "background":  # the host's answer to a step: the step's code is in the note's metadata
                code = ours.get("code")
                if not isinstance(code, str):
                    raise RunRecordError(f"{where}: a background note's code must be text")
                current.requests.append(_request(ours, code, where))
                grow(len(code))
                _check_text(path, f"cell {index} (a background note)", text)
                current.observations.append(Observation(str(ours.get("call_id")), text,
                                                        via=str(ours.get("code_via", "tool"))))
                continue
            current.requests.append(_request(ours, text, where))
            observation, answered = _observation(ours, where)
            record = _images_record(ours, cell, where)
            if record:
                current.images.append((len(current.observations), cell["outputs"], record))
            grow(len(observation.text))
            current.observations.append(observation)
            current.answered = current.answered or answered
        elif kind in _NOT_CONVERSATION:  # notes and session events; an interruption note marks the step cut short
            interrupted = interrupted or (kind == NOTE and text.startswith(INTERRUPTED_PREFIX))
        else:
            raise RunRecordError(f"{where}: kind {str(kind)[:40]!r} is not one an agent run records")
    if task is None:
        raise RunRecordError(f"{path}: no task cell: not a recorded agent run")
    if interrupted and current is not None and not current.requests and not current.malformed:
        current = None  # interrupted while that step's code ran, unrecorded: the model is asked for the step again
    answered = current is not None and (current.answered or (not current.requests and not current.malformed))
    flush()
    _add_images(turns, with_images, image_limits)
    return turns, task, last_step, answered


def _turns_of(turn: _Turn) -> list[Turn]:
    reply = ModelReply(text=turn.text, code=tuple(turn.requests), malformed=tuple(turn.malformed))
    observations = [*turn.observations, *(malformed_observation(call_id, raw) for call_id, raw in turn.malformed)]
    return [AssistantTurn(reply), ObservationTurn(tuple(observations))] if observations else [AssistantTurn(reply)]


def _images_record(ours: dict[str, Any], cell: dict[str, Any], where: str) -> list[Any]:
    """The observation's record of the images it sent (which outputs), checked for shape; [] when none."""
    observed = ours.get("observation")
    record = observed.get("images", []) if isinstance(observed, dict) else []
    if not isinstance(record, list) or len(record) > 100 or not isinstance(cell.get("outputs", []), list):
        raise RunRecordError(f"{where}: observation.images must be a list of at most 100 entries, with the "
                             "cell's outputs a list")
    return record


def _add_images(turns: list[Turn], with_images: list[tuple[int, int, list[Any], list[Any]]],
                limits: ImageLimits) -> None:
    """Give the newest observations back the images they sent, rebuilt from the outputs (checked again)."""
    room = limits.max_in_conversation
    for turn_index, index, outputs, record in reversed(with_images):
        if room <= 0:
            return
        images = images_of_record(outputs, record, limits)[:room]
        turn = turns[turn_index]
        if images and isinstance(turn, ObservationTurn):
            observations = list(turn.observations)
            observations[index] = dataclasses.replace(observations[index], images=images)
            turns[turn_index] = ObservationTurn(tuple(observations))
            room -= len(images)


def _ours(cell: Any, where: str) -> dict[str, Any]:
    metadata = cell.get("metadata") if isinstance(cell, dict) else None
    ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(ours, dict):
        raise RunRecordError(f"{where} has no metadata.{METADATA_KEY}: not a cell kernel-agent recorded")
    return ours


def _source(cell: dict[str, Any], where: str) -> str:
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        source = "".join(source)
    if not isinstance(source, str):
        raise RunRecordError(f"{where}: its source is not text")
    return source


def _check_text(path: Path, what: str, text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise RunRecordError(f"{path}: {what} is {len(text):,} characters, over the {MAX_TEXT_CHARS:,} a resume "
                             "sends back to the model")


def _step(ours: dict[str, Any], where: str) -> int:
    step = ours.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 10**6:
        raise RunRecordError(f"{where}: step must be an int from 1 to 1,000,000 (a code cell an agent ran), got "
                             f"{repr(step)[:40]}")
    return step


def _optional_step(ours: dict[str, Any], where: str) -> int | None:
    return _step(ours, where) if "step" in ours else None  # older recordings have no step on messages


def _request(ours: dict[str, Any], code: str, where: str) -> CodeRequest:
    call_id, via = ours.get("call_id"), ours.get("code_via", "tool")
    if not isinstance(call_id, str) or not CALL_ID.fullmatch(call_id):
        raise RunRecordError(f"{where}: call_id must be 1 to 128 letters, digits or _.:- , got {repr(call_id)[:60]}")
    if via not in _CHANNELS:
        raise RunRecordError(f"{where}: code_via must be one of {', '.join(_CHANNELS)}, got {repr(via)[:40]}")
    if len(code) > MAX_TEXT_CHARS:
        raise RunRecordError(f"{where}: its code is over the {MAX_TEXT_CHARS:,} characters a resume sends back")
    return CodeRequest(call_id=call_id, code=code, via=via)


def _observation(ours: dict[str, Any], where: str) -> tuple[Observation, bool]:
    """The observation the model got for the cell, and whether the cell's final_answer was accepted."""
    observed = ours.get("observation")
    text = observed.get("text") if isinstance(observed, dict) else None
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        raise RunRecordError(f"{where}: observation.text must be text of at most {MAX_TEXT_CHARS:,} characters")
    status = ours.get("status")
    if not isinstance(status, str):
        raise RunRecordError(f"{where}: status must be text")
    call_id, via = str(ours.get("call_id")), str(ours.get("code_via", "tool"))
    answered = "final_answer" in ours and "[final_answer was rejected" not in text
    return Observation(call_id, text or "(no output)", is_error=status != "ok", via=via), answered


def _malformed(ours: dict[str, Any], where: str) -> list[tuple[str, str]]:
    raw = ours.get("malformed", [])
    if not isinstance(raw, list) or len(raw) > 100:
        raise RunRecordError(f"{where}: malformed must be a list of at most 100 [call_id, text] pairs")
    pairs = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item)
                and CALL_ID.fullmatch(item[0]) and len(item[1]) <= MAX_TEXT_CHARS):
            raise RunRecordError(f"{where}: malformed holds {repr(item)[:60]}, not a [call_id, text] pair")
        pairs.append((item[0], item[1]))
    return pairs


async def resumed_session(run: RecordedRun, *, tools: list[Any], workspace: str | os.PathLike[str] | None,
                          policy: Any, on_progress: Callable[[Any], Any], options: dict[str, Any]) -> Session:
    """The run's session with its kernel state rebuilt, recording on into its notebook (see Session.resume)."""
    if "notebook" in options or "record_metadata" in options:
        raise RecordingError("a resumed run records into its own notebook, under its recorded header: "
                             "session_options notebook= and record_metadata= do not apply")
    session = await Session.resume(run.notebook, workspace=workspace, tools=tools, policy=policy,
                                   on_progress=on_progress, expect_head=run.head, **options)
    run.differences = list(session.resume_differences)
    return session
