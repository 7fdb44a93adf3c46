"""Serving the MCP server over stdio or streamable HTTP, and stopping cleanly (no kernel left behind).

HTTP binds 127.0.0.1 by default; any other address needs a bearer token
(compared in constant time on every request). Host and Origin headers are
checked against the bound address (and ``allowed_hosts``) so a web page
cannot reach a loopback server through DNS rebinding; request bodies are
bounded. The socket is bound before the server starts, so ``port=0`` picks
a free port without a race, and the bound address is written to
``port_file`` (a new file, replaced atomically) for whoever started us.
SIGTERM, SIGINT and SIGHUP stop the server through its lifespan: every client's
kernel session is closed and its notebook sealed, then the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from kernel_agent.mcp_server.server import CodeModeServer

MCP_PATH = "/mcp"
DEFAULT_MAX_BODY_BYTES = 1_048_576
# The signals that stop the server with every session closed. SIGHUP too: a server started from a terminal
# gets it when the terminal goes, and its default action ends the process with kernels' workspaces left and
# notebooks unsealed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def serve_stdio(server: CodeModeServer, stopped: Callable[[], NoReturn]) -> None:
    """Serve one client on standard input and output until it disconnects; SIGTERM or SIGINT closes, then ``stopped``.

    On SIGTERM the SDK cannot wind down by itself: its reader waits for a line of standard input in a
    thread no cancellation reaches, and the client that sent the signal may keep the pipe open. So the
    client sessions are closed here (kernels stopped, notebooks sealed, pool closed) and ``stopped``
    ends the process (the caller's exit, which must not wait for that thread).
    """
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, terminated.set)
    serving = asyncio.ensure_future(server.run_stdio_async())
    signalled = asyncio.ensure_future(terminated.wait())
    try:
        await asyncio.wait({serving, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)
    if serving.done():
        signalled.cancel()
        serving.result()
        return
    await server.clients.close()
    stopped()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerToken:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((value for key, value in scope["headers"] if key == b"authorization"), b"")
            if not hmac.compare_digest(given, self._expected):
                body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
                    "code": -32001, "message": "Unauthorized: this server needs its bearer token"}}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def security_settings(host: str, port: int, allowed_hosts: Sequence[str]) -> TransportSecuritySettings:
    """Host and Origin checks: the loopback names for a loopback server, else the bound address and the given names."""
    hosts = ["127.0.0.1", "localhost", "[::1]"] if is_loopback(host) else [
        f"[{host}]" if ":" in host else host, *allowed_hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*hosts, *(f"{name}:{port}" for name in hosts)],
        allowed_origins=[f"{scheme}://{name}{suffix}" for name in hosts for scheme in ("http", "https")
                         for suffix in ("", f":{port}")])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:  # a port in use, an address not on this host: said plainly, not as a traceback
        sock.close()
        raise ValueError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def write_port_file(path: Path, url: str, port: int) -> None:
    """Write where the server listens, atomically (a reader never sees half a file)."""
    directory = path.parent if str(path.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".kernel-agent-port-")
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"url": url, "port": port, "pid": os.getpid()}, handle)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _web_server_class() -> type[Any]:
    import uvicorn

    class QuietExitServer(uvicorn.Server):
        """uvicorn's server, stopped by SIGTERM or SIGINT without raising the signal again afterwards.

        uvicorn re-raises a captured signal once it has shut down, which kills the process with it; here the
        lifespan's cleanup (every session closed, notebooks sealed) is the end, and the exit status is 0.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for number in STOP_SIGNALS:
                loop.add_signal_handler(number, self._stop)
            try:
                yield
            finally:
                for number in STOP_SIGNALS:
                    loop.remove_signal_handler(number)

        def _stop(self) -> None:
            self.force_exit = self.should_exit  # a second signal stops without waiting
            self.should_exit = True

    return QuietExitServer


async def serve_http(server: MCPServer[Any], *, host: str, port: int, token: str | None,
                     allowed_hosts: Sequence[str] = (), port_file: Path | None = None,
                     max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, idle_timeout: float | None = None,
                     max_sessions: int = 64) -> None:
    """Serve streamable HTTP on ``host:port`` until SIGTERM or SIGINT."""
    import uvicorn

    _QuietExitServer = _web_server_class()
    if not is_loopback(host) and not token:
        raise ValueError(f"serving on {host} (not a loopback address) needs a bearer token: set "
                         "KERNEL_AGENT_MCP_TOKEN or pass --token-file")
    sock = bind(host, port)
    bound_port = int(sock.getsockname()[1])
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH, max_request_body_size=max_body_bytes, session_idle_timeout=idle_timeout,
        max_sessions=max_sessions, transport_security=security_settings(host, bound_port, allowed_hosts), host=host)
    if token:
        app = BearerToken(app, token)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}{MCP_PATH}"
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5,
                            access_log=False)
    web = _QuietExitServer(config)
    if port_file is not None:
        write_port_file(port_file, url, bound_port)
    print(f"kernel-agent mcp: serving streamable HTTP at {url}", file=sys.stderr, flush=True)
    try:
        await web.serve(sockets=[sock])
    finally:
        sock.close()
        # uvicorn returns when the lifespan is over, but the lifespan runs its cleanup under the session
        # manager's cancellation: the sessions' closing then goes on in tasks that asyncio.run would cancel
        # on the way out, leaving notebooks unsealed. Wait for it here (idempotent: the same closing).
        clients = getattr(server, "clients", None)  # a CodeModeServer's (the type is imported for checking only)
        if clients is not None:
            await clients.close()
