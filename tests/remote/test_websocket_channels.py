"""WebSocketChannels: the channels of a server kernel over its websocket, on real servers and on a scripted one.

Real Jupyter Server and Kernel Gateway (v1 subprotocol) and a Jupyter Server
made to speak the legacy JSON protocol carry comm messages with binary
buffers both ways and survive a message over the size cap. A scripted
websocket endpoint (shaped like Jupyter's, frames built with Jupyter
Server's own serializers) sends what no real server would: malformed
frames, unkept output that must not be parsed, death notices, an oversized
frame, a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request as HTTPRequest
from websockets.http11 import Response as HTTPResponse
from websockets.typing import Subprotocol

from kernel_agent.runtime.channels import Message
from kernel_agent.runtime.remote import JupyterServer, KernelNotFoundError, RemoteKernel, ServerAuthError
from kernel_agent.runtime.remote import frames as wire
from kernel_agent.runtime.remote.errors import ServerHTTPError
from kernel_agent.runtime.remote.rest import Rest
from kernel_agent.runtime.remote.websocket import MAX_WS_MESSAGE_BYTES, WebSocketChannels
from kernel_agent.runtime.results import OUTPUT_LOST

from .conftest import RunningServer, running_server
from .test_server_client import execute, stdout

TOKEN = "fake-server-token-0123456789"
V1 = Subprotocol(wire.V1_PROTOCOL)


# -- real servers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A Jupyter Server that declines the v1 subprotocol (its legacy JSON protocol only)."""
    with running_server("jupyter-server", tmp_path_factory.mktemp("legacy-server"),
                        extra_args=["--ZMQChannelsWebsocketConnection.kernel_ws_protocol="]) as server:
        yield server


#: Each server, and the protocol its websocket is expected to speak.
SERVERS = {"jupyter_server": "v1", "kernel_gateway": "v1", "legacy_server": "legacy"}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> tuple[RunningServer, str]:
    """A running server and the protocol its websocket should speak."""
    running: RunningServer = request.getfixturevalue(request.param)
    return running, SERVERS[request.param]


@pytest.fixture
async def kernel(server: tuple[RunningServer, str]) -> AsyncIterator[RemoteKernel]:
    async with JupyterServer(server[0].url, token=server[0].token) as client:
        started = await client.start_kernel(timeout=90)
        try:
            yield started
        finally:
            await started.kill()


_ECHO_COMM = """
from comm import create_comm
echo = create_comm(target_name="kernel-agent-test-echo", data={"opened": True}, buffers=[b"\\x00\\xffopen"])
def _echo(msg):
    got = [bytes(b) for b in msg["buffers"]]
    echo.send({"lengths": [len(b) for b in got]}, buffers=[b[::-1] for b in got])
echo.on_msg(_echo)
"""


async def test_comm_messages_carry_binary_buffers_both_ways(kernel: RemoteKernel,
                                                            server: tuple[RunningServer, str]) -> None:
    channels = kernel.connection
    assert isinstance(channels, WebSocketChannels)
    assert channels.protocol == server[1]
    comms: asyncio.Queue[Message] = asyncio.Queue()
    channels.on_comm = comms.put_nowait
    reply, _ = await execute(kernel, _ECHO_COMM)
    assert reply["status"] == "ok", reply
    opened = await asyncio.wait_for(comms.get(), 30)
    assert opened["msg_type"] == "comm_open" and opened["content"]["data"] == {"opened": True}
    assert [bytes(b) for b in opened["buffers"]] == [b"\x00\xffopen"]
    # Not UTF-8, zeros included, and large enough to be many websocket frames' worth.
    sent = [bytes(range(256)) * 4096, b"\x00", b"\xff\xfe\x80"]
    channels.post("shell", "comm_msg", {"comm_id": opened["content"]["comm_id"], "data": {}}, sent)
    echoed = await asyncio.wait_for(comms.get(), 30)
    assert echoed["content"]["data"] == {"lengths": [len(b) for b in sent]}
    assert [bytes(b) for b in echoed["buffers"]] == [b[::-1] for b in sent]
    assert echoed["size"] >= sum(len(b) for b in sent)


_OVERSIZED = f"""
from comm import create_comm
create_comm(target_name="kernel-agent-test-big").send({{}}, buffers=[b"x" * {MAX_WS_MESSAGE_BYTES + 1024}])
print("sent")
"""


async def test_a_message_over_the_cap_is_dropped_unread_and_the_kernel_stays_usable(kernel: RemoteKernel) -> None:
    channels = kernel.connection
    assert isinstance(channels, WebSocketChannels)
    comms: list[Message] = []
    channels.on_comm = comms.append
    lost = asyncio.Event()

    def collect(message: Message) -> None:
        if message["msg_type"] == OUTPUT_LOST:
            lost.set()

    await execute(kernel, "kept = 42")
    request = channels.send("shell", "execute_request", {
        "code": _OVERSIZED, "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": False}, on_iopub=collect)
    await asyncio.wait_for(lost.wait(), 60)
    assert channels.reconnects == 1 and kernel.alive(), kernel.death_reason()
    # The comm_open and the small messages arrived; the oversized comm_msg was never held or parsed.
    assert all(sum(len(b) for b in message["buffers"]) < MAX_WS_MESSAGE_BYTES for message in comms)
    channels.forget(request)
    reply, messages = await execute(kernel, "print(kept)")
    assert reply["status"] == "ok" and stdout(messages) == "42\n"


async def test_a_message_the_server_refuses_as_too_big_is_dropped_once_and_the_kernel_stays_usable(
        kernel: RemoteKernel) -> None:
    channels = kernel.connection
    assert isinstance(channels, WebSocketChannels)
    comms: asyncio.Queue[Message] = asyncio.Queue()
    channels.on_comm = comms.put_nowait
    await execute(kernel, _ECHO_COMM)
    comm_id = (await asyncio.wait_for(comms.get(), 30))["content"]["comm_id"]
    # Over Jupyter Server's (tornado's) default websocket_max_message_size of 10 MiB.
    channels.post("shell", "comm_msg", {"comm_id": comm_id, "data": {}}, [b"x" * (11 * 1024**2)])
    channels.post("shell", "comm_msg", {"comm_id": comm_id, "data": {}}, [b"small"])
    echoed = await asyncio.wait_for(comms.get(), 60)
    assert [bytes(b) for b in echoed["buffers"]] == [b"llams"], "only the small message arrives"
    assert channels.refused_sends == 1 and channels.reconnects == 1 and kernel.alive()
    assert stdout((await execute(kernel, "print('still here')"))[1]) == "still here\n"


async def test_a_websocket_to_an_unknown_kernel_is_named(jupyter_server: RunningServer) -> None:
    async with JupyterServer(jupyter_server.url, token=jupyter_server.token) as client:
        channels = WebSocketChannels(client.rest, "00000000-0000-0000-0000-000000000000", open_timeout=30)
        with pytest.raises(KernelNotFoundError, match="has no kernel 00000000"):
            await channels.open()


# -- a scripted websocket endpoint --------------------------------------------------------------------

Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted(handler: Handler, *, v1: bool = True,
                   refuse: HTTPResponse | None = None) -> AsyncIterator[Rest]:
    """A websocket endpoint running ``handler`` per connection; the Rest a channels object needs to reach it."""

    def select(connection: ServerConnection, offered: Any) -> Subprotocol | None:
        return V1 if v1 and V1 in offered else None

    def check(connection: ServerConnection, request: HTTPRequest) -> HTTPResponse | None:
        return refuse

    async with serve(handler, "127.0.0.1", 0, select_subprotocol=select, process_request=check,
                     compression=None, max_size=None) as endpoint:
        port = next(iter(endpoint.sockets)).getsockname()[1]
        yield Rest(f"http://127.0.0.1:{port}/", TOKEN, timeout=10, verify=True)


def kernel_frame(channel: str, msg_type: str, content: Any, parent: str | None = None,
                 buffers: tuple[bytes, ...] = (), raw_content: bytes | None = None) -> bytes:
    """A v1 frame as Jupyter Server relays a kernel's message."""
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": "k", "username": "k", "version": "5.3"}
    parts = [json.dumps(header).encode(), json.dumps({"msg_id": parent} if parent else {}).encode(), b"{}",
             raw_content if raw_content is not None else json.dumps(content).encode(), *buffers]
    result: bytes = serialize_msg_to_ws_v1(parts, channel)
    return result


def received(frame: Any) -> tuple[str, dict[str, Any], list[bytes]]:
    """What the scripted server got from the host: channel, header, buffers (as Jupyter Server splits it)."""
    channel, parts = deserialize_msg_from_ws_v1(frame)
    return channel, json.loads(parts[0]), [bytes(part) for part in parts[4:]]


_MALFORMED = [
    b"", b"\x00" * 7, b"\xff" * 64,  # no count, a huge count
    (10**6).to_bytes(8, "little") + b"\x00" * 64,  # more parts claimed than the frame holds
    (6).to_bytes(8, "little") + (56).to_bytes(8, "little") + (10).to_bytes(8, "little") + b"\x00" * 40,  # backwards
    kernel_frame("nowhere", "stream", {}),  # unknown channel
]


async def test_routing_and_hostile_frames(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    served: dict[str, Any] = {}
    big = 200 * 1024

    async def handler(connection: ServerConnection) -> None:
        served["authorization"] = connection.request.headers.get("Authorization") if connection.request else None
        served["path"] = connection.request.path if connection.request else ""
        channel, header, _ = received(await connection.recv())
        served["channel"], request = channel, header["msg_id"]
        for frame in [*_MALFORMED, "a text frame in a binary protocol"]:
            await connection.send(frame)
        with_list_header = serialize_msg_to_ws_v1([b"[]", b"{}", b"{}", b"{}"], "iopub")
        huge_parent = serialize_msg_to_ws_v1([b"{}", json.dumps({"pad": "x" * 70_000}).encode(), b"{}", b"{}"],
                                             "iopub")
        await connection.send(with_list_header)
        await connection.send(huge_parent)
        await connection.send(kernel_frame("iopub", "stream", {"name": "stdout", "text": "hi\n"}, request))
        # Over the small-message size and not even JSON: only its length may be looked at.
        await connection.send(kernel_frame("iopub", "stream", None, request, raw_content=b"{" * big))
        await connection.send(kernel_frame("iopub", "comm_msg", {"comm_id": "c", "data": {}}, "someone-else",
                                           buffers=(b"\x00\x01", b"\xff")))
        await connection.send(kernel_frame("iopub", "status", {"execution_state": "busy"}, "someone-else"))
        await connection.send(kernel_frame("iopub", "status", {"execution_state": "idle"}, request))
        await connection.send(kernel_frame("shell", "execute_reply", {"status": "ok"}, request))
        await connection.wait_closed()

    async with scripted(handler) as rest:
        channels = WebSocketChannels(rest, "kernel-1", open_timeout=10)
        await channels.open()
        outputs: list[Message] = []
        sizes: list[int] = []
        comms: list[Message] = []
        unrouted: list[Message] = []
        channels.on_comm, channels.unrouted_iopub = comms.append, unrouted.append

        def unkept(size: int) -> bool:  # the request has no room left: nothing large is worth parsing
            sizes.append(size)
            return False

        request = channels.send("shell", "execute_request", {"code": "x"}, on_iopub=outputs.append,
                                wants_content=unkept)
        reply = await asyncio.wait_for(request.reply, 10)
        await asyncio.wait_for(request.idle.wait(), 10)
        assert reply["content"] == {"status": "ok"} and reply["msg_type"] == "execute_reply"
        assert [m["content"] for m in outputs] == [{"name": "stdout", "text": "hi\n"}]
        assert sizes == [big], "the unkept message was measured, never parsed"
        assert [[bytes(b) for b in m["buffers"]] for m in comms] == [[b"\x00\x01", b"\xff"]]
        assert [m["content"]["execution_state"] for m in unrouted] == ["busy"]
        assert not channels.ended.is_set() and channels.protocol == "v1"
        await channels.close()
    assert served["authorization"] == f"token {TOKEN}" and TOKEN not in served["path"]
    assert served["channel"] == "shell" and f"session_id={channels.session_id}" in served["path"]
    # The scripted server's own log shows what it received; the host's side must not have logged it.
    host_log = [record.getMessage() for record in caplog.records if not record.name.startswith("websockets.server")]
    assert logging.getLogger("websockets.client").isEnabledFor(logging.DEBUG), "its debug log (headers) was on"
    assert not [line for line in host_log if TOKEN in line], "the handshake's headers were logged"


@pytest.mark.parametrize(("msg_type", "content", "reason"), [
    ("status", {"execution_state": "restarting"}, "died and the server restarted it"),
    ("status", {"execution_state": "dead"}, "could not restart it"),
    ("shutdown_reply", {"status": "ok", "restart": False}, "shut down on the server by someone else"),
    ("shutdown_reply", {"status": "ok", "restart": True}, "restarted on the server by someone else"),
])
async def test_the_servers_notices_end_the_channels(msg_type: str, content: dict[str, Any], reason: str) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send(kernel_frame("iopub", "status", {"execution_state": "idle"}, "someone-else"))
        await connection.send(kernel_frame("iopub", msg_type, content, None if msg_type == "status" else "other"))
        await connection.wait_closed()

    async with scripted(handler) as rest:
        channels = WebSocketChannels(rest, "kernel-1", open_timeout=10)
        await channels.open()
        await asyncio.wait_for(channels.ended.wait(), 10)
        assert channels.end_reason is not None and reason in channels.end_reason
        await channels.close()


async def test_a_frame_over_the_cap_cuts_the_websocket_and_it_reopens_under_the_same_session() -> None:
    sessions: list[str] = []
    got_after: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
    request_id: list[str] = []

    async def handler(connection: ServerConnection) -> None:
        sessions.append(connection.request.path.rpartition("session_id=")[2] if connection.request else "")
        if len(sessions) == 1:
            _, header, _ = received(await connection.recv())
            request_id.append(header["msg_id"])
            oversized = kernel_frame("iopub", "stream", None, header["msg_id"], raw_content=b"x" * MAX_WS_MESSAGE_BYTES)
            with contextlib.suppress(Exception):
                await connection.send(oversized)
            await connection.wait_closed()
            return
        # Jupyter Server replays what it kept for the session while it had no connection.
        await connection.send(kernel_frame("shell", "execute_reply", {"status": "ok"}, request_id[0]))
        _, header, buffers = received(await connection.recv())
        got_after.set_result([header["msg_type"].encode(), *buffers])
        await connection.wait_closed()

    async with scripted(handler) as rest:
        channels = WebSocketChannels(rest, "kernel-1", open_timeout=10)
        await channels.open()
        markers: list[Message] = []
        request = channels.send("shell", "execute_request", {"code": "x"}, on_iopub=markers.append)
        reply = await asyncio.wait_for(request.reply, 60)
        assert reply["content"] == {"status": "ok"}
        assert [m["msg_type"] for m in markers] == [OUTPUT_LOST]
        assert channels.reconnects == 1 and not channels.ended.is_set()
        channels.post("shell", "comm_msg", {"comm_id": "c", "data": {}}, [b"after"])
        assert await asyncio.wait_for(got_after, 10) == [b"comm_msg", b"after"]
        await channels.close()
    assert len(sessions) == 2 and sessions[0] == sessions[1] == channels.session_id


async def test_a_websocket_closed_by_the_server_ends_the_channels() -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.close(1011, "kernel gone")

    async with scripted(handler) as rest:
        channels = WebSocketChannels(rest, "kernel-1", open_timeout=10)
        await channels.open()
        await asyncio.wait_for(channels.ended.wait(), 10)
        assert channels.end_reason is not None
        assert "closed the kernel's websocket (code 1011: kernel gone)" in channels.end_reason
        request = channels.send("shell", "kernel_info_request", {})  # sent into the void, never fatal
        await channels.close()
        assert request.reply.cancelled()


async def test_the_legacy_protocol_when_the_server_declines_v1() -> None:
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(connection: ServerConnection) -> None:
        request = json.loads(await connection.recv())
        await got.put(request)
        await got.put(deserialize_binary_message(await connection.recv()))
        for frame in ["not json", "[1, 2]", json.dumps({"channel": "iopub", "header": [], "parent_header": {}})]:
            await connection.send(frame)
        parent = {"msg_id": request["header"]["msg_id"]}
        await connection.send(serialize_binary_message({
            "channel": "iopub", "header": {"msg_type": "comm_msg"}, "parent_header": parent, "metadata": {},
            "content": {"comm_id": "c", "data": {"n": 1}}, "buffers": [b"\x00bin", b"\xff"]}))
        await connection.send(json.dumps({"channel": "shell", "header": {"msg_type": "kernel_info_reply"},
                                          "parent_header": parent, "metadata": {}, "content": {"status": "ok"}}))
        await connection.wait_closed()

    async with scripted(handler, v1=False) as rest:
        channels = WebSocketChannels(rest, "kernel-1", open_timeout=10)
        await channels.open()
        assert channels.protocol == "legacy"
        comms: list[Message] = []
        channels.on_comm = comms.append
        request = channels.send("shell", "kernel_info_request", {})
        channels.post("shell", "comm_msg", {"comm_id": "c", "data": {}}, [b"\x00up", b"\x80"])
        reply = await asyncio.wait_for(request.reply, 10)
        assert reply["content"] == {"status": "ok"}
        sent, posted = await got.get(), await got.get()
        assert sent["channel"] == "shell" and sent["header"]["msg_type"] == "kernel_info_request"
        assert posted["channel"] == "shell" and [bytes(b) for b in posted["buffers"]] == [b"\x00up", b"\x80"]
        assert [(m["content"]["data"], [bytes(b) for b in m["buffers"]]) for m in comms] == \
            [({"n": 1}, [b"\x00bin", b"\xff"])]
        await channels.close()


@pytest.mark.parametrize(("status", "error"), [(401, ServerAuthError), (500, ServerHTTPError)])
async def test_a_refused_handshake_is_named_without_the_token(status: int, error: type[Exception]) -> None:
    page = f"<html><body data-token='{TOKEN}'><script>var t = '{TOKEN}';</script>Nope: {TOKEN}</body></html>"
    refusal = HTTPResponse(status, "Refused", Headers({"Content-Type": "text/html"}), page.encode())

    async def handler(connection: ServerConnection) -> None:
        raise AssertionError("never reached")

    async with scripted(handler, refuse=refusal) as rest:
        channels = WebSocketChannels(rest, "kernel-1", open_timeout=10)
        with pytest.raises(error) as raised:
            await channels.open()
    assert TOKEN not in str(raised.value) and TOKEN not in repr(raised.value)
    assert str(status) in str(raised.value)


def test_malformed_frames_are_refused_by_the_decoders() -> None:
    for frame in _MALFORMED:
        with pytest.raises(ValueError):
            wire.decode_v1(frame)
    good = kernel_frame("iopub", "stream", {"text": "x"}, "p", buffers=(b"b",))
    for frame in (good[:-1], good + b"tail"):
        with pytest.raises(ValueError):
            wire.decode_v1(frame)
    many = serialize_msg_to_ws_v1([b"{}"] * (wire.MAX_PARTS + 8), "iopub")
    with pytest.raises(ValueError, match="part count"):
        wire.decode_v1(many)
    for frame in (b"\x00\x00\x00\x05" + b"\x00" * 8, "{}", "[]"):
        with pytest.raises(ValueError):
            wire.decode_legacy(frame)
    envelope = wire.decode_v1(good)
    assert (envelope.channel, envelope.msg_type, envelope.parent_header) == ("iopub", "stream", {"msg_id": "p"})
    assert isinstance(envelope.content, memoryview) and envelope.size == len(b'{"text": "x"}') + 1


def test_frames_the_host_sends_are_what_jupyter_server_reads() -> None:
    header = wire.new_header("comm_msg", "session-1")
    channel, parts = deserialize_msg_from_ws_v1(wire.encode_v1("shell", header, {"a": 1}, [b"\x00", b"xy"]))
    assert channel == "shell" and json.loads(parts[0]) == header and parts[4:] == [b"\x00", b"xy"]
    legacy = deserialize_binary_message(wire.encode_legacy("control", header, {"a": 1}, [b"\x01"]))
    assert legacy["channel"] == "control" and legacy["content"] == {"a": 1} and legacy["buffers"] == [b"\x01"]
    text = wire.encode_legacy("shell", header, {"a": 1})
    assert isinstance(text, str) and json.loads(text)["header"] == header

