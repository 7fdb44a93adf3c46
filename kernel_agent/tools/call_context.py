"""Which session and cell a tool call came from, for tools that keep state per session.

The bridge sets :data:`CURRENT_CALL` in the task that serves a call, just
before the tool runs; a sync handler sees it too (``asyncio.to_thread``
copies the context). The session is known by its bridge (one per session,
for its whole life): a key for per-session state, never something to call.
``facts`` are what the session says of itself (its id, its notebook, the
model's spec, the trees its sandbox may write): given by the host, never by
the kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class CallContext:
    """The session (its bridge, as an identity key) and the cell a tool call came from.

    ``facts`` are asked of the session (``describe``) only when a tool reads them, once per call:
    working them out costs path lookups that most tool calls have no use for.
    """

    session: object
    cell: int | None
    describe: Callable[[], Mapping[str, Any]] = dict

    @cached_property
    def facts(self) -> Mapping[str, Any]:
        """What the session says of itself: ``session_id``, ``notebook``, ``model``, ``writable``."""
        return self.describe()


#: The call being served in this task (None: a tool called by the host itself, outside any bridge).
CURRENT_CALL: ContextVar[CallContext | None] = ContextVar("kernel_agent_tool_call", default=None)


def current_call() -> CallContext | None:
    """The call being served here, or None when the host calls the tool directly."""
    return CURRENT_CALL.get()
