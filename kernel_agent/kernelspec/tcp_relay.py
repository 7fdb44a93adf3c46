"""Relays a gateway's TCP ports to a sandboxed kernel's ipc sockets.

A gateway that runs the kernelspec's argv itself (Enterprise Gateway 3.x's
local process proxy, or any jupyter_client without our provisioner) writes a
connection file with TCP ports on the host and expects the kernel to bind
them. The sandbox shares no network with the host, so the kernel cannot: it
binds ipc sockets, and this relay binds the gateway's ports and forwards each
one to the kernel's socket, frame for frame, without parsing or signing
anything (the gateway and the kernel share the message key):

- shell, control, stdin and heartbeat: ROUTER (the gateway's side) to DEALER
  (the kernel's side). The kernel's ROUTER sees the relay's identity before
  the client's, and routes its replies back through it. shell, control and
  stdin share one identity, because the kernel sends an ``input_request`` on
  stdin to the identities of the shell request it answers.
- iopub: XPUB to XSUB. Every subscription is passed on (``XPUB_VERBOSE``);
  the kernel's own XPUB greets the first (``iopub_welcome``), as it would a
  direct subscriber.

The kernel is untrusted and the relay runs on the host, so what it holds is
bounded: every frame is capped (``MAXMSGSIZE``: 64 MiB, 40 MiB on iopub, as
the host's own connection caps them) and queues are short. libzmq drops a
connection that sends a frame over the cap and does not reconnect it; the
relay watches each kernel-side socket and replaces a dropped one (messages in
flight on it are lost, which is what the cap is for). The kernel's sockets
are reached only through the host-only links the provisioner made (see
:mod:`kernel_agent.sandbox.sockets`), so a reconnection cannot be redirected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

CHANNELS = ("shell", "control", "stdin", "hb", "iopub")
#: Largest frame relayed on shell, control and stdin (execute replies carry tracebacks).
MAX_FRAME_BYTES = 64 * 1024**2
#: Largest frame relayed on iopub: a 32 MiB tool-call request plus its envelope.
MAX_IOPUB_FRAME_BYTES = 40 * 1024**2
#: A heartbeat is a few bytes echoed back.
MAX_HEARTBEAT_FRAME_BYTES = 64 * 1024
#: Messages queued per socket and peer before libzmq stops reading (ROUTER/DEALER) or drops (XPUB): few, since
#: each may be a full frame (4 x 40 MiB on iopub, as the host's own connection queues 8) and the relay runs on the
#: host, outside the sandbox's memory limit. The heartbeat's frames are tiny: its queue is longer.
QUEUE_MESSAGES = 4
HEARTBEAT_QUEUE_MESSAGES = 64
_SUBSCRIBE_ALL = b"\x01"


def url(transport: str, ip: str, port: int) -> str:
    """A zmq endpoint as jupyter_client spells it (ipc paths carry the port as a suffix)."""
    return f"tcp://{ip}:{port}" if transport == "tcp" else f"ipc://{ip}-{port}"


@dataclass
class _Channel:
    """One relayed channel: the bound gateway-side socket and the kernel-side socket it forwards to."""

    name: str
    front: zmq.asyncio.Socket
    back: zmq.asyncio.Socket | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class TcpRelay:
    """Binds a gateway's TCP ports, then forwards them to a kernel's ipc sockets until closed."""

    def __init__(self, gateway_info: Mapping[str, Any]) -> None:
        self._gateway = gateway_info
        self._context = zmq.asyncio.Context()
        # shell, control and stdin must reach the kernel under one identity (see the module docstring).
        self._identity = os.urandom(16)
        self._kernel: Mapping[str, Any] | None = None
        self._channels: dict[str, _Channel] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._closing = False
        #: How many times a kernel-side connection was dropped and replaced (a frame over its cap).
        self.replaced = 0

    def bind(self) -> None:
        """Bind every TCP port of the gateway's connection file (before the kernel starts, so none is lost)."""
        for name in CHANNELS:
            front = self._context.socket(zmq.XPUB if name == "iopub" else zmq.ROUTER)
            front.setsockopt(zmq.LINGER, 0)
            front.setsockopt(zmq.MAXMSGSIZE, _cap(name))
            front.setsockopt(zmq.SNDHWM, _queue(name))
            front.setsockopt(zmq.RCVHWM, _queue(name))
            if name == "iopub":
                front.setsockopt(zmq.XPUB_VERBOSE, 1)
            try:
                front.bind(url("tcp", self._gateway["ip"], self._gateway[f"{name}_port"]))
            except zmq.ZMQError:
                front.close(linger=0)
                raise
            self._channels[name] = _Channel(name, front)

    def connect(self, kernel_info: Mapping[str, Any]) -> None:
        """Start forwarding to the kernel whose (ipc) connection info is given."""
        self._kernel = kernel_info
        for channel in self._channels.values():
            self._attach(channel, resubscribe=False)
            monitor = self._watch(channel)
            self._watchers.append(asyncio.create_task(monitor, name=f"relay-watch-{channel.name}"))

    def _attach(self, channel: _Channel, *, resubscribe: bool) -> None:
        assert self._kernel is not None
        back = self._context.socket(zmq.XSUB if channel.name == "iopub" else zmq.DEALER)
        back.setsockopt(zmq.LINGER, 0)
        back.setsockopt(zmq.MAXMSGSIZE, _cap(channel.name))
        back.setsockopt(zmq.SNDHWM, _queue(channel.name))
        back.setsockopt(zmq.RCVHWM, _queue(channel.name))
        if channel.name != "iopub":
            back.setsockopt(zmq.IDENTITY, self._identity)
        back.connect(url(self._kernel["transport"], self._kernel["ip"], self._kernel[f"{channel.name}_port"]))
        if channel.name == "iopub" and resubscribe:
            # The clients subscribed through the socket this one replaces: subscribe to everything for them (the
            # gateway-side XPUB filters per subscriber anyway). Output sent before this reaches the kernel is lost.
            back.send(_SUBSCRIBE_ALL)
        channel.back = back
        channel.tasks = [
            asyncio.create_task(_pump(channel.front, back), name=f"relay-{channel.name}-in"),
            asyncio.create_task(_pump(back, channel.front), name=f"relay-{channel.name}-out"),
        ]

    async def _watch(self, channel: _Channel) -> None:
        """Replace the kernel-side socket whenever libzmq drops its connection (a frame over the cap)."""
        while not self._closing:
            assert channel.back is not None
            monitor = channel.back.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            try:
                parse_monitor_message(await monitor.recv_multipart())
            finally:
                with contextlib.suppress(zmq.ZMQError):
                    channel.back.disable_monitor()
                monitor.close(linger=0)
            if self._closing:
                return
            await self._detach(channel)
            self.replaced += 1
            self._attach(channel, resubscribe=True)

    async def _detach(self, channel: _Channel) -> None:
        for task in channel.tasks:
            task.cancel()
        await asyncio.gather(*channel.tasks, return_exceptions=True)
        channel.tasks = []
        if channel.back is not None:
            channel.back.close(linger=0)
            channel.back = None

    async def close(self) -> None:
        """Stop forwarding and release every socket (idempotent)."""
        self._closing = True
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers = []
        for channel in self._channels.values():
            await self._detach(channel)
            channel.front.close(linger=0)
        self._channels = {}
        self._context.term()


def _cap(channel: str) -> int:
    if channel == "iopub":
        return MAX_IOPUB_FRAME_BYTES
    return MAX_HEARTBEAT_FRAME_BYTES if channel == "hb" else MAX_FRAME_BYTES


async def _pump(source: zmq.asyncio.Socket, destination: zmq.asyncio.Socket) -> None:
    """Forward whole multipart messages, unparsed (zero-copy frames), until cancelled."""
    while True:
        frames = await source.recv_multipart(copy=False)
        await destination.send_multipart(frames, copy=False)


def _queue(channel: str) -> int:
    return HEARTBEAT_QUEUE_MESSAGES if channel == "hb" else QUEUE_MESSAGES
