"""A deterministic model: it replies with a fixed sequence, for offline demos, experiments and tests.

A script is a list of replies; each is code (sent through the code-execution
tool, as a real model would), text, or both. It can be read from:

- a ``.py`` file in the percent format that Jupytext and VS Code use: each
  ``# %%`` starts a code reply, each ``# %% [markdown]`` a text reply (its
  lines' leading ``# `` removed) that goes with the next code reply, or ends
  the run when nothing follows;
- a ``.json`` file: a list of strings (code) or ``{"text": ..., "code": ...}``;
- a recorded notebook (``.ipynb``): the code the recorded model sent, and its
  messages, replayed as the same replies.

Token usage is estimated (see :func:`estimate_tokens`) from what the model
would have read and written, so runs can be compared offline by tokens;
an image counts as Anthropic's estimate for its size.
Every conversation the model was sent is kept in :attr:`ScriptedModel.seen`
(images included), so tests can check what a real model would have been shown.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kernel_agent.errors import ModelConfigError
from kernel_agent.models.base import (
    CodeRequest,
    CodeTool,
    ModelReply,
    ObservationTurn,
    Turn,
    Usage,
    conversation_as_text,
)
from kernel_agent.models.images import ImagePart, anthropic_image_tokens

# About four characters a token for English and code with the common BPE tokenizers;
# an estimate, named as such wherever it is shown.
CHARS_PER_TOKEN = 4
_CELL_MARKER = re.compile(r"^# %%(.*)$", re.MULTILINE)
_EXHAUSTED = "The script has no more steps."


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text`` (characters / 4, rounded up): the scripted model's usage unit."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class ScriptedModel:
    """Replies from a fixed script, one per step; ``spec`` is ``scripted:PATH`` when read from a file.

    ``vision`` (default True) says whether it takes images, as a real
    model's option does; ``seen`` holds each conversation it was sent.
    """

    provider = "scripted"

    def __init__(self, replies: Iterable[str | dict[str, Any]], *, spec: str = "scripted:inline",
                 vision: bool = True) -> None:
        self.spec = spec
        self.vision = vision
        self.seen: list[list[Turn]] = []
        self.name = spec.partition(":")[2] or "inline"
        self.replies = [_reply_entry(entry, index) for index, entry in enumerate(replies)]
        self.position = 0

    @classmethod
    def from_file(cls, path: str | Path, *, vision: bool = True) -> ScriptedModel:
        """A script from a percent-format ``.py``, a ``.json`` list, or a recorded ``.ipynb``."""
        file = Path(path)
        if not file.is_file():
            raise ModelConfigError(f"scripted: no script file at {file}")
        spec = f"scripted:{file}"
        try:
            text = file.read_text(encoding="utf-8")
            if file.suffix == ".json":
                entries = json.loads(text)
                if not isinstance(entries, list):
                    raise ModelConfigError(f"scripted: {file} must hold a JSON list of replies")
                return cls(entries, spec=spec, vision=vision)
            if file.suffix == ".ipynb":
                return cls(_replies_from_notebook(json.loads(text)), spec=spec, vision=vision)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelConfigError(f"scripted: {file} cannot be read: {exc}") from None
        return cls(parse_percent_script(text), spec=spec, vision=vision)

    @property
    def images_seen(self) -> list[ImagePart]:
        """The images in the newest conversation it was sent, in order (the ones a real model would see)."""
        if not self.seen:
            return []
        return [image for turn in self.seen[-1] if isinstance(turn, ObservationTurn)
                for observation in turn.observations for image in observation.images]

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        self.seen.append(list(conversation))
        read = sum(estimate_tokens(message["content"]) for message in conversation_as_text(system, conversation))
        read += sum(anthropic_image_tokens(image.width, image.height) for image in self.images_seen)
        if self.position >= len(self.replies):
            text, code = _EXHAUSTED, None
        else:
            text, code = self.replies[self.position]
        self.position += 1
        requests = () if code is None else (CodeRequest(call_id=f"script-{self.position}", code=code),)
        return ModelReply(
            text=text,
            code=requests,
            usage=Usage(input_tokens=read, output_tokens=estimate_tokens(text + (code or ""))),
            stop_reason="tool_use" if requests else "end_turn",
            model=self.spec,
        )

    async def close(self) -> None:
        return None


def _reply_entry(entry: str | dict[str, Any], index: int) -> tuple[str, str | None]:
    if isinstance(entry, str):
        return "", entry
    if isinstance(entry, dict) and set(entry) <= {"text", "code"} and entry:
        text, code = entry.get("text", ""), entry.get("code")
        if isinstance(text, str) and (code is None or isinstance(code, str)):
            return text, code
    raise ModelConfigError(f"scripted: reply {index} must be a code string or {{'text': str, 'code': str}}, "
                           f"got {entry!r}")


def parse_percent_script(text: str) -> list[dict[str, Any]]:
    """Replies from a percent-format script: markdown cells are text that goes with the next code cell."""
    replies: list[dict[str, Any]] = []
    pending_text: list[str] = []
    parts = _CELL_MARKER.split(text)
    # parts: [preamble, marker-tail, body, marker-tail, body, ...]
    for tail, body in zip(parts[1::2], parts[2::2], strict=True):
        if "[markdown]" in tail:
            lines = [re.sub(r"^# ?", "", line) for line in body.strip("\n").splitlines()]
            pending_text.append("\n".join(lines).strip())
        else:
            code = body.strip("\n")
            if code.strip():
                replies.append({"text": "\n\n".join(pending_text), "code": code})
                pending_text = []
    if pending_text:
        replies.append({"text": "\n\n".join(pending_text)})
    return replies


def _replies_from_notebook(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The replies a recorded run's model gave: its messages and the code cells, in order."""
    replies: list[dict[str, Any]] = []
    pending_text: list[str] = []
    for cell in _cells(document):
        kind = cell.get("metadata", {}).get("kernel_agent", {}).get("kind")
        source = "".join(cell["source"]) if isinstance(cell.get("source"), list) else str(cell.get("source", ""))
        if kind == "message":
            pending_text.append(source)
        elif kind == "code":
            replies.append({"text": "\n\n".join(pending_text), "code": source})
            pending_text = []
    if pending_text:
        replies.append({"text": "\n\n".join(pending_text)})
    if not replies:
        raise ModelConfigError("scripted: the notebook holds no recorded code cells to replay")
    return replies


def _cells(document: dict[str, Any]) -> Sequence[dict[str, Any]]:
    cells = document.get("cells")
    if not isinstance(cells, list):
        raise ModelConfigError("scripted: the notebook has no cells list")
    return [cell for cell in cells if isinstance(cell, dict)]
