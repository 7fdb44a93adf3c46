"""JupyterServer and RemoteKernel on real Jupyter Server and Kernel Gateway on 127.0.0.1 (token auth).

The kernels' lifecycle through REST (start, interrupt, restart, shut down,
attach by id after a detach), deaths told precisely (shut down or restarted
by someone else, died and restarted by the server, gone without a word),
and every failure a named error that never holds the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel_agent.errors import KernelStartError
from kernel_agent.runtime.channels import Message
from kernel_agent.runtime.execute import await_reply, send_execute
from kernel_agent.runtime.kernel import Kernel
from kernel_agent.runtime.remote import (
    JupyterServer,
    KernelNotFoundError,
    KernelSpecNotFoundError,
    RemoteKernel,
    ServerAttach,
    ServerAuthError,
    ServerHTTPError,
    ServerLaunch,
    ServerUnreachableError,
    ServerURLError,
)
from kernel_agent.runtime.remote.rest import EXCERPT_CHARS, MAX_RESPONSE_BYTES

from ..conftest import sandbox_processes
from .conftest import RunningServer, default_kernelspecs, running_server

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def execute(kernel: Kernel, code: str, timeout: float = 60) -> tuple[dict[str, Any], list[Message]]:
    """Run ``code``; the execute reply's content and the iopub messages addressed to it, once it is idle."""
    messages: list[Message] = []
    request = send_execute(kernel, code, silent=False, on_iopub=messages.append)
    outcome = await await_reply(kernel, request.reply, time.monotonic() + timeout)
    assert outcome == "replied", (outcome, kernel.death_reason())
    await asyncio.wait_for(request.idle.wait(), timeout)
    assert kernel.connection is not None
    kernel.connection.forget(request)
    content: dict[str, Any] = request.reply.result()["content"]
    return content, messages


def stdout(messages: list[Message]) -> str:
    """What the messages printed on stdout."""
    return "".join(m["content"]["text"] for m in messages
                   if m["msg_type"] == "stream" and m["content"].get("name") == "stdout")


@pytest.fixture(params=["jupyter_server", "kernel_gateway"])
def server(request: pytest.FixtureRequest) -> RunningServer:
    running: RunningServer = request.getfixturevalue(request.param)
    return running


def client(server: RunningServer, **options: Any) -> JupyterServer:
    return JupyterServer(server.url, token=server.token, **options)


@contextlib.asynccontextmanager
async def started(jupyter: JupyterServer) -> AsyncIterator[RemoteKernel]:
    kernel = await jupyter.start_kernel(timeout=90)
    try:
        yield kernel
    finally:
        await kernel.kill()


class _Holder:
    """A KernelLease stand-in: sources only need something to hand the kernel to."""

    id = "test-holder"
    last_activity = 0.0

    async def close_if_idle(self, idle_timeout: float) -> bool:
        return False

    async def close(self) -> None:
        return None


# -- the lifecycle ---------------------------------------------------------------------------------------------

async def test_start_execute_interrupt_restart_and_shut_down(server: RunningServer) -> None:
    async with client(server) as jupyter:
        kernel = await jupyter.start_kernel(timeout=90)
        try:
            assert kernel.alive() and kernel.kernel_info["language_info"]["name"] == "python"
            reply, messages = await execute(kernel, "state = 7\nprint(state * 6)")
            assert reply["status"] == "ok" and stdout(messages) == "42\n"

            running = asyncio.Event()
            request = send_execute(kernel, "import time\nprint('running', flush=True)\nwhile True: time.sleep(0.05)",
                                   silent=False, on_iopub=lambda m: running.set() if "running" in stdout([m]) else None)
            await asyncio.wait_for(running.wait(), 60)
            await kernel.interrupt()
            assert await await_reply(kernel, request.reply, time.monotonic() + 60) == "replied"
            assert request.reply.result()["content"]["ename"] == "KeyboardInterrupt"
            assert stdout((await execute(kernel, "print(state)"))[1]) == "7\n", "an interrupt keeps the state"

            fresh = await kernel.restarted(90)
            assert fresh.kernel_id == kernel.kernel_id, "a server's kernel restarts under its id"
            assert not kernel.alive() and kernel.connection is None
            assert "restarted by this host" in kernel.death_reason()
            kernel = fresh
            reply, _ = await execute(kernel, "state")
            assert reply["status"] == "error" and reply["ename"] == "NameError"
        finally:
            await kernel.kill()
        assert not kernel.alive() and "shut down by this host" in kernel.death_reason()
        with pytest.raises(KernelNotFoundError):
            await jupyter.kernel(kernel.kernel_id)
        await kernel.kill()  # idempotent, and the kernel is already gone: no error
        assert kernel.shutdown_failure is None


async def test_detach_then_attach_by_id_from_a_new_server_object_keeps_the_state(server: RunningServer) -> None:
    async with client(server) as first:
        kernel = await ServerLaunch(first, 90).acquire(_Holder())
        await execute(kernel, "kept = [1, 2, 3]")
        await kernel.detach()
        assert not kernel.alive() and "detached" in kernel.death_reason() and kernel.connection is None
        assert (await first.kernel(kernel.kernel_id)).id == kernel.kernel_id, "the kernel runs on"
    async with client(server) as second:
        again = await ServerAttach(second, kernel.kernel_id, 90).acquire(_Holder())
        try:
            assert again.kernel_id == kernel.kernel_id and again.kernel_name == "kernel-agent"
            assert stdout((await execute(again, "print(sum(kept))"))[1]) == "6\n"
        finally:
            await again.kill()
        with pytest.raises(KernelNotFoundError):
            await ServerAttach(second, kernel.kernel_id, 30).acquire(_Holder())


async def test_listing_kernelspecs_and_version(jupyter_server: RunningServer) -> None:
    async with client(jupyter_server) as jupyter, started(jupyter) as kernel:
        listed = {model.id: model for model in await jupyter.list_kernels()}
        model = listed[kernel.kernel_id]
        assert model.name == "kernel-agent" and model.connections >= 1
        assert model.execution_state in {"idle", "busy", "starting"}
        assert isinstance(model.last_activity, datetime.datetime)
        specs = await jupyter.kernel_specs()
        assert specs["kernel-agent"]["language"] == "python" and "kernel-agent-limited" in specs
        assert (await jupyter.version()).split(".")[0].isdigit()


async def test_kernel_gateway_refuses_listing_and_the_error_says_how_to_allow_it(
        kernel_gateway: RunningServer) -> None:
    async with client(kernel_gateway) as jupyter:
        with pytest.raises(ServerHTTPError, match="list_kernels=True") as raised:
            await jupyter.list_kernels()
    assert raised.value.status == 403


# -- deaths, told precisely ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "suffix", "said"), [
    ("DELETE", "", "shut down on the server by someone else"),
    ("POST", "/restart", "restarted on the server by someone else"),
])
async def test_a_kernel_shut_down_or_restarted_by_someone_else_is_dead_and_says_so(
        server: RunningServer, method: str, suffix: str, said: str) -> None:
    async with client(server) as jupyter, started(jupyter) as kernel:
        await execute(kernel, "x = 1")
        await asyncio.to_thread(server.api, method, f"/api/kernels/{kernel.kernel_id}{suffix}")
        reason = await asyncio.wait_for(kernel.wait_ended(), 60)
        assert said in reason and not kernel.alive() and kernel.death_reason() == reason


async def test_a_kernel_that_died_is_named_and_restarted_in_place(server: RunningServer) -> None:
    async with client(server) as jupyter:
        kernel = await jupyter.start_kernel(timeout=90)
        try:
            request = send_execute(kernel, "import os\nos._exit(3)", silent=False)
            assert await await_reply(kernel, request.reply, time.monotonic() + 60) == "died"
            assert "died and the server restarted it" in kernel.death_reason()
            same = kernel.kernel_id
            kernel = await kernel.restarted(90)
            assert kernel.kernel_id == same, "restarted in place (under its id), not replaced by a new kernel"
            assert stdout((await execute(kernel, "print('back')"))[1]) == "back\n"
        finally:
            await kernel.kill()


async def test_a_kernel_killed_without_a_word_is_found_gone_by_the_check(jupyter_server: RunningServer) -> None:
    async with client(jupyter_server, check_interval=0.2) as jupyter:
        kernel = await jupyter.start_kernel(timeout=90)
        _, messages = await execute(kernel, "from ipykernel.connect import get_connection_file\n"
                                            "print(get_connection_file())")
        run_dir = Path(stdout(messages).strip()).parent
        stopped = sandbox_processes(run_dir)
        assert stopped, f"no process of {run_dir}"
        # A kernel stopped dead answers nothing, its shutdown included: the server kills it after its wait.
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        await asyncio.to_thread(jupyter_server.api, "DELETE", f"/api/kernels/{kernel.kernel_id}")
        reason = await asyncio.wait_for(kernel.wait_ended(), 60)
        assert "the server no longer has it" in reason and not kernel.alive()
        await kernel.kill()
        assert kernel.shutdown_failure is None


# -- named errors, never holding the token ----------------------------------------------------------------------

@pytest.mark.parametrize("url", ["ftp://127.0.0.1:21/", "ws://127.0.0.1:1", "127.0.0.1:8888", "http://",
                                 "http://user:hunter2-secret@127.0.0.1:1/", "http://127.0.0.1:notaport/"])
def test_a_url_that_is_not_a_servers_is_refused(url: str) -> None:
    with pytest.raises(ServerURLError) as raised:
        JupyterServer(url)
    assert "hunter2" not in str(raised.value)
    assert isinstance(raised.value, ValueError)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The port is picked when the test runs: a collection-time pick would differ between pytest-xdist's workers.
@pytest.mark.parametrize("make_url", [lambda: f"http://127.0.0.1:{_closed_port()}",
                                      lambda: "http://no-such-host.invalid:8888"], ids=["closed-port", "no-such-host"])
async def test_an_unreachable_server_is_named_with_its_url(make_url: Callable[[], str]) -> None:
    url = make_url()
    async with JupyterServer(url, token="unreachable-token-123", request_timeout=20) as jupyter:
        with pytest.raises(ServerUnreachableError, match="cannot reach the Jupyter server at") as raised:
            await jupyter.start_kernel(timeout=20)
    assert url in str(raised.value) and "unreachable-token-123" not in str(raised.value)


Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def http_endpoint(respond: Respond) -> AsyncIterator[str]:
    """A bare HTTP endpoint on 127.0.0.1 that answers every request with ``respond``; its URL."""
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await respond(reader, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up first: what some tests are about
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.ensure_future(handle(reader, writer)))

    endpoint = await asyncio.start_server(track, "127.0.0.1", 0)
    async with endpoint:
        yield f"http://127.0.0.1:{endpoint.sockets[0].getsockname()[1]}"
    await asyncio.gather(*handlers)


async def test_a_server_that_never_answers_is_named() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up

    async with http_endpoint(silent) as url, JupyterServer(url, request_timeout=0.5) as jupyter:
        with pytest.raises(ServerUnreachableError, match=r"did not answer GET api/kernelspecs within 0\.5 s"):
            await jupyter.kernel_specs()


def _response(status: str, body: bytes, kind: str = "application/json") -> Respond:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        writer.write(body)
    return respond


async def test_response_bodies_are_bounded_and_must_be_json() -> None:
    huge = b'{"kernelspecs": {"x": "' + b"a" * MAX_RESPONSE_BYTES + b'"}}'
    async with http_endpoint(_response("200 OK", huge)) as url, JupyterServer(url) as jupyter:
        with pytest.raises(ServerHTTPError, match="more than 8 MiB"):
            await jupyter.kernel_specs()
    page = b"<html><body><h1>A web shop</h1></body></html>"
    async with http_endpoint(_response("200 OK", page, "text/html")) as url, JupyterServer(url) as jupyter:
        with pytest.raises(ServerHTTPError, match=r"not JSON.*A web shop.*is it a Jupyter server"):
            await jupyter.kernel_specs()


async def test_an_http_error_shows_a_bounded_excerpt_without_the_token(jupyter_server: RunningServer) -> None:
    # Jupyter Server's HTML error pages embed the token (data-jupyter-api-token).
    async with client(jupyter_server) as jupyter:
        with pytest.raises(ServerHTTPError) as raised:
            await jupyter.rest.call("GET", "no/such/page")
    message = str(raised.value)
    assert raised.value.status == 404 and "404" in message and "Not Found" in message
    assert jupyter_server.token not in message and "<" not in message
    assert len(message) < EXCERPT_CHARS + 200


@pytest.mark.parametrize("token", ["wrong-token-4c0ffee", None])
async def test_a_bad_or_missing_token_is_named_without_the_token(server: RunningServer, token: str | None) -> None:
    async with JupyterServer(server.url, token=token) as jupyter:
        with pytest.raises(ServerAuthError) as raised:
            await jupyter.start_kernel(timeout=30)
        with pytest.raises(ServerAuthError):
            await jupyter.kernel_specs()
    message = f"{raised.value}{raised.value!r}"
    assert ("refused the token" if token else "requires a token") in message
    assert server.token not in message and "4c0ffee" not in message


async def test_unknown_kernel_ids_are_named(server: RunningServer) -> None:
    async with client(server) as jupyter:
        with pytest.raises(KernelNotFoundError, match=f"has no kernel {UNKNOWN_ID}"):
            await jupyter.connect(UNKNOWN_ID)
        for operation in (jupyter.interrupt, jupyter.restart, jupyter.shutdown, jupyter.kernel):
            with pytest.raises(KernelNotFoundError):
                await operation(UNKNOWN_ID)
        with pytest.raises(KernelNotFoundError, match="not a kernel id"):
            await jupyter.connect("../../api/kernelspecs")


async def test_a_missing_kernelspec_is_named_with_the_ones_the_server_has(server: RunningServer) -> None:
    async with client(server, kernel_name="no-such-spec") as jupyter:
        with pytest.raises(KernelSpecNotFoundError, match=r"no kernelspec 'no-such-spec'.*'kernel-agent'") as raised:
            await jupyter.start_kernel(timeout=30)
    assert isinstance(raised.value, KernelStartError)


async def test_the_token_stays_out_of_reprs_records_and_logs(server: RunningServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # A URL as Jupyter prints it at start-up: the token comes out of it.
    async with JupyterServer(f"{server.url}/?token={server.token}") as jupyter, started(jupyter) as kernel:
        await execute(kernel, "1 + 1")
        await kernel.interrupt()
        assert jupyter.url == server.url
        assert kernel.backend == {"kind": "jupyter-server", "url": server.url, "kernel_id": kernel.kernel_id,
                                  "kernel_name": "kernel-agent"}
        assert kernel.workspace is None and kernel.enforcement == {}
        shown = [repr(jupyter), repr(kernel), json.dumps(kernel.backend), repr(jupyter.rest.client().headers)]
        assert not [text for text in shown if server.token in text]
    assert server.token not in caplog.text


# -- a kernel that never becomes ready -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server_with_a_mute_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A Jupyter Server that also offers ``mute``: a kernelspec whose process never answers a message."""
    mute = {"argv": [sys.executable, "-c", "import time; time.sleep(600)", "{connection_file}"],
            "display_name": "mute", "language": "python"}
    with running_server("jupyter-server", tmp_path_factory.mktemp("mute-server"),
                        kernelspecs={**default_kernelspecs(), "mute": mute}) as server:
        yield server


async def test_a_kernel_that_never_becomes_ready_is_shut_down(server_with_a_mute_kernel: RunningServer) -> None:
    async with client(server_with_a_mute_kernel, kernel_name="mute") as jupyter:
        with pytest.raises(KernelStartError, match="did not open within"):
            await jupyter.start_kernel(timeout=3)
        assert await jupyter.list_kernels() == []


async def test_a_server_that_goes_away_ends_the_kernel_and_shutting_it_down_does_not_raise(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_server("jupyter-server", tmp_path_factory.mktemp("departing-server")) as server:
        async with client(server) as jupyter:
            kernel = await jupyter.start_kernel(timeout=90)
            await execute(kernel, "x = 1")
            await asyncio.to_thread(server.stop)
            reason = await asyncio.wait_for(kernel.wait_ended(), 60)
            assert not kernel.alive()
            assert "shut down on the server" in reason or "closed the kernel's websocket" in reason, reason
            await kernel.kill()
            assert kernel.shutdown_failure is not None and "cannot reach" in kernel.shutdown_failure
            assert server.token not in kernel.shutdown_failure
