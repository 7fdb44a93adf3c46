"""Approvals for MCP clients: a host tool call the policy ASKs about goes to the user through MCP elicitation.

Only a client that declared the elicitation capability can be asked, and only
while one of its ``run_python`` calls is in flight (the question travels on
that request's stream). Otherwise the server's configured answer applies
(``unattended``, "deny" by default), with a reason naming why. The question
shows the tool and its arguments as the kernel sent them: hostile text, so it
is bounded and shown as JSON, never interpreted. A client that never answers
is refused after ``approval_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mcp.server.elicitation import AcceptedElicitation
from pydantic import BaseModel, Field

from kernel_agent.mcp_server.inert import inert
from kernel_agent.tools.policy import CallRequest, Decision, PolicyResult

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

    from kernel_agent.mcp_server.config import ServeConfig

logger = logging.getLogger("kernel_agent.mcp_server")

_ARGUMENTS_SHOWN = 1500  # characters of a call's arguments shown in the question


class Approval(BaseModel):
    """The form the user answers (MCP elicitation allows flat, primitive fields only)."""

    approve: bool = Field(description="Allow this one call?")


class Approvals:
    """The policy and approver of one client session's kernel sessions."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        # The run_python calls in flight, newest last: the question goes on the newest one's stream
        # (a client may send calls concurrently; they queue for the kernel, and any of them can carry it).
        self._asking: list[Context] = []
        self.asked = 0
        self.approved = 0
        self._one_question = asyncio.Lock()

    @contextlib.contextmanager
    def asking_through(self, context: Context) -> Iterator[None]:
        """While the block runs, calls needing approval are put to the client of ``context``."""
        self._asking.append(context)
        try:
            yield
        finally:
            self._asking.remove(context)

    def _can_ask(self) -> bool:
        if not self._asking:
            return False
        capabilities = self._asking[-1].request_context.session.client_capabilities
        return capabilities is not None and capabilities.elicitation is not None

    async def policy(self, request: CallRequest) -> PolicyResult:
        """The configured policy; an ASK the client cannot be asked about becomes the configured answer."""
        outcome = self.config.tool_policy(request)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        decision, reason = outcome if isinstance(outcome, tuple) else (outcome, "")
        if Decision(decision) is not Decision.ASK or self._can_ask():
            return outcome
        if self.config.unattended == "allow":
            return Decision.ALLOW
        return Decision.DENY, reason or (
            f"{request.tool.qualified_name} needs the user's approval, and this MCP client cannot be asked (it did "
            "not declare the elicitation capability); the server's answer without asking is deny")

    async def approve(self, request: CallRequest) -> bool:
        """Ask the user through the client (elicitation); anything but an explicit yes is a no."""
        # One question at a time: a kernel that fires a thousand calls at once must not open a thousand
        # dialogs on the user's screen; the others wait their turn (within the tool call's timeout).
        async with self._one_question:
            if not self._asking:
                return self.config.unattended == "allow"
            context = self._asking[-1]  # chosen once it is our turn: the call in flight now
            self.asked += 1
            message = (f"The code running in your kernel-agent session wants to call the host tool "
                       f"{inert(request.tool.qualified_name)} with these arguments:\n{_shown(request.arguments)}\n"
                       "Allow this call?")
            try:
                answer = await asyncio.wait_for(context.elicit(message, Approval), self.config.limits.approval_timeout)
            except Exception as exc:  # noqa: BLE001 - no answer, a broken client, a timeout: all mean "not approved"
                logger.info("approval of %s not obtained: %s", request.tool.qualified_name, type(exc).__name__)
                return False
        approved = isinstance(answer, AcceptedElicitation) and answer.data.approve is True
        self.approved += approved
        return approved


def _shown(arguments: dict[str, Any]) -> str:
    text = json.dumps(arguments, default=repr, ensure_ascii=True, sort_keys=True)
    if len(text) > _ARGUMENTS_SHOWN:
        text = text[:_ARGUMENTS_SHOWN] + f"... ({len(text):,} characters in all)"
    return text
