"""A restarted kernel keeps its endpoints: a websocket open on a real server works on after the restart.

The server (Jupyter Server, Kernel Gateway) talks to the kernel over zmq
sockets it connected once; after a restart they reconnect by path, as they
reconnect to a TCP kernel's unchanged ports. Before the sandbox provisioner
kept the run directory across restarts, every restart moved the ipc
sockets: the server's connections, and every websocket through them, went
on talking to dead sockets, and the kernel stayed "busy" forever.

Each wait here is for a message (bounded by ``WAIT`` only so that a broken
server fails the test instead of hanging it); nothing sleeps or measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from kernel_agent.kernelspec.spec import KERNEL_NAME

from .conftest import LIMITED_KERNEL, RunningServer

WAIT = 90.0  # seconds: the longest any one message may take (a kernel restart included)
MAX_NUDGES = 10_000  # kernel_info round trips while waiting for iopub to reconnect (it takes a few)
Message = dict[str, Any]


class KernelSocket:
    """The Jupyter websocket protocol (JSON frames, one per message) over one open connection."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.session = uuid.uuid4().hex

    async def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        """Send a request on ``channel``; its msg_id."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "session": self.session, "username": "test",
                  "date": datetime.now(UTC).isoformat(), "version": "5.3"}
        await self.connection.send(json.dumps({"header": header, "parent_header": {}, "metadata": {},
                                               "content": content, "channel": channel, "buffers": []}))
        return msg_id

    async def receive(self) -> Message:
        """The next message from the kernel (or the server, for its own status messages)."""
        while True:
            frame = await asyncio.wait_for(self.connection.recv(), WAIT)
            if isinstance(frame, str):  # binary frames carry buffers, which none of these messages has
                message: Message = json.loads(frame)
                return message

    async def until(self, wanted: Callable[[Message], bool]) -> Message:
        """Read messages until one is ``wanted``."""
        while not wanted(message := await self.receive()):
            pass
        return message

    async def ready(self) -> None:
        """Ask for kernel_info until one request's iopub status arrives: shell and iopub both reach the kernel.

        After a restart the server's sockets reconnect on their own; iopub is a
        subscription, so what the kernel publishes before it is back is lost.
        Each reply without its iopub message is answered by the next request.
        """
        sent = {await self.send("shell", "kernel_info_request", {})}
        while len(sent) <= MAX_NUDGES:
            message = await self.receive()
            parent = message.get("parent_header", {}).get("msg_id")
            if message["channel"] == "iopub" and parent in sent:
                return
            if message["channel"] == "shell" and message["msg_type"] == "kernel_info_reply":
                sent.add(await self.send("shell", "kernel_info_request", {}))
        raise AssertionError(f"{MAX_NUDGES} kernel_info replies came back without an iopub message: iopub is cut")

    async def execute(self, code: str) -> tuple[Message, str]:
        """Run ``code``: its execute_reply and its stdout, once the kernel is idle after it."""
        msg_id = await self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False,
            "stop_on_error": True})
        reply: Message | None = None
        idle = False
        stdout = ""
        while reply is None or not idle:
            message = await self.receive()
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "execute_reply":
                reply = message
            elif message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
                stdout += message["content"]["text"]
            elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                idle = True
        return reply, stdout


async def _started(server: RunningServer, name: str) -> str:
    kernel = await asyncio.to_thread(server.api, "POST", "/api/kernels", {"name": name})
    return str(kernel["id"])


@contextlib.asynccontextmanager
async def _kernel_socket(server: RunningServer, kernel_id: str) -> AsyncIterator[KernelSocket]:
    async with connect(server.ws_url(f"/api/kernels/{kernel_id}/channels"), additional_headers=server.headers,
                       max_size=None) as connection:
        socket = KernelSocket(connection)
        await socket.ready()
        yield socket


@pytest.fixture(params=["jupyter_server", "kernel_gateway"])
def server(request: pytest.FixtureRequest) -> RunningServer:
    """Each kind of server: the restart goes through the same REST call and websocket on both."""
    found: RunningServer = request.getfixturevalue(request.param)
    return found


async def test_a_rest_restart_keeps_the_open_websocket(server: RunningServer) -> None:
    """POST /api/kernels/{id}/restart: the websocket opened before it runs code in the new kernel."""
    kernel_id = await _started(server, KERNEL_NAME)
    try:
        async with _kernel_socket(server, kernel_id) as socket:
            reply, stdout = await socket.execute("before = 'set in the first kernel'\nprint(before)")
            assert reply["content"]["status"] == "ok" and stdout == "set in the first kernel\n"

            model = await asyncio.to_thread(server.api, "POST", f"/api/kernels/{kernel_id}/restart")
            assert model["id"] == kernel_id

            await socket.ready()  # the same websocket: the server's sockets reached the new kernel
            reply, stdout = await socket.execute("print('before' in dir(), 6 * 7)")
            assert reply["content"]["status"] == "ok"
            assert stdout == "False 42\n"  # a fresh kernel (its state is gone) answering the old websocket
    finally:
        await asyncio.to_thread(server.api, "DELETE", f"/api/kernels/{kernel_id}")


async def test_a_kernel_killed_for_memory_is_restarted_behind_the_same_websocket(
        jupyter_server: RunningServer) -> None:
    """The sandbox kills a kernel over its memory limit; the server restarts it; the open websocket works on."""
    kernel_id = await _started(jupyter_server, LIMITED_KERNEL)
    try:
        async with _kernel_socket(jupyter_server, kernel_id) as socket:
            reply, _ = await socket.execute("before = 1")
            assert reply["content"]["status"] == "ok"

            await socket.send("shell", "execute_request", {
                "code": "hog = []\nwhile True:\n    hog.append(b'\\x01' * (32 * 1024**2))", "silent": False,
                "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
            # No reply comes for that cell: the kernel dies, and the server says it restarts it.
            await socket.until(lambda m: m["msg_type"] == "status"
                               and m["content"]["execution_state"] == "restarting")

            await socket.ready()
            reply, stdout = await socket.execute("print('before' in dir(), 'hog' in dir(), 6 * 7)")
            assert reply["content"]["status"] == "ok" and stdout == "False False 42\n"
            model = await asyncio.to_thread(jupyter_server.api, "GET", f"/api/kernels/{kernel_id}")
            assert model["id"] == kernel_id  # the same kernel, as the server sees it
    finally:
        await asyncio.to_thread(jupyter_server.api, "DELETE", f"/api/kernels/{kernel_id}")
