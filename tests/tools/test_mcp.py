"""McpServer against real MCP servers: mcp-server-time and mcp-server-git from PyPI, and two fixture
servers built on the mcp SDK (streamable HTTP, and a paging stdio server) in mcp_fixtures/."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pytest
import pytest_asyncio

from kernel_agent.errors import McpServerError, ToolDefinitionError
from kernel_agent.tools.mcp import McpServer, McpToolError, McpToolTimeout
from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.tool import ArgumentsInvalid, Tool

# One event loop for the module, so the time server and the HTTP server start once.
pytestmark = pytest.mark.asyncio(loop_scope="module")

FIXTURES = Path(__file__).parent / "mcp_fixtures"
PAGED_SERVER = [sys.executable, str(FIXTURES / "paged_stdio_server.py")]


def by_name(server: McpServer) -> dict[str, Tool]:
    return {tool.name: tool for tool in server.tools}


def server_children(marker: str) -> list[psutil.Process]:
    """Our child processes whose command line mentions ``marker``."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any(marker in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def assert_gone(pid: int) -> None:
    """The process has exited and been reaped (a zombie would still have its pid)."""
    assert not psutil.pid_exists(pid), f"process {pid} is still there: {psutil.Process(pid).status()}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def time_server() -> AsyncIterator[McpServer]:
    async with McpServer.stdio([sys.executable, "-m", "mcp_server_time"]) as server:
        yield server


# -- mcp-server-time ---------------------------------------------------------------------------


async def test_time_server_tools_are_listed_in_its_namespace(time_server: McpServer) -> None:
    assert time_server.started
    assert time_server.server_info["name"] == "mcp-time"
    assert time_server.name == "mcp_time"  # serverInfo.name made an identifier
    tools = by_name(time_server)
    assert set(tools) == {"get_current_time", "convert_time"}
    for tool in tools.values():
        assert tool.namespace == "mcp_time"
        assert tool.qualified_name == f"mcp_time.{tool.name}"
        assert tool.source == "mcp:mcp-time"
        assert tool.takes_mapping
        assert "time" in tool.description.lower()
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.read_only and not tool.destructive  # the server's annotations
    assert "timezone" in tools["get_current_time"].input_schema["properties"]
    assert set(tools["convert_time"].input_schema["required"]) == {"source_timezone", "time", "target_timezone"}


async def test_get_current_time_returns_the_structured_result(time_server: McpServer) -> None:
    result = await by_name(time_server)["get_current_time"].invoke({"timezone": "Asia/Tokyo"})
    assert isinstance(result, dict)
    assert result["timezone"] == "Asia/Tokyo"
    when = datetime.fromisoformat(result["datetime"])
    assert when.utcoffset() == datetime.now(ZoneInfo("Asia/Tokyo")).utcoffset()
    assert abs((when - datetime.now(ZoneInfo("Asia/Tokyo"))).total_seconds()) < 120


async def test_convert_time_returns_the_converted_time(time_server: McpServer) -> None:
    result = await by_name(time_server)["convert_time"].invoke(
        {"source_timezone": "Etc/UTC", "time": "12:30", "target_timezone": "Asia/Kolkata"}
    )
    assert result["source"]["timezone"] == "Etc/UTC"
    assert datetime.fromisoformat(result["target"]["datetime"]).strftime("%H:%M") == "18:00"
    assert result["time_difference"] == "+5.5h"


async def test_wrong_argument_types_are_rejected_naming_the_field(time_server: McpServer) -> None:
    tool = by_name(time_server)["get_current_time"]
    with pytest.raises(ArgumentsInvalid) as info:
        await tool.invoke({"timezone": 42})
    assert [error["field"] for error in info.value.errors] == ["timezone"]
    assert "string" in str(info.value)
    with pytest.raises(ArgumentsInvalid, match="timezone"):
        await tool.invoke({})


async def test_a_tool_error_raises_mcp_tool_error_with_the_servers_message(time_server: McpServer) -> None:
    with pytest.raises(McpToolError) as info:
        await by_name(time_server)["get_current_time"].invoke({"timezone": "Mars/Olympus_Mons"})
    assert "Invalid timezone" in str(info.value)
    assert "Mars/Olympus_Mons" in str(info.value)
    assert info.value.tool == "get_current_time" and info.value.server == "mcp_time"
    # the server is still fine afterwards
    assert (await by_name(time_server)["get_current_time"].invoke({"timezone": "Etc/UTC"}))["timezone"] == "Etc/UTC"


async def test_configuration_before_start() -> None:
    server = McpServer.stdio("mcp-server-time --local-timezone 'Etc/UTC'", namespace="clock")
    assert server.name == "clock" and not server.started
    assert "--local-timezone Etc/UTC" in repr(server)  # the string was split like a shell would
    with pytest.raises(McpServerError, match="not started"):
        _ = server.tools
    with pytest.raises(McpServerError, match="start"):
        _ = McpServer.stdio("mcp-server-time").name  # the namespace comes from the server
    with pytest.raises(ToolDefinitionError, match="identifier"):
        McpServer.stdio("mcp-server-time", namespace="my tools")
    with pytest.raises(ValueError):
        McpServer.stdio("")
    with pytest.raises(ValueError):
        McpServer.http("localhost:8000/mcp")
    await server.close()  # closing a server that never started is a no-op


# -- mcp-server-git ------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


async def test_git_server_against_a_real_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "notes.txt").write_text("first\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "Add the notes file")
    (repo / "notes.txt").write_text("first\nsecond\n")

    async with McpServer.stdio([sys.executable, "-m", "mcp_server_git", "--repository", str(repo)]) as server:
        assert server.name == "mcp_git"
        tools = by_name(server)
        assert {"git_status", "git_log", "git_diff_unstaged", "git_commit", "git_reset"} <= set(tools)
        assert tools["git_status"].read_only and not tools["git_status"].destructive
        assert tools["git_reset"].destructive
        status = await tools["git_status"].invoke({"repo_path": str(repo)})
        assert isinstance(status, str) and "notes.txt" in status
        diff = await tools["git_diff_unstaged"].invoke({"repo_path": str(repo)})
        assert "+second" in diff
        log = await tools["git_log"].invoke({"repo_path": str(repo), "max_count": 5})
        assert "Add the notes file" in str(log)
        with pytest.raises(McpToolError):
            await tools["git_status"].invoke({"repo_path": str(tmp_path / "elsewhere")})


# -- streamable HTTP -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """The demo server on streamable HTTP, on a port it picks itself."""
    process = subprocess.Popen([sys.executable, str(FIXTURES / "demo_http_server.py")],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        process.stdout.close()
        assert line.startswith("PORT "), f"the demo server did not start (exit {process.poll()})"
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_http_server_tools_structured_and_text(http_url: str) -> None:
    async with McpServer.http(http_url, headers={"X-Kernel-Agent-Test": "1"}) as server:
        assert server.name == "demo_http_server"  # from "Demo HTTP-Server"
        tools = by_name(server)
        assert {"add", "greet", "sleep", "fail"} <= set(tools)
        assert tools["add"].output_schema is not None
        assert await tools["add"].invoke({"a": 2, "b": 40}) == {"sum": 42}
        assert await tools["greet"].invoke({"name": "Ada"}) == "Hello, Ada!"
        with pytest.raises(ArgumentsInvalid, match="a"):
            await tools["add"].invoke({"a": "two", "b": 40})
        with pytest.raises(McpToolError, match="no such luck"):
            await tools["fail"].invoke({"message": "no such luck"})
    assert not server.started


async def test_http_call_timeout(http_url: str) -> None:
    async with McpServer.http(http_url, call_timeout=0.5) as server:
        with pytest.raises(McpToolTimeout) as info:
            await by_name(server)["sleep"].invoke({"seconds": 10})
        assert isinstance(info.value, TimeoutError) and "0.5 s" in str(info.value)
        assert await by_name(server)["greet"].invoke({"name": "again"}) == "Hello, again!"


async def test_http_server_that_is_not_there() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(McpServerError, match=f"cannot reach MCP server at http://127.0.0.1:{port}/mcp"):
        await McpServer.http(f"http://127.0.0.1:{port}/mcp").start()


# -- servers that cannot start -----------------------------------------------------------------------


async def test_missing_command_is_a_clear_error() -> None:
    with pytest.raises(McpServerError, match="command not found: 'kernel-agent-no-such-mcp-server'"):
        await McpServer.stdio("kernel-agent-no-such-mcp-server --flag").start()


async def test_server_exiting_at_once_fails_fast_with_its_stderr() -> None:
    code = "import sys; print('boom: no config file', file=sys.stderr); sys.exit(2)"
    server = McpServer.stdio([sys.executable, "-c", code], startup_timeout=60)
    with pytest.raises(McpServerError) as info:
        await server.start()
    message = str(info.value)
    assert "exited during startup" in message and "boom: no config file" in message
    assert "Traceback" not in message
    assert not server.started and not server_children("boom: no config file")


async def test_server_that_never_answers_times_out_and_is_stopped() -> None:
    code = "import time; time.sleep(120)  # kernel-agent-silent-server"
    server = McpServer.stdio([sys.executable, "-c", code], startup_timeout=1)
    with pytest.raises(McpServerError, match="within 1 s"):
        await server.start()
    assert not server_children("kernel-agent-silent-server")


# -- the paging fixture server: pagination, result mapping, process lifecycle -------------------------


async def test_all_pages_are_listed_and_results_are_mapped() -> None:
    async with McpServer.stdio(PAGED_SERVER) as server:
        assert server.name == "paged_tools"  # from "Paged Tools!"
        # three pages of two, in the server's order, under the server's own names
        assert [tool.name for tool in server.tools] == ["echo", "mixed", "resources", "empty", "get-config", "die"]
        # The first line of the server's instructions describes its namespace in the manifest.
        line = "Paging test tools: echo, every content type, a server that dies."
        assert server.namespace_descriptions == {"paged_tools": "  " + line}
        registry = ToolRegistry([server])
        assert registry.namespace_description("paged_tools") == "  " + line
        assert f"tools.paged_tools (MCP server 'Paged Tools!'): {line}" in registry.manifest().splitlines()
        tools = by_name(server)
        assert tools["get-config"].source == "mcp:Paged Tools!"
        assert tools["get-config"].read_only and not tools["get-config"].destructive
        assert tools["echo"].destructive  # no annotations: the MCP default counts it destructive
        assert await tools["echo"].invoke({"text": "hi"}) == "hi"
        assert await tools["get-config"].invoke({}) == {"debug": True}  # structured content, no output schema
        assert await tools["empty"].invoke({}) is None
        assert await tools["mixed"].invoke({}) == [
            "a picture",
            {"type": "image", "mime_type": "image/png", "data": b"\x89PNG\r\n\x1a\nfake"},
            {"type": "audio", "mime_type": "audio/wav", "data": b"RIFF....WAVEfake"},
        ]
        assert await tools["resources"].invoke({}) == [
            {"type": "resource", "uri": "mem://a.txt", "mime_type": "text/plain", "text": "alpha"},
            {"type": "resource", "uri": "mem://b.bin", "mime_type": "application/octet-stream", "data": b"\x00\x01"},
            {"type": "resource_link", "uri": "file:///tmp/c.txt", "name": "c.txt", "mime_type": "text/plain",
             "description": None},
        ]
        with pytest.raises(McpToolError, match="unknown tool nope"):
            await server.call_tool("nope", {})


async def test_close_stops_the_server_process() -> None:
    server = McpServer.stdio(PAGED_SERVER, namespace="paged")
    await server.start()
    await server.start()  # idempotent
    children = server_children("paged_stdio_server.py")
    assert len(children) == 1
    pid = children[0].pid
    await server.close()
    assert_gone(pid)
    assert not server.started
    assert not [t for t in asyncio.all_tasks() if "paged_stdio_server" in t.get_name()]  # no owner task left
    await server.close()  # idempotent
    with pytest.raises(McpServerError, match="closed"):
        await by_name(server)["echo"].invoke({"text": "hi"})


async def test_a_server_that_dies_mid_session() -> None:
    async with McpServer.stdio(PAGED_SERVER) as server:
        pid = server_children("paged_stdio_server.py")[0].pid
        echo = by_name(server)["echo"]
        with pytest.raises(McpServerError) as info:
            await by_name(server)["die"].invoke({})
        assert "exited" in str(info.value) and "dying on request" in str(info.value)
        with pytest.raises(McpServerError, match="exited"):
            await echo.invoke({"text": "still there?"})
        await server.close()
        assert_gone(pid)
        await server.start()  # a fresh process; the Tools made before keep working
        assert await echo.invoke({"text": "back"}) == "back"
        pid = server_children("paged_stdio_server.py")[0].pid
    assert_gone(pid)


async def test_calls_and_close_from_another_event_loop() -> None:
    """A server started on one loop (say a SyncSession's thread) serves calls made on another."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        server = McpServer.stdio(PAGED_SERVER)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(server.start(), loop))
        assert await by_name(server)["echo"].invoke({"text": "across loops"}) == "across loops"
        pid = server_children("paged_stdio_server.py")[0].pid
        await server.close()  # runs on the owner's loop
        assert_gone(pid)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def test_python_in_a_command_is_this_interpreter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`python -m server` starts the server with kernel-agent's own interpreter, whatever `python` PATH finds first
    (here a `python` that does not have the server and exits)."""
    impostor = tmp_path / "python"
    impostor.write_text("#!/bin/sh\necho 'not the venv python' >&2\nexit 3\n")
    impostor.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    async with McpServer.stdio("python -m mcp_server_time") as server:
        assert "get_current_time" in [tool.name for tool in server.tools]
