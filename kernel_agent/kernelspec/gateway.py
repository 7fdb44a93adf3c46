"""The kernelspec variant for gateways that run the kernel command themselves: Enterprise Gateway 3.x.

Enterprise Gateway 3.x is built on jupyter_client 6, which has no kernel
provisioners: its local process proxy runs the kernelspec's ``argv`` and hands
the kernel a connection file with TCP ports on the host. So this variant's
argv is a launcher, ``python -m kernel_agent.kernelspec.gateway -f
{connection_file}``, which

1. binds the gateway's TCP ports (:class:`~kernel_agent.kernelspec.tcp_relay.TcpRelay`);
2. launches the kernel exactly as every kernel-agent session does, through
   jupyter_client and the ``kernel-agent-sandbox`` provisioner (private run
   directory, ipc sockets, cgroups, bwrap, seccomp, an unprivileged uid on a
   root host), with the gateway's message key, and a private workspace that
   is removed at the end unless the kernelspec names one (``--workspace``);
3. relays the ports to the kernel's sockets until the kernel ends (a
   ``shutdown_request``, a crash, the memory limit) or the launcher is told to
   stop (SIGTERM, SIGHUP); SIGINT becomes a message-mode interrupt;
4. stops the sandbox and cleans up as a session does, and exits with the
   kernel's status, so the gateway notices a death and restarts the kernel
   on the same ports (its clients keep their connections).

The gateway never chooses a host path for the kernel: the workspace and the
policy come from the installed kernel.json only, never from a request.
``kernel-agent kernelspec install --variant gateway`` installs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.manager import AsyncKernelManager

from kernel_agent.errors import KernelAgentError
from kernel_agent.kernelspec.spec import KERNEL_NAME, SessionKernelSpecManager, install_kernelspec, kernel_spec_dict
from kernel_agent.kernelspec.tcp_relay import CHANNELS, TcpRelay
from kernel_agent.protocol import strict_json
from kernel_agent.safe_fs import read_small_file
from kernel_agent.sandbox.hostlocks import make_held_dir, remove_held_dir
from kernel_agent.sandbox.policy import SandboxPolicy
from kernel_agent.sandbox.provisioner import RUN_DIR_PREFIX, SandboxProvisioner

GATEWAY_KERNEL_NAME = "kernel-agent-gateway"
LAUNCHER_MODULE = "kernel_agent.kernelspec.gateway"
#: Enterprise Gateway's default process proxy, named so that the intent is explicit in kernel.json.
LOCAL_PROCESS_PROXY = "enterprise_gateway.services.processproxies.processproxy.LocalProcessProxy"
EXIT_BAD_CONNECTION_FILE = 2
_PREFIX = "kernel-agent gateway launcher"


def gateway_kernel_spec_dict(policy: SandboxPolicy | None = None, workspace: Path | None = None) -> dict[str, Any]:
    """kernel.json of the gateway variant: the session kernelspec, launched through this module."""
    spec = kernel_spec_dict()
    argv = [spec["argv"][0], "-m", LAUNCHER_MODULE, "-f", "{connection_file}"]
    if policy is not None:
        argv += ["--policy", policy.model_dump_json(exclude_defaults=True)]
    if workspace is not None:
        argv += ["--workspace", str(workspace)]
    spec["argv"] = argv
    spec["display_name"] = "kernel-agent (sandboxed Python, for gateways)"
    # No kernel_provisioner: jupyter_client 6 ignores it, and a jupyter_client 8 server must run the argv
    # too (the launcher applies the provisioner itself).
    spec["metadata"] = {"debugger": False, "process_proxy": {"class_name": LOCAL_PROCESS_PROXY}}
    return spec


def install_gateway_kernelspec(*, user: bool = True, prefix: str | None = None) -> str:
    """Install the gateway variant (``kernel-agent-gateway``); return the directory it went to."""
    return install_kernelspec(user=user, prefix=prefix, name=GATEWAY_KERNEL_NAME, spec=gateway_kernel_spec_dict())


# A connection file is a few hundred bytes.
_MAX_CONNECTION_FILE_BYTES = 64 * 1024


def read_connection_file(path: Path) -> dict[str, Any]:
    """The gateway's connection file, checked: TCP, five ports, a key and its scheme."""
    # The gateway's runtime directory is not the kernel's, but the file is still read as input: no link
    # followed, no FIFO blocked on, a few kilobytes at most.
    info = strict_json.loads(read_small_file(path, _MAX_CONNECTION_FILE_BYTES))
    if not isinstance(info, dict):
        raise ValueError("it is not a JSON object")
    if info.get("transport") != "tcp":
        raise ValueError(f"its transport is {info.get('transport')!r}: this launcher relays TCP ports only "
                         f"(the {KERNEL_NAME} kernelspec serves ipc kernels directly)")
    if not isinstance(info.get("ip"), str) or not info["ip"]:
        raise ValueError("it names no ip")
    for channel in CHANNELS:
        port = info.get(f"{channel}_port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"its {channel}_port is not a TCP port: {port!r}")
    if not isinstance(info.get("key"), str) or not isinstance(info.get("signature_scheme"), str):
        raise ValueError("it has no message key or signature scheme")
    return info


class GatewayKernel:
    """One sandboxed kernel serving a gateway's TCP ports, from launch to cleanup."""

    def __init__(self, gateway_info: dict[str, Any], policy: SandboxPolicy, workspace: Path | None) -> None:
        self._gateway_info = gateway_info
        self._policy = policy
        self._given_workspace = workspace
        self._workspace: Path | None = None
        self._relay = TcpRelay(gateway_info)
        self._manager: AsyncKernelManager | None = None
        self._stop = asyncio.Event()
        self._interrupts: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Serve until the kernel ends or a stop signal arrives; return the exit status for the gateway."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        try:
            self._relay.bind()
            self._workspace = self._given_workspace or make_held_dir(f"{RUN_DIR_PREFIX}{os.getpid()}-workspace-")
            manager = self._manager = AsyncKernelManager(
                kernel_name=KERNEL_NAME,
                kernel_spec_manager=SessionKernelSpecManager(kernel_spec_dict(self._policy, self._workspace)))
            # The gateway signs with its key; the kernel must verify with the same one (the relay never re-signs).
            manager.session.signature_scheme = self._gateway_info["signature_scheme"]
            manager.session.key = self._gateway_info["key"].encode()
            await manager.start_kernel()
            process = self._process()
            if process is None or process.poll() is not None:
                return self._report_death()
            self._relay.connect(dict(manager.get_connection_info()))
            died = asyncio.ensure_future(_exited(process))
            stopped = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({died, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (died, stopped):
                waiter.cancel()
            if self._stop.is_set():
                return 0
            return self._report_death()
        finally:
            await self._clean_up()

    def _process(self) -> subprocess.Popen[bytes] | None:
        provisioner = self._manager.provisioner if self._manager is not None else None
        return getattr(provisioner, "process", None)

    def _on_sigint(self) -> None:
        """A gateway that interrupts by signal gets a message-mode interrupt (SIGINT cannot enter the sandbox)."""
        task = asyncio.get_running_loop().create_task(self._interrupt())
        self._interrupts.add(task)
        task.add_done_callback(self._interrupts.discard)

    async def _interrupt(self) -> None:
        if self._manager is not None and self._manager.has_kernel:
            with contextlib.suppress(Exception):  # a kernel that is gone has nothing to interrupt
                await self._manager.interrupt_kernel()

    def _report_death(self) -> int:
        """Say on stderr (the gateway's log) why the kernel ended; its exit status, never 0 for a crash."""
        provisioner = self._manager.provisioner if self._manager is not None else None
        process = self._process()
        code = process.poll() if process is not None else None
        if isinstance(provisioner, SandboxProvisioner):
            if provisioner.cgroup is not None and provisioner.cgroup.oom_killed():
                print(f"{_PREFIX}: the kernel was killed for exceeding its memory limit", file=sys.stderr)
                return 1
            if code:
                print(f"{_PREFIX}: the kernel exited with status {code}. Kernel log:\n{provisioner.log_tail()}",
                      file=sys.stderr)
        return 1 if code is None else code

    async def _clean_up(self) -> None:
        manager = self._manager
        if manager is not None:
            process = self._process()
            try:
                await asyncio.wait_for(manager.shutdown_kernel(now=True), 15)
            except Exception:  # noqa: BLE001 - whatever failed, the sandbox is still cleaned up below
                with contextlib.suppress(Exception):
                    await manager.cleanup_resources()
            if process is not None and process.poll() is None:
                with contextlib.suppress(OSError):
                    process.kill()
                await asyncio.to_thread(process.wait)
        await self._relay.close()
        if self._workspace is not None and self._given_workspace is None:
            # After the provisioner gave the lent workspace back: removed by descriptor, links never followed.
            await asyncio.to_thread(remove_held_dir, self._workspace)


async def _exited(process: subprocess.Popen[bytes]) -> None:
    """Wait for the sandbox process to end, without polling and without reaping it (jupyter_client does)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:  # a kernel without pidfds (before Linux 5.3): a thread waits instead
        await asyncio.to_thread(os.waitid, os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        return
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, ended.set)
    try:
        await ended.wait()
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kernel_agent.kernelspec.gateway -f CONNECTION_FILE [--policy JSON] [--workspace DIR]``."""
    parser = argparse.ArgumentParser(prog=f"python -m {LAUNCHER_MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("-f", dest="connection_file", required=True, type=Path,
                        help="the connection file the gateway wrote (TCP ports)")
    parser.add_argument("--policy", default="{}", help="the SandboxPolicy as JSON (default: the strict policy)")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="a writable directory lent to the kernel; default: a private one, removed at the end")
    options = parser.parse_args(argv)
    try:
        gateway_info = read_connection_file(options.connection_file)
        policy = SandboxPolicy.model_validate_json(options.policy)
    except (OSError, ValueError, KernelAgentError) as exc:  # KernelAgentError: UnsafePathError (a link, a FIFO)
        print(f"{_PREFIX}: unusable connection file or policy: {exc}", file=sys.stderr)
        return EXIT_BAD_CONNECTION_FILE
    try:
        return asyncio.run(GatewayKernel(gateway_info, policy, options.workspace).run())
    except (KernelAgentError, zmq.ZMQError) as exc:  # no sandbox here, a port already taken
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
