"""Running ``kernel-agent mcp`` as a real subprocess, and the official MCP client against it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

REPO = Path(__file__).resolve().parents[2]
TOOLS = "tests.mcp_server.host_tools:TOOLS"


def server_argv(*options: str) -> list[str]:
    return [sys.executable, "-m", "kernel_agent.cli.main", "mcp", "--tools", TOOLS, *options]


def server_env(record_dir: Path) -> dict[str, str]:
    """The server's environment: the tests' record directory, the repository importable (the host tools)."""
    return {**os.environ, "KERNEL_AGENT_RECORD_DIR": str(record_dir), "PYTHONPATH": str(REPO)}


class HttpServer:
    """``kernel-agent mcp --http --port 0`` in a subprocess; its URL read from the line it prints once bound."""

    def __init__(self, record_dir: Path, *options: str, env: dict[str, str] | None = None) -> None:
        argv = server_argv("--http", "--port", "0", "--record-dir", str(record_dir), *options)
        self.process = subprocess.Popen(argv, env={**server_env(record_dir), **(env or {})}, cwd=REPO,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
        self.stderr: list[str] = []
        assert self.process.stderr is not None
        for line in self.process.stderr:  # blocks until the server says where it listens (or exits)
            self.stderr.append(line)
            if found := re.search(r"serving streamable HTTP at (\S+)", line):
                self.url = found.group(1)
                break
        else:
            raise RuntimeError("the server did not start:\n" + "".join(self.stderr))
        # Keep draining stderr, so the server never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    @property
    def base(self) -> str:
        return self.url.removesuffix("/mcp")

    def stop(self) -> int:
        """SIGTERM, then wait for the server to finish closing its sessions."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=60)
        self._drain.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return status


@contextlib.asynccontextmanager
async def http_client(url: str, token: str | None = None, **options: Any) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session over streamable HTTP (its own Mcp-Session-Id)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(60.0, read=120.0), headers=headers) as http, \
            streamable_http_client(url, http_client=http) as (read, write), \
            ClientSession(read, write, **options) as client:
        await client.initialize()
        yield client


@contextlib.asynccontextmanager
async def stdio_session(record_dir: Path, *options: str, env: dict[str, str] | None = None,
                        **client_options: Any) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session over stdio, the server a subprocess it starts (and ends)."""
    argv = server_argv("--record-dir", str(record_dir), *options)
    parameters = StdioServerParameters(command=argv[0], args=argv[1:], env={**server_env(record_dir), **(env or {})},
                                       cwd=str(REPO))
    async with stdio_client(parameters) as (read, write), ClientSession(read, write, **client_options) as client:
        await client.initialize()
        yield client


def text(result: CallToolResult) -> str:
    """The text blocks of a tool result, joined."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def run(client: ClientSession, code: str) -> CallToolResult:
    return await client.call_tool("run_python", {"code": code})


def notebooks(record_dir: Path) -> Iterator[Path]:
    return iter(sorted(record_dir.glob("*.ipynb")))
