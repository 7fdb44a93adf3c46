"""Apply the session's rlimits to the kernel process before any user code runs.

The host passes them as JSON in ``KERNEL_AGENT_RLIMITS`` ({"RLIMIT_NOFILE": n, ...}).
Soft and hard limits are both set: the kernel has no capability to raise a
hard limit again, so user code cannot undo them.
"""

from __future__ import annotations

import json
import os
import resource

ENV_VAR = "KERNEL_AGENT_RLIMITS"


def apply_rlimits_from_env() -> dict[str, int]:
    """Set every rlimit named in the environment; return what was applied."""
    raw = os.environ.pop(ENV_VAR, "")
    if not raw:
        return {}
    wanted: dict[str, int] = json.loads(raw)
    for name, value in wanted.items():
        which = getattr(resource, name)
        _soft, hard = resource.getrlimit(which)
        # Never try to raise above an existing hard limit: that would fail and
        # a tighter outer limit is fine.
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))
    return wanted
