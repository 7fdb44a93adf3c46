"""An existing kernel, reached through its connection file: attach, and detach when done.

The kernel was started by someone else (``jupyter console --kernel ...``,
a notebook server, a kernel manager of the user's own), so this host cannot
see its process: liveness comes from the kernel's heartbeat channel, an
interrupt is an ``interrupt_request`` on control, and closing a session
*detaches* (the kernel runs on) unless the session was asked to shut it
down. A kernel this host did not start cannot be restarted by it either.

The connection file is the caller's input, read with bounds (size, strict
JSON, field types) as any file handed to the host; its key is the kernel's
and signs what is sent, but what the kernel sends is still untrusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from kernel_agent.errors import KernelStartError, UnsafePathError
from kernel_agent.protocol import strict_json
from kernel_agent.runtime.connection import KernelConnection
from kernel_agent.runtime.ready import wait_ready
from kernel_agent.runtime.source import KernelLease
from kernel_agent.safe_fs import read_small_file
from kernel_agent.sandbox.policy import SandboxPolicy

# A connection file is a few hundred bytes; anything much larger is not one.
_MAX_CONNECTION_FILE_BYTES = 64 * 1024
_PORT_KEYS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
# The heartbeat: a ping every HEARTBEAT_SECONDS; this many unanswered in a row means the kernel is gone.
HEARTBEAT_SECONDS = 1.0
_MISSED_BEATS = 3


def read_connection_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The connection info in ``path``, checked (KernelStartError says what is wrong)."""
    where = Path(path)
    try:
        # A kernel may share the directory of its connection file (ipc kernels do): its last component
        # is never followed, and only a small regular file is read.
        data = read_small_file(where, _MAX_CONNECTION_FILE_BYTES)
    except UnsafePathError as exc:
        raise KernelStartError(f"{where} is not a connection file: {exc}") from None
    except OSError as exc:
        raise KernelStartError(f"cannot read the connection file {where}: {exc.strerror or exc}") from None
    try:
        info = strict_json.loads(data)
    except strict_json.StrictJSONError as exc:
        raise KernelStartError(f"{where} is not a connection file: {exc}") from None
    if not isinstance(info, dict):
        raise KernelStartError(f"{where} is not a connection file: not a JSON object")
    problems = [key for key in _PORT_KEYS if not isinstance(info.get(key), int) or isinstance(info.get(key), bool)]
    if info.get("transport", "tcp") not in ("tcp", "ipc"):
        problems.append("transport")
    problems += [key for key in ("ip", "key") if not isinstance(info.get(key), str)]
    if info.get("signature_scheme", "hmac-sha256") not in ("hmac-sha256", "hmac-sha512"):
        problems.append("signature_scheme")
    if problems:
        raise KernelStartError(f"{where} is not a usable connection file: bad or missing {', '.join(problems)}")
    info = {**info, "transport": info.get("transport", "tcp")}
    if info["transport"] == "ipc":
        _check_ipc_sockets(info, where)
    return info


def _check_ipc_sockets(info: dict[str, Any], where: Path) -> None:
    """ipc endpoints must be sockets, not links: a kernel that can write their directory could plant one.

    This narrows, not closes, the window (libzmq connects by path later);
    kernels launched by kernel-agent are reached through host-only links
    instead (see :mod:`kernel_agent.sandbox.sockets`).
    """
    for key in _PORT_KEYS:
        endpoint = f"{info['ip']}-{info[key]}"
        try:
            status = os.lstat(endpoint)
        except OSError as exc:
            raise KernelStartError(f"{where}: the kernel's socket {endpoint} cannot be used: "
                                   f"{exc.strerror or exc}") from None
        if not stat.S_ISSOCK(status.st_mode):
            raise KernelStartError(f"{where}: {endpoint} is not a socket (a link or a file); refusing to connect")


class AttachedKernel:
    """A kernel started elsewhere, reached through its connection file (a ``Kernel``)."""

    workspace: Path | None = None

    def __init__(self, connection_file: str | os.PathLike[str], *, shutdown_on_close: bool = False) -> None:
        self.connection_file = Path(connection_file).absolute()
        self.shutdown_on_close = shutdown_on_close
        self.connection: KernelConnection | None = None
        self.kernel_info: dict[str, Any] = {}
        self._info: dict[str, Any] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._missed = 0
        self._ended: str | None = None

    @property
    def backend(self) -> dict[str, Any]:
        """A kernel started elsewhere; which file reached it (its key is never recorded)."""
        return {"kind": "connection-file", "connection_file": str(self.connection_file),
                "kernel_name": self._info.get("kernel_name") or None}

    @property
    def enforcement(self) -> dict[str, str]:
        """Nothing is known here of how the kernel is confined: whoever started it decided."""
        return {}

    async def start(self, timeout: float) -> None:
        """Connect and wait until the kernel answers on shell and iopub."""
        self._info = read_connection_file(self.connection_file)
        self.connection = KernelConnection(self._info)
        self.connection.start()
        self._heartbeat = asyncio.create_task(self._beat())
        try:
            await asyncio.wait_for(wait_ready(self), timeout)
        except (TimeoutError, KernelStartError):
            await self.detach()
            where = f"{self._info['transport']}://{self._info['ip']}"
            raise KernelStartError(f"the kernel of {self.connection_file} did not answer within {timeout} s "
                                   f"(at {where}); is it running?") from None

    async def _beat(self) -> None:
        """Ping the heartbeat channel; a kernel that misses a few beats in a row is taken for gone."""
        context = zmq.asyncio.Context.instance()
        url = _url(self._info, "hb_port")
        while self._missed < _MISSED_BEATS:
            socket = context.socket(zmq.REQ)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.MAXMSGSIZE, 1024)  # an echo of our few bytes; anything else is not one
            try:
                socket.connect(url)
                await socket.send(b"ping")
                if await socket.poll(HEARTBEAT_SECONDS * 1000, zmq.POLLIN):  # type: ignore[call-arg]
                    await socket.recv()
                    self._missed = 0
                    await asyncio.sleep(HEARTBEAT_SECONDS)
                else:
                    self._missed += 1
            except zmq.ZMQError:
                self._missed += 1
                await asyncio.sleep(HEARTBEAT_SECONDS)
            finally:
                socket.close(linger=0)
        self._ended = self._ended or (f"it stopped answering its heartbeat ({_MISSED_BEATS} beats of "
                                      f"{HEARTBEAT_SECONDS:g} s missed)")

    def alive(self) -> bool:
        """Whether the kernel answers its heartbeat (and was not shut down by this host)."""
        return self._ended is None and self._missed < _MISSED_BEATS

    def death_reason(self) -> str:
        """Why the kernel is taken for gone."""
        return self._ended or "it is still answering"

    async def interrupt(self) -> None:
        """An interrupt_request on control (ipykernel interrupts itself; the host cannot signal it)."""
        if self.connection is not None:
            self.connection.forget(self.connection.send("control", "interrupt_request", {}))

    async def restarted(self, timeout: float) -> AttachedKernel:
        """Refused: a kernel started elsewhere is restarted by whoever started it (this one is detached)."""
        await self.detach()
        raise KernelStartError(f"the kernel of {self.connection_file} was started outside kernel-agent, so it "
                               f"cannot restart it ({self.death_reason()}); restart it where it was started and "
                               "attach a new session")

    async def kill(self) -> None:
        """Ask the kernel to shut down (a shutdown_request on control), then detach."""
        connection = self.connection
        if connection is not None and self.alive():
            request = connection.send("control", "shutdown_request", {"restart": False})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(request.reply), 5)
            connection.forget(request)
        self._ended = self._ended or "it was shut down by this session"
        await self.detach()

    async def detach(self) -> None:
        """Stop talking to the kernel; it keeps running (idempotent)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self.connection is not None:
            await self.connection.close()
            self.connection = None


def _url(info: dict[str, Any], port_key: str) -> str:
    transport, ip, port = info["transport"], info["ip"], info[port_key]
    return f"ipc://{ip}-{port}" if transport == "ipc" else f"tcp://{ip}:{port}"


class ConnectionFileSource:
    """A :class:`~kernel_agent.runtime.source.KernelSource` handing out the one kernel of a connection file."""

    def __init__(self, connection_file: str | os.PathLike[str], *, policy: SandboxPolicy, startup_timeout: float,
                 shutdown_on_close: bool = False) -> None:
        self.connection_file = Path(connection_file)
        self._policy = policy
        self.startup_timeout = startup_timeout
        self.shutdown_on_close = shutdown_on_close

    @property
    def policy(self) -> SandboxPolicy:
        """The policy the session asked for (the kernel itself runs under whatever its starter chose)."""
        return self._policy

    async def acquire(self, holder: KernelLease) -> AttachedKernel:
        """Attach to the kernel and wait until it answers."""
        kernel = AttachedKernel(self.connection_file, shutdown_on_close=self.shutdown_on_close)
        await kernel.start(self.startup_timeout)
        return kernel

    def release(self, holder: KernelLease) -> None:
        """Nothing to forget."""
