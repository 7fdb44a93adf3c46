"""What every model adapter speaks: the conversation, a reply, token usage.

The agent loop keeps one provider-neutral conversation (:class:`Turn` items);
each adapter turns it into its provider's messages and the provider's answer
back into a :class:`ModelReply`. Code reaches the host through one
code-execution tool (:data:`CODE_TOOL`), so it parses reliably; code fenced
in plain text is accepted as a fallback (see :mod:`kernel_agent.models.fenced`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from kernel_agent.models.images import ImagePart


class Usage(BaseModel):
    """Tokens one model call (or a whole run) used, as the provider counted them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Everything the provider bills for: fresh input, cached input and output."""
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


def tool_channel_sentence(tool_name: str) -> str:
    """How the system prompt tells a model with function calling to send code."""
    return f"Send code with the `{tool_name}` tool; each call runs as one notebook cell"


#: The same sentence for a server without function calling: the adapter swaps it in (see the OpenAI adapter).
FENCED_CHANNEL_SENTENCE = ("Send code as one fenced ```python block per reply (this server has no function "
                           "calling); each block runs as one notebook cell")


@dataclass(frozen=True)
class CodeTool:
    """The single tool through which a model sends code: its name, description and input schema."""

    name: str = "python"
    description: str = (
        "Run Python code in your persistent, sandboxed IPython kernel and get back what it printed "
        "(stdout, the value of the last expression, errors). Variables, imports and files persist "
        "between calls. Call the tools SDK as `tools.<name>(...)`; call `final_answer(value)` when done."
    )

    @property
    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source to run as one cell"}},
            "required": ["code"],
        }


CODE_TOOL = CodeTool()


@dataclass(frozen=True)
class CodeRequest:
    """One piece of code the model asked to run. ``call_id`` ties the observation back to it."""

    call_id: str
    code: str
    via: str = "tool"  # "tool": the code-execution tool; "fenced": a fenced block in plain text


@dataclass(frozen=True)
class ModelReply:
    """One answer of the model: its text, the code it wants run, and what the call cost."""

    text: str
    code: tuple[CodeRequest, ...] = ()
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = ""
    model: str = ""
    # The provider's tool-call arguments that could not be read, reported back to the model.
    malformed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class UserTurn:
    """Text from the user side: the task, or a note from the loop (a rejected answer, a limit)."""

    text: str


@dataclass(frozen=True)
class AssistantTurn:
    """What the model said, exactly as it will be sent back to it."""

    reply: ModelReply


@dataclass(frozen=True)
class Observation:
    """What running one code request gave back, bounded for the model: text, and the images it showed.

    ``images`` are sent only to a model that takes image input (the loop
    decides, see :mod:`kernel_agent.agent.images`); ``text`` says which they are.
    """

    call_id: str
    text: str
    is_error: bool = False
    via: str = "tool"
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True)
class ObservationTurn:
    """The observations answering every code request of the previous assistant turn."""

    observations: tuple[Observation, ...]


Turn = UserTurn | AssistantTurn | ObservationTurn


@runtime_checkable
class Model(Protocol):
    """A language model that writes the next step of a run.

    ``spec`` is how it was named (``anthropic:claude-...``); ``provider`` is
    the provider's name. :meth:`complete` may raise
    :class:`~kernel_agent.errors.ModelError` subclasses only.
    """

    spec: str
    provider: str
    # Optional: ``vision`` (bool), whether the model takes image input. A model without the
    # attribute is sent no images (see :func:`takes_images`).

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        """The model's next reply to ``conversation``."""
        ...

    async def close(self) -> None:
        """Release the HTTP client (idempotent)."""
        ...


def takes_images(model: object) -> bool:
    """Whether ``model`` takes image input: its ``vision`` attribute, False for a model that has none."""
    return getattr(model, "vision", False) is True


def conversation_as_text(system: str, conversation: list[Turn]) -> list[dict[str, str]]:
    """The conversation as plain role/content pairs: what the model saw, for logs and token counts."""
    messages = [{"role": "system", "content": system}]
    for turn in conversation:
        if isinstance(turn, UserTurn):
            messages.append({"role": "user", "content": turn.text})
        elif isinstance(turn, AssistantTurn):
            parts = [turn.reply.text] if turn.reply.text else []
            parts += [request.code for request in turn.reply.code if request.via == "tool"]
            messages.append({"role": "assistant", "content": "\n".join(parts)})
        else:
            messages += [{"role": "tool", "content": "\n".join([obs.text, *(i.placeholder for i in obs.images)])}
                         for obs in turn.observations]
    return messages
