"""Language models for the agent loop: Anthropic, OpenAI (and compatible servers), and a scripted model.

A model is named by a spec string:

- ``anthropic:MODEL``: Claude through the ``anthropic`` SDK (``ANTHROPIC_API_KEY``);
- ``openai:MODEL``: through the ``openai`` SDK (``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` is honoured);
- ``openai:MODEL@URL``: an OpenAI-compatible server at URL (vLLM, llama.cpp, Ollama), no key needed;
- ``scripted:PATH``: a fixed sequence of replies from a file (offline; see :mod:`.scripted`).
"""

from __future__ import annotations

from typing import Any

from kernel_agent.errors import ModelConfigError
from kernel_agent.models.base import (
    CODE_TOOL,
    AssistantTurn,
    CodeRequest,
    CodeTool,
    Model,
    ModelReply,
    Observation,
    ObservationTurn,
    Turn,
    Usage,
    UserTurn,
    conversation_as_text,
)

PROVIDERS = ("anthropic", "openai", "scripted")

__all__ = [
    "CODE_TOOL", "PROVIDERS", "AssistantTurn", "CodeRequest", "CodeTool", "Model", "ModelReply", "Observation",
    "ObservationTurn", "Turn", "Usage", "UserTurn", "conversation_as_text", "model_from_spec",
]


def model_from_spec(spec: str | Model, *, base_url: str | None = None, **options: Any) -> Model:
    """The model a spec names (a Model instance is returned as it is).

    ``options`` go to the provider's class (``api_key``, ``max_tokens``,
    ``max_retries``, ``vision``, ``client``...). Raises ModelConfigError for an unknown
    provider, a malformed spec or a missing API key.
    """
    if not isinstance(spec, str):
        return spec
    provider, colon, name = spec.partition(":")
    if not colon or not name:
        raise ModelConfigError(f"model spec {spec!r} is not PROVIDER:MODEL; providers: {', '.join(PROVIDERS)} "
                               "(for example anthropic:claude-sonnet-4-5, openai:gpt-4.1, scripted:steps.py)")
    if provider == "anthropic":
        from kernel_agent.models.anthropic import AnthropicModel

        return AnthropicModel(name, base_url=base_url, **options)
    if provider == "openai":
        from kernel_agent.models.openai import OpenAIModel

        name, at, url = name.partition("@")
        if not name:
            raise ModelConfigError(f"model spec {spec!r} names no model before the '@'")
        return OpenAIModel(name, base_url=base_url or (url if at else None), **options)
    if provider == "scripted":
        from kernel_agent.models.scripted import ScriptedModel

        vision = options.pop("vision", True)
        if options or base_url:
            given = sorted(options) + (["base_url"] if base_url else [])
            raise ModelConfigError(f"the scripted model takes no options but vision (it calls no server), got "
                                   f"{', '.join(given)}")
        return ScriptedModel.from_file(name, vision=bool(vision))
    raise ModelConfigError(f"unknown model provider {provider!r} in {spec!r}; known: {', '.join(PROVIDERS)}")
