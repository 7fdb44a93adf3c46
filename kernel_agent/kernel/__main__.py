"""Start the kernel: ``python -m kernel_agent.kernel -f CONNECTION_FILE``.

Runs inside the sandbox. Order matters: the unprivileged identity and the
limits first (before any user code),
then the optional imports that only slow start-up are blocked, then ipykernel.
"""

from __future__ import annotations

import sys

from kernel_agent.kernel.identity import drop_privileges_from_env
from kernel_agent.kernel.limits import apply_rlimits_from_env

# Imports ipykernel and IPython try at start-up that the sandboxed kernel does
# not use: jedi (IPython falls back to its own completer) and debugpy (no
# debugger inside the sandbox). Blocking them saves about 0.15 s of start-up.
_BLOCKED_OPTIONAL_IMPORTS = ("jedi", "debugpy")

# History is kept, as every Jupyter frontend expects (history_request: tail,
# range, search), but only in memory: an sqlite database that is never a file,
# so nothing of it is written in the workspace or anywhere else (and no saving
# thread runs). Jedi completion is per-request overhead an agent kernel does
# not need.
_KERNEL_CONFIG = [
    "--HistoryManager.hist_file=:memory:",
    "--Completer.use_jedi=False",
    "--IPKernelApp.quiet=True",
]


def main() -> None:
    """Drop privileges, apply limits, then run the kernel until it is shut down."""
    drop_privileges_from_env()
    apply_rlimits_from_env()
    for name in _BLOCKED_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    from kernel_agent.kernel.agent_kernel import AgentKernel
    from kernel_agent.kernel.app import AgentKernelApp
    from kernel_agent.kernel.pythonpath import add_from_env

    add_from_env()  # after the kernel's own imports: an environment cannot swap the kernel's runtime
    AgentKernelApp.launch_instance(argv=[*sys.argv[1:], *_KERNEL_CONFIG], kernel_class=AgentKernel)


if __name__ == "__main__":
    main()
