"""A provider's model without its API key, for an experiment re-run from its reply cache.

A repository can ship a real-model experiment's reply cache so that others
re-run it offline. The run still needs the model's spec, provider and vision
(they are in the cache keys and the system prompt), but not a key: the model
is made with a placeholder that is never sent, and asking it for a reply the
cache does not hold raises the original "no API key" error, so that run
becomes a row saying why and the others go on.
"""

from __future__ import annotations

from kernel_agent.errors import MissingApiKeyError
from kernel_agent.models.base import CodeTool, Model, ModelReply, Turn, takes_images

#: Given to the provider's client in place of a key; nothing is ever sent with it (see complete()).
_NEVER_SENT = "kernel-agent-offline-no-key"


class CacheOnlyModel:
    """``spec``'s model, answering only through the reply cache: any real request raises ``missing``."""

    def __init__(self, spec: str, missing: MissingApiKeyError) -> None:
        from kernel_agent.models import model_from_spec

        self._model: Model = model_from_spec(spec, api_key=_NEVER_SENT)
        self.spec = self._model.spec
        self.provider = self._model.provider
        self.vision = takes_images(self._model)
        self._missing = str(missing)

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        raise MissingApiKeyError(f"{self._missing} (the reply cache holds no reply for this conversation, so the "
                                 "model would have to be asked)")

    async def close(self) -> None:
        await self._model.close()
