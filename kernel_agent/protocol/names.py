"""Names both processes must spell the same way (one definition, no "must match" comments)."""

from __future__ import annotations

#: The comm target the in-kernel SDK opens to reach the host's tool bridge.
TOOLS_COMM_TARGET = "kernel_agent.tools"
#: The metadata key under which everything kernel-agent adds to a notebook (and its cells) lives.
METADATA_KEY = "kernel_agent"
#: The environment variable naming the directories the kernel puts first on its sys.path (os.pathsep-separated):
#: the session's package directory and the sandbox policy's python_env.
PYTHON_PATH_ENV = "KERNEL_AGENT_PYTHON_PATH"
#: The host tool a kernel asks for packages with (``%pip install``): registered when a session has a package policy.
PACKAGES_NAMESPACE, PACKAGES_INSTALL = "packages", "install"
#: The largest session seed (the smallest is 0): what NumPy's legacy global generator accepts.
SEED_MAX = 2**32 - 1
