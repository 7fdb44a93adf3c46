"""A kernel on Jupyter Server, Kernel Gateway or Enterprise Gateway: the remote :class:`~.runtime.kernel.Kernel`.

The server owns the kernel: it starts, interrupts, restarts and shuts it
down (REST), and it can outlive this host. So ending has two forms here, as
the seam intends: :meth:`RemoteKernel.kill` shuts the kernel down on the
server, :meth:`RemoteKernel.detach` only closes this host's websocket (the
kernel keeps running with its state, to be attached again by id).

Liveness is known without I/O on the caller's path: the channels notice the
server's death notices and a closed websocket (see :mod:`.websocket`), and
a background check asks the server every ``check_interval`` seconds whether
the kernel still exists (a kernel killed without a word, e.g. a forced
shutdown of a stuck one, leaves no message behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kernel_agent.errors import KernelStartError
from kernel_agent.runtime.ready import wait_ready
from kernel_agent.runtime.remote.errors import JupyterServerError, KernelNotFoundError, ServerHTTPError
from kernel_agent.runtime.remote.rest import Rest
from kernel_agent.runtime.remote.websocket import WebSocketChannels

logger = logging.getLogger(__name__)
_GONE = "the server no longer has it: it was shut down (through the REST API, or with the server) or culled"


@dataclass(frozen=True)
class ServerKernel:
    """A kernel as the server lists it."""

    id: str
    name: str
    last_activity: datetime.datetime | None
    execution_state: str
    connections: int


class KernelServer(Protocol):
    """What a remote kernel asks of its server (:class:`~kernel_agent.runtime.remote.server.JupyterServer`)."""

    rest: Rest
    check_interval: float | None

    @property
    def url(self) -> str: ...

    async def kernel(self, kernel_id: str) -> ServerKernel: ...

    async def start_kernel(self, *, kernel_name: str | None = None, timeout: float = 60.0) -> RemoteKernel: ...

    async def interrupt(self, kernel_id: str) -> None: ...

    async def restart(self, kernel_id: str, *, timeout: float | None = None) -> None: ...

    async def shutdown(self, kernel_id: str) -> None: ...


class RemoteKernel:
    """A kernel on a Jupyter server, reached over REST and its channels websocket."""

    def __init__(self, server: KernelServer, kernel_id: str, kernel_name: str) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.kernel_name = kernel_name
        self.connection: WebSocketChannels | None = None
        self.kernel_info: dict[str, Any] = {}
        #: Why the server's DELETE failed when this host shut the kernel down (it may still be running).
        self.shutdown_failure: str | None = None
        self._ended: str | None = None
        self._gone = asyncio.Event()  # the background check found the kernel gone (``_gone_reason`` says how)
        self._gone_reason = _GONE
        self._check: asyncio.Task[None] | None = None
        self._killed = False

    def __repr__(self) -> str:
        return f"RemoteKernel({self.kernel_id!r} on {self.server.url!r})"

    @property
    def workspace(self) -> Path | None:
        """None: the kernel works in a directory on the server's machine."""
        return None

    @property
    def backend(self) -> dict[str, Any]:
        """The server (its URL without credentials or query) and the kernel's id and kernelspec."""
        return {"kind": "jupyter-server", "url": self.server.url, "kernel_id": self.kernel_id,
                "kernel_name": self.kernel_name}

    @property
    def enforcement(self) -> dict[str, str]:
        """Nothing known here: the server's kernelspec decides how the kernel is confined."""
        return {}

    async def open(self, timeout: float) -> None:
        """Open the channels and wait until the kernel answers; on failure close them and raise.

        Raises the server's named errors for a refused or failed handshake
        (:class:`KernelNotFoundError` when the kernel is not there) and
        :class:`~kernel_agent.errors.KernelStartError` when it never answers.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        channels = WebSocketChannels(self.server.rest, self.kernel_id, open_timeout=timeout)
        await channels.open()
        self.connection = channels
        try:
            await asyncio.wait_for(wait_ready(self), max(deadline - loop.time(), 0.001))
        except (TimeoutError, KernelStartError):
            reason = channels.end_reason if channels.ended.is_set() else f"no answer within {timeout:g} s"
            await self._close_channels()
            raise KernelStartError(f"the kernel {self.kernel_id} on {self.server.url} did not become ready: "
                                   f"{reason}") from None
        if self.server.check_interval is not None:
            self._check = asyncio.create_task(self._check_exists(self.server.check_interval))

    def alive(self) -> bool:
        """Whether the kernel is still there as this host knows it (no I/O)."""
        connection = self.connection
        return self._ended is None and connection is not None and not connection.ended.is_set() \
            and not self._gone.is_set()

    def death_reason(self) -> str:
        """Why the kernel is gone for this host, as precisely as the server let it know."""
        return self._ended or self._reason_now() or "it is still running"

    def _reason_now(self) -> str | None:
        connection = self.connection
        if connection is not None and connection.ended.is_set():
            return connection.end_reason
        return self._gone_reason if self._gone.is_set() else None

    async def wait_ended(self) -> str:
        """Wait until the kernel is known gone (or this host let it go); return why."""
        connection = self.connection
        if self.alive() and connection is not None:
            waits = [asyncio.ensure_future(connection.ended.wait()), asyncio.ensure_future(self._gone.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        return self.death_reason()

    async def interrupt(self) -> None:
        """The server's interrupt; if the server cannot be asked, an interrupt_request over the websocket."""
        try:
            await self.server.interrupt(self.kernel_id)
        except KernelNotFoundError:
            self._gone.set()
        except JupyterServerError as exc:
            logger.warning("interrupting kernel %s through %s failed (%s); sending interrupt_request on control",
                           self.kernel_id, self.server.url, exc)
            if self.connection is not None:
                self.connection.forget(self.connection.send("control", "interrupt_request", {}))

    async def restarted(self, timeout: float) -> RemoteKernel:
        """The kernel restarted by the server under the same id, with fresh channels; this object is done.

        Fresh channels because a restart may move the kernel's zmq endpoints
        and a websocket opened before it may stay bound to the old ones. The
        restart is always asked of the server, even after a notice that the
        server restarted the kernel itself: the kernel can forge that notice
        (it publishes on the same stream), and a session that reports its
        state lost must have lost it. After such a notice the server's own
        restart is let finish first (asked while it is pending, the server
        answers HTTP 500), at the cost of a second restart. A kernel the server
        no longer has (culled, shut down), or cannot restart, is replaced by
        a new one of the same kernelspec (new id).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        revived = self.connection is not None and self.connection.server_restarted
        self._ended = self._ended or self._reason_now() or "it was restarted by this host"
        await self._close_channels()
        if revived:
            # Let the server's own restart finish first (asked again while it is pending, it answers HTTP 500):
            # the kernel answering on fresh channels says it has.
            with contextlib.suppress(KernelStartError, JupyterServerError):
                settled = await self._reopened(max(deadline - loop.time(), 0.001) / 3, shut_down_if_mute=False)
                await settled._close_channels()
        remaining = max(deadline - loop.time(), 0.001)
        try:
            await self.server.restart(self.kernel_id, timeout=remaining)
        except KernelNotFoundError:
            return await self.server.start_kernel(kernel_name=self.kernel_name, timeout=remaining)
        except ServerHTTPError as exc:
            logger.warning("the server could not restart kernel %s (%s); starting a new kernel in its place",
                           self.kernel_id, exc)
            with contextlib.suppress(JupyterServerError):
                await self.server.shutdown(self.kernel_id)
            return await self.server.start_kernel(kernel_name=self.kernel_name,
                                                  timeout=max(deadline - loop.time(), 0.001))
        return await self._reopened(max(deadline - loop.time(), 0.001))

    async def _reopened(self, timeout: float, *, shut_down_if_mute: bool = True) -> RemoteKernel:
        """This kernel (same id) with fresh channels, ready; shut down if it never answers (unless told not to)."""
        fresh = RemoteKernel(self.server, self.kernel_id, self.kernel_name)
        try:
            await fresh.open(timeout)
        except KernelNotFoundError:
            raise
        except BaseException:
            if shut_down_if_mute:
                await fresh.kill()
            raise
        return fresh

    async def kill(self) -> None:
        """Shut the kernel down on the server (idempotent; a kernel already gone is no error).

        Never raises: when the server cannot be asked, the failure is logged
        and kept in ``shutdown_failure`` (the kernel may still be running there).
        """
        if self._killed:
            return
        self._killed = True
        self._ended = self._ended or self._reason_now() or "it was shut down by this host"
        await self._close_channels()
        try:
            await self.server.shutdown(self.kernel_id)
        except KernelNotFoundError:
            pass
        except JupyterServerError as exc:
            self.shutdown_failure = str(exc)
            logger.warning("could not shut down kernel %s on %s: %s", self.kernel_id, self.server.url, exc)

    async def detach(self) -> None:
        """Close this host's websocket; the kernel keeps running on the server with its state (idempotent)."""
        self._ended = self._ended or self._reason_now() or "this host detached from it (it keeps running)"
        await self._close_channels()

    async def _close_channels(self) -> None:
        check, self._check = self._check, None
        if check is not None:
            check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await check
        connection, self.connection = self.connection, None
        if connection is not None:
            await connection.close()

    async def _check_exists(self, interval: float) -> None:
        """Ask the server now and then whether the kernel still exists (a cheap GET that is not activity)."""
        while True:
            await asyncio.sleep(interval)
            try:
                model = await self.server.kernel(self.kernel_id)
            except KernelNotFoundError:
                self._gone.set()
                return
            except JupyterServerError:
                continue  # unreachable for now: a closed websocket says more if it stays so
            if model.execution_state == "dead":
                self._gone_reason = "the server reports it dead (it died and could not be restarted)"
                self._gone.set()
                return
