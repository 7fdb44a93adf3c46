"""OpenAI models, and any OpenAI-compatible server, through the official ``openai`` SDK (Chat Completions).

A local server (vLLM, llama.cpp's server, Ollama, LM Studio) is reached with
``base_url``; it needs no real key. A server that rejects function calling is
asked again without it, and from then on the model's fenced code is run.

Images a cell showed cannot ride in a Chat Completions ``tool`` message (its
content is text only), so they follow the tool messages as one ``user``
message of ``image_url`` parts (``data:`` URLs), each introduced by a text
part naming the call that showed it. Vision is on for OpenAI's own API and
off for other servers unless ``vision=True`` (many local models take no
images); a server that refuses an image is asked again with notes instead,
and from then on gets notes.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

from kernel_agent.errors import MissingApiKeyError
from kernel_agent.models._errors import translate
from kernel_agent.models.base import (
    FENCED_CHANNEL_SENTENCE,
    AssistantTurn,
    CodeRequest,
    CodeTool,
    ModelReply,
    ObservationTurn,
    Turn,
    Usage,
    UserTurn,
    tool_channel_sentence,
)
from kernel_agent.models.images import no_vision_note

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
# Local servers check no key, but the SDK insists on having one.
_LOCAL_SERVER_KEY = "not-needed"
_TEXT_MODE_NOTE = (
    "\n\nThis server has no function calling: send code as one fenced ```python block per reply; "
    "it runs and you get the output back."
)


def text_mode_system(system: str, tool: CodeTool) -> str:
    """The system prompt for a server without function calling: it must not mention a tool that is not there."""
    sentence = tool_channel_sentence(tool.name)
    if sentence in system:
        return system.replace(sentence, FENCED_CHANNEL_SENTENCE)
    return system + _TEXT_MODE_NOTE


class OpenAIModel:
    """An OpenAI chat model, or one served by an OpenAI-compatible server at ``base_url``.

    The key comes from ``api_key`` or ``OPENAI_API_KEY`` (optional with a
    ``base_url``); the base URL from ``base_url`` or ``OPENAI_BASE_URL``.
    ``vision`` says whether the model takes image input (default: yes on
    OpenAI's API, no on other servers).
    ``client`` replaces the SDK client (tests give one with a fake transport).
    """

    provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int | None = None,
        max_retries: int = 4,
        timeout: float = 600.0,
        vision: bool | None = None,
        client: Any = None,
    ) -> None:
        self.name = model
        base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        self.spec = f"openai:{model}" + (f"@{base_url}" if base_url else "")
        self.max_tokens = max_tokens
        self.function_calling = True
        self._tools_worked = False  # once a call with tools succeeded, a 400 is never "no tool support"
        self.vision = vision if vision is not None else _is_openai_api(base_url)
        self._images_worked = False  # the same for images
        if client is None:
            key = api_key or os.environ.get(API_KEY_ENV) or (_LOCAL_SERVER_KEY if base_url else None)
            if not key:
                raise MissingApiKeyError(
                    f"openai: no API key. Set {API_KEY_ENV} (or pass api_key=...), or give the base URL of "
                    "an OpenAI-compatible server (`openai:MODEL@http://localhost:8000/v1`, --base-url or "
                    f"{BASE_URL_ENV}); for an offline run use the scripted model (`kernel-agent demo`)."
                )
            import openai  # after the key check: importing the SDK takes seconds

            client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout)
        self._client = client
        self.base_url = str(client.base_url)

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        import openai

        try:
            try:
                response = await self._complete_with_tools_or_fenced(system, conversation, tool)
            except openai.BadRequestError as exc:
                if self._images_worked or not _has_images(conversation) or not _says_no_image_support(str(exc)):
                    raise
                self.vision = False
                response = await self._complete_with_tools_or_fenced(system, conversation, tool)
            self._images_worked = self._images_worked or (self.vision and _has_images(conversation))
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            raise translate(exc, self.provider, self.base_url, openai) from exc
        return from_response(response, tool)

    async def _complete_with_tools_or_fenced(self, system: str, conversation: list[Turn], tool: CodeTool) -> Any:
        import openai

        if self.function_calling:
            try:
                response = await self._create(system, conversation, tool)
                self._tools_worked = True
                return response
            except openai.BadRequestError as exc:
                if self._tools_worked or not _says_no_tool_support(str(exc)):
                    raise
                self.function_calling = False
        return await self._create(text_mode_system(system, tool), conversation, None)

    async def _create(self, system: str, conversation: list[Turn], tool: CodeTool | None) -> Any:
        options: dict[str, Any] = {}
        if tool is not None:
            options["tools"] = [{"type": "function", "function": {
                "name": tool.name, "description": tool.description, "parameters": tool.input_schema}}]
        if self.max_tokens is not None:
            options["max_completion_tokens"] = self.max_tokens
        return await self._client.chat.completions.create(
            model=self.name, messages=to_messages(system, conversation, vision=self.vision, model=self.spec), **options)

    async def close(self) -> None:
        await self._client.close()


# How servers without function calling refuse a request that has tools (vLLM, llama.cpp, Ollama, TGI).
_NO_TOOL_SUPPORT = ("does not support tools", "tool choice", "tool_choice", "tools are not supported",
                    "function calling is not", "not support function", "--enable-auto-tool-choice",
                    "tools param", "unsupported parameter: 'tools'", "unrecognized request argument supplied: tools")


def _says_no_tool_support(message: str) -> bool:
    """Whether a 400 says the server cannot take tools (not an error about one tool message)."""
    text = message.lower()
    return any(phrase in text for phrase in _NO_TOOL_SUPPORT)


# How servers refuse image input (OpenAI for a text-only model, vLLM, llama.cpp, Ollama, LM Studio).
_NO_IMAGE_SUPPORT = re.compile(r"image input|image_url|does not support image|image content|\bvision\b|"
                               r"multimodal|multi-modal|mmproj|images are not supported", re.IGNORECASE)


def _says_no_image_support(message: str) -> bool:
    return _NO_IMAGE_SUPPORT.search(message) is not None


def _is_openai_api(base_url: str | None) -> bool:
    """Whether requests go to OpenAI's own API (its models take images), not another server."""
    return base_url is None or (urlsplit(base_url).hostname or "").endswith("api.openai.com")


def _has_images(conversation: list[Turn]) -> bool:
    return any(isinstance(turn, ObservationTurn) and any(obs.images for obs in turn.observations)
               for turn in conversation)


def to_messages(system: str, conversation: list[Turn], *, vision: bool = True,
                model: str = "this model") -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages.

    Images follow an observation turn's tool messages as one user message
    (tool messages carry text only); without ``vision`` a note names each.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for turn in conversation:
        if isinstance(turn, UserTurn):
            messages.append({"role": "user", "content": turn.text})
        elif isinstance(turn, AssistantTurn):
            calls = [{"id": r.call_id, "type": "function",
                      "function": {"name": "python", "arguments": json.dumps({"code": r.code})}}
                     for r in turn.reply.code if r.via == "tool"]
            calls += [{"id": call_id, "type": "function", "function": {"name": "python", "arguments": raw}}
                      for call_id, raw in turn.reply.malformed]
            message: dict[str, Any] = {"role": "assistant", "content": turn.reply.text or None}
            if calls:
                message["tool_calls"] = calls
            messages.append(message)
        elif isinstance(turn, ObservationTurn):
            shown: list[dict[str, Any]] = []  # image parts, sent after every tool message of the turn
            for obs in turn.observations:
                text = "\n".join([obs.text or "(no output)", *([] if vision else
                                                                [no_vision_note(i, model) for i in obs.images])])
                if obs.via == "tool":
                    messages.append({"role": "tool", "tool_call_id": obs.call_id, "content": text})
                else:
                    messages.append({"role": "user", "content": text})
                for number, image in enumerate(obs.images if vision else (), start=1):
                    label = (f"Image {number} of {len(obs.images)} shown by the cell of call {obs.call_id} "
                             f"(its output {image.output_index + 1}):")
                    shown.append({"type": "text", "text": label})
                    shown.append({"type": "image_url", "image_url": {"url": image.data_url}})
            if shown:
                messages.append({"role": "user", "content": shown})
    return messages


def from_response(response: Any, tool: CodeTool) -> ModelReply:
    """A ModelReply from a Chat Completions response (the first choice)."""
    if not response.choices:
        return ModelReply(text="", stop_reason="no_choices", model=response.model or "")
    choice = response.choices[0]
    message = choice.message
    code: list[CodeRequest] = []
    malformed: list[tuple[str, str]] = []
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        raw = function.arguments if function is not None else ""
        source = _code_from_arguments(raw) if function is not None and function.name == tool.name else None
        if source is None:
            malformed.append((call.id, raw or ""))
        else:
            code.append(CodeRequest(call_id=call.id, code=source))
    usage = response.usage
    cached = 0
    if usage is not None and usage.prompt_tokens_details is not None:
        cached = usage.prompt_tokens_details.cached_tokens or 0
    return ModelReply(
        text=(message.content or "").strip(),
        code=tuple(code),
        usage=Usage(
            input_tokens=max(0, (usage.prompt_tokens or 0) - cached) if usage is not None else 0,
            output_tokens=(usage.completion_tokens or 0) if usage is not None else 0,
            cache_read_tokens=cached,
        ),
        stop_reason=choice.finish_reason or "",
        model=response.model or "",
        malformed=tuple(malformed),
    )


def _code_from_arguments(raw: str) -> str | None:
    """The ``code`` argument; local models sometimes send bare code instead of JSON, which is taken as is."""
    try:
        arguments = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return raw if raw and raw.strip() and not raw.lstrip().startswith("{") else None
    code = arguments.get("code") if isinstance(arguments, dict) else None
    return code if isinstance(code, str) else None
