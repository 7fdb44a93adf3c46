"""The call policy: a hook that allows, denies or asks for approval before every tool call."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from kernel_agent.tools.tool import Tool


class Decision(str, Enum):
    """What the policy says about one call."""

    ALLOW = "allow"
    DENY = "deny"
    ASK = "ask"  # the session's approver decides


@dataclass(frozen=True)
class CallRequest:
    """What a policy or an approver sees: the tool and the validated-to-be arguments."""

    tool: Tool
    arguments: dict[str, Any]
    cell: int | None


PolicyResult = Decision | str | tuple[Decision | str, str]
Policy = Callable[[CallRequest], PolicyResult | Awaitable[PolicyResult]]
Approver = Callable[[CallRequest], bool | Awaitable[bool]]


def allow_all(request: CallRequest) -> Decision:
    """The default policy."""
    return Decision.ALLOW


def ask_for_destructive(request: CallRequest) -> Decision:
    """Ask the approver before any tool flagged destructive; allow the rest."""
    return Decision.ASK if request.tool.destructive else Decision.ALLOW


async def decide(policy: Policy, approver: Approver | None, request: CallRequest) -> tuple[bool, str]:
    """Run the policy (and the approver when it asks): (allowed, reason when refused)."""
    outcome = policy(request)
    if inspect.isawaitable(outcome):
        outcome = await outcome
    decision, reason = outcome if isinstance(outcome, tuple) else (outcome, "")
    decision = Decision(decision)
    if decision is Decision.ALLOW:
        return True, ""
    if decision is Decision.DENY:
        return False, reason or f"the session's policy does not allow {request.tool.qualified_name}"
    if approver is None:
        return False, reason or f"{request.tool.qualified_name} needs approval and no approver is configured"
    approved = approver(request)
    if inspect.isawaitable(approved):
        approved = await approved
    return (True, "") if approved else (False, reason or f"{request.tool.qualified_name} was not approved")
