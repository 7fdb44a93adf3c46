"""What ``kernel-agent mcp`` serves: where each client's tools come from, and the limits every client session has."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kernel_agent.agent.images import ImageLimits
from kernel_agent.sandbox.policy import SandboxPolicy
from kernel_agent.tools.policy import Policy, allow_all


@dataclass(frozen=True)
class ClientLimits:
    """The budgets and bounds of one client session (and how many there may be at once).

    ``max_sessions`` client sessions hold a kernel at once (the next gets
    TooManySessionsError); a session idle ``idle_timeout`` seconds is closed.
    Per session: ``cell_timeout`` seconds a cell, ``max_cells`` cells,
    ``max_tool_calls`` host tool calls, ``max_session_seconds`` of wall time
    (None: no limit). ``observation_limit`` characters of a cell's output go
    back; ``images`` (False for a text-only client) sends the plots a cell
    showed as MCP images, within ``image_limits``. ``max_read_bytes`` bounds
    ``read_file``; ``max_code_chars`` the code of one call; an approval asked
    through elicitation is refused after ``approval_timeout`` seconds. A client may have
    ``max_pending_calls`` ``run_python`` calls running or waiting for its kernel at once (each holds its
    code in the server's memory until it runs).
    """

    max_sessions: int = 8
    idle_timeout: float | None = 1800.0
    cell_timeout: float = 300.0
    max_cells: int | None = None
    max_tool_calls: int | None = None
    max_session_seconds: float | None = None
    observation_limit: int = 4000
    images: bool = True
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    max_read_bytes: int = 256_000
    max_code_chars: int = 200_000
    approval_timeout: float = 300.0
    max_pending_calls: int = 8

    def __post_init__(self) -> None:
        if self.max_sessions < 1 or self.cell_timeout <= 0 or self.observation_limit < 200:
            raise ValueError("max_sessions must be at least 1, cell_timeout positive and observation_limit at "
                             "least 200 characters")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive (or None: never)")


@dataclass(frozen=True)
class ServeConfig:
    """Everything the server needs: ``tools`` makes a fresh tool list for each client session.

    A fresh list because tool sources (MCP servers, OpenAPI sources) are
    started and closed with the session that uses them. ``tool_policy``
    decides every host tool call; a call it ASKs about is put to the user
    through MCP elicitation when the client declared that capability, else
    answered ``unattended`` ("deny" by default). Sessions come from a warm
    pool of ``pool_size`` kernels confined by ``policy``, their workspaces
    under ``workspace_root`` (default: the temporary directory), their
    notebooks in ``record_dir`` (default: the host's record directory).
    ``session_options`` go to every Session (package policy...).
    """

    tools: Callable[[], list[Any]] = list
    limits: ClientLimits = field(default_factory=ClientLimits)
    tool_policy: Policy = allow_all
    unattended: Literal["deny", "allow"] = "deny"
    policy: SandboxPolicy | None = None
    pool_size: int = 1
    workspace_root: Path | None = None
    record_dir: Path | None = None
    session_options: dict[str, Any] = field(default_factory=dict)
    name: str = "kernel-agent"
