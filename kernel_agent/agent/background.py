"""The agent's side of long cells: a cell still running after ``background_after`` runs on in the background.

The model is told the cell still runs, with its output so far, and answers
with ``%wait`` (until it ends), ``%wait SECONDS`` (at most that long) or
``%cancel`` (interrupt it; variables are kept). The host takes these
commands itself; they never reach the kernel. Other code sent while the
cell runs is not run, and the model is told why: one cell runs at a time
(see :mod:`kernel_agent.session.background`).

The record keeps one entry per step, in order, so the conversation can be
rebuilt from it: each answer of the host (the cell runs on, a poll, a
refusal, and the cell's result at the step that got it) is a markdown cell
of kind ``background`` whose metadata names the step, its call id, channel
and code. The cell itself is recorded once, when it ends, with its final
observation and ``observed_in: "background notes"`` (its observations are
those notes).
"""

from __future__ import annotations

import contextlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

from kernel_agent.agent.observation import bound
from kernel_agent.runtime.results import CellResult
from kernel_agent.runtime.streaming import OutputCallback
from kernel_agent.session.background import CellProgress, RunningCell
from kernel_agent.session.session import RecordExtras, Session

_COMMAND = re.compile(r"\A\s*%(wait|cancel)(?:[ \t]+(\d+(?:\.\d*)?)[ \t]*s?)?\s*\Z")
_HOW = ("[Send `%wait` to wait until it ends, `%wait SECONDS` to wait at most that long (then see its new output), "
        "or `%cancel` to interrupt it (variables are kept). No other code runs until it ends.]")
# What of the output so far goes back in one step (a fraction of the observation limit).
_SO_FAR_SHARE = 0.5


def background_rule(background_after: float | None) -> str:
    """The system prompt's sentence on long cells ("" when cells never go to the background)."""
    if background_after is None:
        return ""
    return (f"- A cell still running after {background_after:g} s runs on in the background: you are told so, with "
            "its output so far. Then reply with just `%wait` (wait until it ends), `%wait SECONDS` (wait at most "
            "that long) or `%cancel` (interrupt it; variables are kept); other code waits until it ends.")


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


@dataclass
class BackgroundSteps:
    """One run's background cell, and how a step's code is taken while it runs."""

    background_after: float | None
    observation_limit: int
    cell: RunningCell | None = None
    observed: list[Any] | None = None  # the loop's observation of the background cell, made when it ends
    went_background: bool = False  # the cell outlived the step that started it
    step: dict[str, Any] | None = None  # the step being answered: its number, call id, channel and code

    async def run(self, session: Session, code: str, timeout: float | None, time_left: float | None,
                  record_extras: RecordExtras, observed: list[Any], *,
                  step: dict[str, Any] | None = None,
                  on_output: OutputCallback | None = None) -> CellResult | str:
        """Run a step's code: a CellResult when a cell ended, else the host's answer to the model (a string).

        ``step`` (its number, call id and channel) goes into the notes' metadata.
        """
        self.step = {**(step or {}), "code": code}
        command = _COMMAND.match(code)
        cell = self.cell
        if cell is None:
            if command is not None:
                return self._note(session, "No cell is running in the background: there is nothing to wait for or "
                                           "cancel.")
            if self.background_after is None:
                return await session.execute(code, timeout=timeout, record_extras=record_extras, on_output=on_output)
            self.went_background = False
            cell = self.cell = await session.start_cell(code, timeout=timeout,
                                                        record_extras=self._marked(record_extras),
                                                        on_output=on_output)
            self.observed = observed
            return await self._wait(session, cell, self._bounded(self.background_after, time_left), observed,
                                    started=True)
        if command is None and cell.done:
            ended = self.observed[0].observation if self.observed else ""
            self.cell, self.observed = None, None
            return self._note(session, f"Not run: {self._name(cell)}, which ran in the background, ended meanwhile. "
                                       f"Its output:\n{ended}\n[Send your code again.]")
        if command is None:
            progress = cell.poll()
            return self._note(session, f"Not run: {self._name(cell)} is still running in the background "
                                       f"({_seconds(progress.seconds)} s so far), and only one cell runs at a "
                                       f"time.{self._new_output(progress)}\n{_HOW}")
        if command.group(1) == "cancel":
            result = await cell.cancel()
            return self._collect(session, result, observed)
        seconds = float(command.group(2)) if command.group(2) else None
        return await self._wait(session, cell, self._bounded(seconds, time_left), observed, started=False)

    async def finish(self, session: Session) -> None:
        """The run ended: a background cell still running is cancelled (and recorded as such)."""
        if self.cell is not None and not self.cell.done and session.running_cell is self.cell:
            with contextlib.suppress(Exception):
                await self.cell.cancel()

    # -- pieces ----------------------------------------------------------------------

    async def _wait(self, session: Session, cell: RunningCell, seconds: float | None, observed: list[Any],
                    *, started: bool) -> CellResult | str:
        result = await cell.wait(seconds)
        if result is None and self.observed:  # it ended as the wait did, and is being recorded: as if in time
            result = await cell.wait()
        if result is not None:
            return self._collect(session, result, observed)
        self.went_background = True  # no await since the check above: its record will say so
        progress = cell.poll()
        if started:
            text = (f"{self._name(cell)} is still running after {_seconds(progress.seconds)} s; it runs on in the "
                    f"background.{self._new_output(progress, first=True)}")
        else:
            text = (f"{self._name(cell)} is still running ({_seconds(progress.seconds)} s so far)."
                    f"{self._new_output(progress)}")
        return self._note(session, f"{text}\n{_HOW}")

    def _collect(self, session: Session, result: CellResult, observed: list[Any]) -> CellResult:
        """The background cell ended: its result, with the observation made when it was recorded."""
        if self.observed is not None and self.observed is not observed:
            observed.extend(self.observed)
        if self.went_background and observed:
            self._note(session, observed[0].observation or "(no output)", result=True)
        self.cell, self.observed = None, None
        return result

    def _marked(self, record_extras: RecordExtras) -> RecordExtras:
        """The loop's record_extras, plus ``observed_in`` when the cell went to the background."""

        async def extras(result: CellResult) -> dict[str, Any]:
            given = record_extras(result) if callable(record_extras) else record_extras
            if inspect.isawaitable(given):
                given = await given
            marked = dict(given or {})
            if self.went_background:
                marked["observed_in"] = "background notes"
            return marked
        return extras

    def _new_output(self, progress: CellProgress, *, first: bool = False) -> str:
        text = progress.new_text
        if not text:
            return " No output so far." if first else " No new output."
        limit = max(200, int(self.observation_limit * _SO_FAR_SHARE))
        shown = bound(text, limit, where="the notebook once the cell ends").text.rstrip("\n")
        return f" {'Output so far' if first else 'New output'}:\n{shown}"

    @staticmethod
    def _name(cell: RunningCell) -> str:
        count = cell.execution_count
        return f"Cell In[{count}]" if count is not None else f"Background cell {cell.number}"

    @staticmethod
    def _bounded(seconds: float | None, time_left: float | None) -> float | None:
        """A wait never outlasts the run's time limit."""
        if time_left is None:
            return seconds
        return time_left if seconds is None else min(seconds, time_left)

    def _note(self, session: Session, text: str, *, result: bool = False) -> str:
        """Record the host's answer to a step (the conversation is rebuilt from these) and return it."""
        recorder = session.recorder
        if recorder is not None:
            recorder.record_note("background", text, {**(self.step or {}), **({"result": True} if result else {})})
        return text
