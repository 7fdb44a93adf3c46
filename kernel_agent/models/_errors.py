"""Provider SDK exceptions, translated into kernel-agent's own tree with a message a user can act on.

Both official SDKs retry rate limits, overloads and 5xx themselves (with the
server's retry-after); what reaches here is what is left after those retries.
"""

from __future__ import annotations

import json
from typing import Any

from kernel_agent.errors import ModelConfigError, ModelError, ModelResponseError, ModelUnreachableError


def translate(exc: Exception, provider: str, base_url: str, sdk: Any) -> ModelError:
    """The kernel-agent exception for an exception raised by ``sdk`` (the anthropic or openai module)."""
    if isinstance(exc, json.JSONDecodeError):
        # The SDK parsed a successful reply that is not JSON (a proxy's HTML page, a server that
        # is not an API at all): say who answered and what came back, not just the parser's complaint.
        sent = " ".join(exc.doc.split())
        shown = sent[:300] + ("…" if len(sent) > 300 else "") if sent else "an empty body"
        return ModelResponseError(f"{provider}: the server at {base_url} answered with something that is not JSON "
                                  f"({exc.msg} at character {exc.pos}): {shown!r}. Is that the provider's API URL?")
    if isinstance(exc, sdk.APITimeoutError):
        return ModelUnreachableError(f"{provider}: no answer from {base_url} in time ({exc})")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        return ModelUnreachableError(f"{provider}: could not reach {base_url}: {cause}")
    if isinstance(exc, sdk.AuthenticationError):
        return ModelConfigError(f"{provider}: the API key was refused ({_detail(exc)})")
    if isinstance(exc, sdk.RateLimitError):
        return ModelResponseError(f"{provider}: rate limited even after retrying ({_detail(exc)})")
    if isinstance(exc, sdk.APIStatusError):
        return ModelResponseError(f"{provider}: HTTP {exc.status_code} from {base_url}: {_detail(exc)}")
    return ModelError(f"{provider}: {type(exc).__name__}: {exc}")


def _detail(exc: Any) -> str:
    """The provider's own error message, from its JSON body when it has one."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(getattr(exc, "message", exc))
