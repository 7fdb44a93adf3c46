"""Claude through the official ``anthropic`` SDK (the Messages API, code through tool use)."""

from __future__ import annotations

import json
import os
from typing import Any

from kernel_agent.errors import MissingApiKeyError
from kernel_agent.models._errors import translate
from kernel_agent.models.base import (
    AssistantTurn,
    CodeRequest,
    CodeTool,
    ModelReply,
    ObservationTurn,
    Turn,
    Usage,
    UserTurn,
)
from kernel_agent.models.images import ImagePart, no_vision_note

API_KEY_ENV = "ANTHROPIC_API_KEY"
AUTH_TOKEN_ENV = "ANTHROPIC_AUTH_TOKEN"
_CACHE = {"type": "ephemeral"}


class AnthropicModel:
    """A Claude model. The key comes from ``api_key`` or ``ANTHROPIC_API_KEY``.

    The system prompt and the newest turn are marked for prompt caching, so
    each step pays full price only for what is new (cache reads and writes are
    reported in :class:`~kernel_agent.models.base.Usage`).
    Images a cell showed go back inside its ``tool_result`` as image blocks;
    ``vision=False`` (for a gateway or model without image input) sends a
    note instead. ``client`` replaces the SDK client (tests give one with a fake transport).
    """

    provider = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 8192,
        max_retries: int = 4,
        timeout: float = 600.0,
        vision: bool = True,
        client: Any = None,
    ) -> None:
        self.name = model
        self.vision = vision  # every current Claude model takes images
        self.spec = f"anthropic:{model}"
        self.max_tokens = max_tokens
        if client is None:
            key = api_key or os.environ.get(API_KEY_ENV)
            token = None if key else os.environ.get(AUTH_TOKEN_ENV)
            if not key and not token:
                raise MissingApiKeyError(
                    f"anthropic: no API key. Set {API_KEY_ENV} (or {AUTH_TOKEN_ENV}, or pass api_key=...); "
                    "for an offline run use the scripted model (`kernel-agent demo`)."
                )
            import anthropic  # after the key check: importing the SDK takes seconds

            client = anthropic.AsyncAnthropic(api_key=key, auth_token=token, base_url=base_url,
                                              max_retries=max_retries, timeout=timeout)
        self._client = client
        self.base_url = str(client.base_url)

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        import anthropic

        try:
            response = await self._client.messages.create(
                model=self.name,
                max_tokens=self.max_tokens,
                system=[{"type": "text", "text": system, "cache_control": _CACHE}],
                messages=to_messages(conversation, vision=self.vision, model=self.spec),
                tools=[{"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}],
            )
        except (anthropic.AnthropicError, json.JSONDecodeError) as exc:
            raise translate(exc, self.provider, self.base_url, anthropic) from exc
        return from_response(response, tool)

    async def close(self) -> None:
        await self._client.close()


def to_messages(conversation: list[Turn], *, vision: bool = True, model: str = "this model") -> list[dict[str, Any]]:
    """The conversation as Messages API messages (alternating user and assistant turns).

    An observation's images become image blocks (base64 source) after its
    text, inside its ``tool_result`` (or its user turn for fenced code);
    without ``vision``, a note names each instead.
    """
    messages: list[dict[str, Any]] = []
    for turn in conversation:
        if isinstance(turn, UserTurn):
            _append(messages, "user", [{"type": "text", "text": turn.text}])
        elif isinstance(turn, AssistantTurn):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.reply.text}] if turn.reply.text else []
            blocks += [{"type": "tool_use", "id": request.call_id, "name": "python", "input": {"code": request.code}}
                       for request in turn.reply.code if request.via == "tool"]
            blocks += [{"type": "tool_use", "id": call_id, "name": "python", "input": {"raw": raw}}
                       for call_id, raw in turn.reply.malformed]
            _append(messages, "assistant", blocks or [{"type": "text", "text": "(no reply)"}])
        elif isinstance(turn, ObservationTurn):
            blocks = []
            for obs in turn.observations:
                content = [{"type": "text", "text": obs.text or "(no output)"}]
                content += [_image_block(image) if vision else {"type": "text", "text": no_vision_note(image, model)}
                            for image in obs.images]
                if obs.via == "tool":
                    blocks.append({"type": "tool_result", "tool_use_id": obs.call_id, "is_error": obs.is_error,
                                   "content": content})
                else:
                    blocks += content
            _append(messages, "user", blocks)
    if messages:
        # Cache the whole prefix up to the newest turn; the next step reads it back cheaply.
        messages[-1]["content"][-1] = {**messages[-1]["content"][-1], "cache_control": _CACHE}
    return messages


def _image_block(image: ImagePart) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": image.data}}


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add blocks as a turn of ``role``, merging into the previous turn when it has the same role."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"] = [*messages[-1]["content"], *blocks]
    else:
        messages.append({"role": role, "content": blocks})


def from_response(response: Any, tool: CodeTool) -> ModelReply:
    """A ModelReply from a Messages API response."""
    texts: list[str] = []
    code: list[CodeRequest] = []
    malformed: list[tuple[str, str]] = []
    for block in response.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            source = block.input.get("code") if isinstance(block.input, dict) else None
            if block.name == tool.name and isinstance(source, str):
                code.append(CodeRequest(call_id=block.id, code=source))
            else:
                malformed.append((block.id, f"tool {block.name!r} with input {block.input!r}"))
    usage = getattr(response, "usage", None)  # some gateways leave it out
    return ModelReply(
        text="\n".join(texts).strip(),
        code=tuple(code),
        usage=Usage(
            input_tokens=getattr(usage, "input_tokens", None) or 0,
            output_tokens=getattr(usage, "output_tokens", None) or 0,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", None) or 0,
            cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None) or 0,
        ),
        stop_reason=response.stop_reason or "",
        model=response.model,
        malformed=tuple(malformed),
    )
