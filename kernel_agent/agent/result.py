"""What a run gives back: the answer, why it stopped, each step, the usage and the notebook."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from kernel_agent.models.base import Usage
from kernel_agent.models.images import ImagePart
from kernel_agent.runtime.results import CellResult


class StopReason(str, Enum):
    """Why a run ended."""

    FINAL_ANSWER = "final_answer"  # the code called final_answer(value) (and it validated)
    ANSWERED = "answered"          # the model answered in plain text, without code
    MAX_STEPS = "max_steps"
    MAX_TOKENS = "max_tokens"
    MAX_COST = "max_cost"
    MAX_TIME = "max_time"
    MODEL_ERROR = "model_error"    # the provider failed after its retries (see AgentResult.error)
    INTERRUPTED = "interrupted"    # cancelled (Ctrl-C); the notebook is saved


@dataclass(frozen=True)
class Pricing:
    """US dollars per million tokens, to turn usage into cost (for ``max_cost`` and summaries)."""

    input: float
    output: float
    cache_read: float | None = None   # default: the input price
    cache_write: float | None = None  # default: the input price

    def cost(self, usage: Usage) -> float:
        cache_read = self.input if self.cache_read is None else self.cache_read
        cache_write = self.input if self.cache_write is None else self.cache_write
        return (usage.input_tokens * self.input + usage.output_tokens * self.output
                + usage.cache_read_tokens * cache_read + usage.cache_write_tokens * cache_write) / 1_000_000


@dataclass
class Execution:
    """One piece of code the model sent, the cell that ran it, and the observation it got back."""

    code: str
    cell: CellResult | None  # None when the code never ran (e.g. the tool call was malformed)
    observation: str
    truncated: bool = False
    spill_file: str | None = None
    images: tuple[ImagePart, ...] = ()  # the images sent to the model with the observation
    image_record: tuple[dict[str, Any], ...] = ()  # what became of each image output (sent or why not), no bytes


@dataclass
class Step:
    """One model reply and what running its code gave."""

    index: int
    text: str
    executions: list[Execution]
    usage: Usage
    model_stop_reason: str
    model_seconds: float
    cell_seconds: float = 0.0

    @property
    def images_sent(self) -> int:
        """Images sent to the model with this step's observations (bounded by ImageLimits.max_images)."""
        return sum(len(execution.images) for execution in self.executions)

    @property
    def code(self) -> str:
        return "\n\n".join(execution.code for execution in self.executions)

    @property
    def observation(self) -> str:
        return "\n\n".join(execution.observation for execution in self.executions)

    @property
    def tool_calls(self) -> int:
        return sum(len(e.cell.tool_calls) for e in self.executions if e.cell is not None)


@dataclass(repr=False)
class AgentResult:
    """The outcome of :meth:`Agent.run`. In Jupyter it displays as a short report."""

    task: str
    answer: Any
    stop_reason: StopReason
    steps: list[Step]
    usage: Usage
    seconds: float
    notebook: Path | None
    model: str
    cost: float | None = None
    error: str | None = None  # the model error or the limit that ended the run, in words
    conversation: list[dict[str, str]] = field(default_factory=list)  # what the model saw, in order
    #: For a resumed run (Agent.run(resume=...)): the last recorded step it continued after (else None), and the
    #: rebuilt cells that differed from their recording (a random value that came out different is named here).
    resumed_after_step: int | None = None
    resume_differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the run ended with an answer (final_answer or a plain-text reply)."""
        return self.stop_reason in (StopReason.FINAL_ANSWER, StopReason.ANSWERED)

    @property
    def tool_calls(self) -> int:
        return sum(step.tool_calls for step in self.steps)

    @property
    def usage_is_estimate(self) -> bool:
        """The scripted model has no tokenizer: its usage is estimated (characters / 4)."""
        return self.model.startswith("scripted:")

    def summary(self) -> dict[str, Any]:
        """The figures of the run as plain data (for logs, JSON and comparisons)."""
        return {
            "stop_reason": self.stop_reason.value, "answer": _jsonable(self.answer), "steps": len(self.steps),
            "cells": sum(len(step.executions) for step in self.steps), "tool_calls": self.tool_calls,
            "usage": self.usage.model_dump(), "total_tokens": self.usage.total_tokens, "cost_usd": self.cost,
            "seconds": round(self.seconds, 3), "notebook": str(self.notebook) if self.notebook else None,
            "model": self.model, "usage_is_estimate": self.usage_is_estimate, "error": self.error,
            "resumed_after_step": self.resumed_after_step, "resume_differences": self.resume_differences,
        }

    def __repr__(self) -> str:
        return (f"AgentResult(stop_reason={self.stop_reason.value!r}, answer={_short(self.answer, 80)}, "
                f"steps={len(self.steps)}, tokens={self.usage.total_tokens}, notebook={str(self.notebook)!r})")

    def __str__(self) -> str:
        lines = [f"stop reason: {self.stop_reason.value}" + (f" ({self.error})" if self.error else ""),
                 f"answer:      {_short(self.answer)}",
                 f"steps:       {len(self.steps)} ({self.tool_calls} tool calls)",
                 f"tokens:      {self.usage.total_tokens:,} (input {self.usage.input_tokens:,}, output "
                 f"{self.usage.output_tokens:,}, cache read {self.usage.cache_read_tokens:,}, cache write "
                 f"{self.usage.cache_write_tokens:,})" + (", estimated" if self.usage_is_estimate else "")]
        if self.cost is not None:
            lines.append(f"cost:        ${self.cost:.4f}")
        lines += [f"time:        {self.seconds:.1f} s", f"notebook:    {self.notebook or '(not recorded)'}"]
        if self.resumed_after_step is not None:
            lines.append(f"resumed:     after step {self.resumed_after_step}; " + (
                f"{len(self.resume_differences)} rebuilt cell(s) differed: " + "; ".join(self.resume_differences[:3])
                if self.resume_differences else "every rebuilt cell matched its recording"))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"<pre style='margin:0'>{html.escape(v)}</pre></td></tr>" for k, v in self._report_rows())
        steps = "".join(
            f"<details><summary>step {s.index}: {len(s.executions)} cell(s), {s.tool_calls} tool call(s), "
            f"{s.usage.total_tokens:,} tokens</summary>"
            + (f"<p>{html.escape(s.text)}</p>" if s.text else "")
            + "".join(f"<pre>{html.escape(e.code)}</pre><pre style='color:#555'>{html.escape(e.observation)}</pre>"
                      for e in s.executions) + "</details>" for s in self.steps)
        return f"<table>{rows}</table>{steps}"

    def _repr_markdown_(self) -> str:
        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        return "\n".join(["| | |", "|---|---|", *(f"| {k} | {cell(v)} |" for k, v in self._report_rows())])

    def _report_rows(self) -> list[tuple[str, str]]:
        rows = [("answer", _short(self.answer, 500)),
                ("stop reason", self.stop_reason.value + (f": {self.error}" if self.error else "")),
                ("steps", f"{len(self.steps)} ({self.tool_calls} tool calls)"),
                ("tokens", f"{self.usage.total_tokens:,} (in {self.usage.input_tokens:,}, out "
                           f"{self.usage.output_tokens:,}, cached {self.usage.cache_read_tokens:,})"
                           + (", estimated" if self.usage_is_estimate else "")),
                ("time", f"{self.seconds:.1f} s"), ("notebook", str(self.notebook or "(not recorded)"))]
        if self.cost is not None:
            rows.insert(4, ("cost", f"${self.cost:.4f}"))
        return rows


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
