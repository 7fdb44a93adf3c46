"""A sandboxed kernel this host launched (the default :class:`~kernel_agent.runtime.kernel.Kernel`).

Launching goes through jupyter_client and the ``kernel-agent-sandbox``
provisioner, the same one Jupyter Server uses for the kernel-agent
kernelspec. The kernel lives and dies with this host: detaching kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from kernel_agent.errors import KernelStartError, SandboxError, SandboxUnavailableError
from kernel_agent.kernelspec.spec import KERNEL_NAME, SessionKernelSpecManager, kernel_spec_dict
from kernel_agent.runtime.connection import KernelConnection
from kernel_agent.runtime.ready import wait_ready
from kernel_agent.sandbox.policy import SandboxPolicy
from kernel_agent.sandbox.provisioner import SandboxProvisioner

# What bwrap says when the kernel gives it no namespaces (user namespaces disabled, seccomp'd containers).
_NAMESPACE_FAILURES = ("No permissions to create new namespace", "Creating new namespace failed",
                       "setting up uid map", "Operation not permitted", "unshare failed")
_USERNS_HINT = (
    "bubblewrap could not create its namespaces. Allow unprivileged user namespaces "
    "(`sysctl -w kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04+ also "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), run inside a container "
    "that permits them, or choose SandboxPolicy(mode='none') explicitly to run unconfined."
)


class KernelProcess:
    """A sandboxed kernel this host launched, and the connection to it."""

    def __init__(self, policy: SandboxPolicy, workspace: Path) -> None:
        self.policy = policy
        self.workspace = workspace
        self._manager = AsyncKernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=SessionKernelSpecManager(kernel_spec_dict(policy, workspace)),
        )
        self.connection: KernelConnection | None = None
        self.kernel_info: dict[str, Any] = {}
        self.started_at = 0.0

    @property
    def provisioner(self) -> SandboxProvisioner:
        """The provisioner that launched (and confines) this kernel."""
        provisioner = self._manager.provisioner
        if not isinstance(provisioner, SandboxProvisioner):
            raise KernelStartError("the kernel was not launched by the kernel-agent sandbox provisioner")
        return provisioner

    async def start(self, timeout: float) -> None:
        """Launch the kernel and wait until it answers on shell and iopub."""
        self.started_at = time.monotonic()
        try:
            await self._manager.start_kernel()
        except KeyError as exc:  # the provisioner entry point is not installed
            raise KernelStartError(
                f"the jupyter_client provisioner {exc} is not registered: install kernel-agent "
                "(`pip install kernel-agent`, or `pip install -e .` in a checkout)"
            ) from exc
        self.connection = KernelConnection(dict(self._manager.get_connection_info()))
        self.connection.start()
        try:
            await asyncio.wait_for(wait_ready(self), timeout)
        except (TimeoutError, KernelStartError) as exc:
            log = self.provisioner.log_tail()
            await self.kill()
            if any(sign in log for sign in _NAMESPACE_FAILURES):
                raise SandboxUnavailableError(f"{_USERNS_HINT}\nbwrap said: {log}") from None
            if "bwrap:" in log:
                raise SandboxError(f"the sandbox could not start the kernel. bwrap said: {log}") from None
            reason = "exited during start-up" if isinstance(exc, KernelStartError) else f"no answer in {timeout} s"
            raise KernelStartError(f"the kernel {reason}. Kernel log:\n{log or '(empty)'}") from None

    @property
    def backend(self) -> dict[str, Any]:
        """A local sandboxed kernel."""
        return {"kind": "local"}

    @property
    def enforcement(self) -> dict[str, str]:
        """How the provisioner enforces each resource limit."""
        return dict(self.provisioner.enforcement)

    def alive(self) -> bool:
        """Whether the kernel's (sandbox) process is still running."""
        process = getattr(self._manager.provisioner, "process", None)
        return process is not None and process.poll() is None

    def death_reason(self) -> str:
        """Why the kernel process ended, as precisely as the host can tell."""
        provisioner = self.provisioner
        if provisioner.cgroup is not None and provisioner.cgroup.oom_killed():
            return "it was killed for exceeding the session's memory limit"
        process = provisioner.process
        code = process.poll() if process is not None else None
        # bwrap reports the sandboxed process's death by a signal as 128 + signal.
        if code is not None and code > 128:
            return f"it was killed by signal {code - 128}"
        return f"it exited with status {code}"

    async def interrupt(self) -> None:
        """Message-mode interrupt: the kernel signals itself (SIGINT can't cross the pid namespace)."""
        if self.connection is not None:
            request = self.connection.send("control", "interrupt_request", {})
            self.connection.forget(request)

    async def kill(self) -> None:
        """Kill the sandbox and remove everything it used (idempotent)."""
        if self.connection is not None:
            await self.connection.close()
            self.connection = None
        process = getattr(self._manager.provisioner, "process", None)
        try:
            await asyncio.wait_for(self._manager.shutdown_kernel(now=True), 15)
        except Exception:  # noqa: BLE001 - whatever failed, the cleanup below still runs
            # shutdown cleans up after a kill; if it failed part-way, clean up anyway.
            with contextlib.suppress(Exception):
                await self._manager.cleanup_resources()
        # Whatever happened above, the launched process is killed and reaped (no zombie, no
        # "subprocess still running" when it is collected).
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(process.wait, 5)

    def kill_now(self) -> None:
        """SIGKILL the sandbox at once: synchronous, no waiting, safe from any thread or a finalizer.

        bwrap runs the kernel with ``--die-with-parent``, so the whole sandbox dies with it. Only a signal:
        :meth:`kill` still has to be awaited to reap the process and remove what it used (when it is not,
        the stale-run reaper removes that once this host has exited).
        """
        process = getattr(self._manager.provisioner, "process", None)
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()  # Popen checks that it has not reaped the process: never another's pid

    async def detach(self) -> None:
        """A kernel this host launched cannot outlive it: detaching kills it."""
        await self.kill()

    async def restarted(self, timeout: float) -> KernelProcess:
        """Kill this kernel and launch a fresh one on the same workspace, under the same policy."""
        await self.kill()
        fresh = KernelProcess(self.policy, self.workspace)
        await fresh.start(timeout)
        return fresh
