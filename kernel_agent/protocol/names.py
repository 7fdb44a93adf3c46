"""Names both processes must spell the same way (one definition, no "must match" comments)."""

from __future__ import annotations

#: The comm target the in-kernel SDK opens to reach the host's tool bridge.
TOOLS_COMM_TARGET = "kernel_agent.tools"
#: The metadata key under which everything kernel-agent adds to a notebook (and its cells) lives.
METADATA_KEY = "kernel_agent"
