"""``kernel-agent mcp``: serve Code Mode to any MCP client, over stdio (default) or streamable HTTP.

Each client session gets its own sandboxed kernel, workspace and recorded
notebook; the host tools come from the same options as ``run`` (``--tools``,
``--mcp`` ...). Exit status 0 when the client disconnects or the server is
stopped (SIGTERM, Ctrl-C), 1 when it cannot start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from kernel_agent.cli.packages import package_options, package_session_option
from kernel_agent.cli.run import session_options
from kernel_agent.cli.skills_options import pop_skills_sources

TOKEN_ENV = "KERNEL_AGENT_MCP_TOKEN"


def _refuse_inside_workspaces(workspace: str | None, paths: dict[str, str | None]) -> None:
    """The host writes these by path: never under the root of the client sessions' workspaces.

    Each client's kernel can write its own workspace under that root, so a kernel could make a directory on such
    a path a link elsewhere, and the host (often root) would write the port file or notebooks there.
    """
    if not workspace:  # the default root is the temporary directory: world-writable anyway, and no one's workspace
        return
    root = Path(workspace).resolve()
    for option, path in paths.items():
        if path and Path(path).resolve().is_relative_to(root):
            raise click.UsageError(f"{option} {path} is inside --workspace {workspace}, where the sessions' "
                                   "kernels write: choose a place outside it")


@click.command("mcp", short_help="serve sandboxed, recorded Python sessions to MCP clients (Code Mode)",
               help="Serve kernel-agent to an MCP client (Claude Desktop, Claude Code, Cursor...): tools to run "
                    "Python in the client's own sandboxed, recorded kernel session, find and describe the host "
                    "tools its code can call, read the files it wrote, and reset it. Over stdio by default; "
                    "--http serves streamable HTTP on 127.0.0.1.")
@session_options
@click.option("--http", "http", is_flag=True, help="serve streamable HTTP instead of stdio")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="HTTP address to bind; anything but loopback needs a bearer token")
@click.option("--port", type=int, default=8765, show_default=True, help="HTTP port (0: any free port)")
@click.option("--port-file", metavar="PATH", help="write the bound URL and port here (JSON) once listening")
@click.option("--token-file", metavar="PATH",
              help=f"the bearer token HTTP clients must send (default: ${TOKEN_ENV})")
@click.option("--allowed-host", multiple=True, metavar="NAME",
              help="another Host name clients may use for a non-loopback server (repeatable)")
@click.option("--max-sessions", type=int, default=8, show_default=True, help="client sessions holding a kernel")
@click.option("--idle-timeout", type=float, default=1800.0, show_default=True, metavar="S",
              help="close a client session's kernel after S seconds without a call")
@click.option("--cell-timeout", type=float, default=300.0, show_default=True, metavar="S", help="seconds per cell")
@click.option("--max-cells", type=int, metavar="N", help="cells per session")
@click.option("--max-tool-calls", type=int, metavar="N", help="host tool calls per session")
@click.option("--max-session-seconds", type=float, metavar="S", help="wall time of a session")
@click.option("--observation-limit", type=int, default=4000, show_default=True, metavar="CHARS",
              help="characters of a cell's output sent back")
@click.option("--images/--no-images", default=True, show_default=True,
              help="send the plots a cell shows as MCP images (--no-images for text-only clients)")
@click.option("--policy", "policy_spec", metavar="MODULE:OBJECT",
              help="the tool call policy (allow, deny or ask per call); default: allow every call")
@click.option("--ask-destructive", is_flag=True, help="ask the user before any tool flagged destructive")
@click.option("--unattended", type=click.Choice(["deny", "allow"]), default="deny", show_default=True,
              help="the answer to a call needing approval when the client cannot be asked (no elicitation)")
@click.option("--pool-size", type=int, default=1, show_default=True, help="kernels kept warm for new sessions")
@click.option("--record-dir", metavar="DIR",
              help="where client sessions are recorded (default: the host's record directory)")
@package_options
def command(tools: tuple[str, ...], mcp: tuple[str, ...], workspace: str | None, notebook: str | None, http: bool,
            host: str, port: int, port_file: str | None, token_file: str | None, allowed_host: tuple[str, ...],
            max_sessions: int, idle_timeout: float, cell_timeout: float, max_cells: int | None,
            max_tool_calls: int | None, max_session_seconds: float | None, observation_limit: int, images: bool,
            policy_spec: str | None, ask_destructive: bool, unattended: str, pool_size: int, record_dir: str | None,
            allow_package: tuple[str, ...] = (), find_links: tuple[str, ...] = (), no_index: bool = False,
            **more_tools: Any) -> int:
    from kernel_agent.mcp_server import Catalogue, ClientLimits, ServeConfig, build_server
    from kernel_agent.mcp_server.transports import is_loopback, serve_http, serve_stdio
    from kernel_agent.tools.loading import load_object, load_tools
    from kernel_agent.tools.policy import allow_all, ask_for_destructive

    if notebook:
        raise click.UsageError("mcp records each client session in a notebook of its own: give --record-dir DIR")
    if workspace and not Path(workspace).is_dir():
        raise ValueError(f"--workspace {workspace} does not exist or is not a directory; create it first")
    if http and not is_loopback(host) and not (token_file or os.environ.get(TOKEN_ENV)):
        raise click.UsageError(f"--host {host} is not a loopback address: serving it needs a bearer token "
                               f"(${TOKEN_ENV} or --token-file)")
    try:
        token = Path(token_file).read_text().strip() if http and token_file else os.environ.get(TOKEN_ENV) or None
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"--token-file {token_file} cannot be read: {exc}") from None
    if http and token_file and not token:  # who names a token file means clients to need it: never serve without
        raise click.UsageError(f"--token-file {token_file} is empty: put the bearer token clients must send in it")
    if policy_spec and ask_destructive:
        raise click.UsageError("--policy and --ask-destructive do not go together: put the asking in the policy")
    tool_policy: Any = ask_for_destructive if ask_destructive else allow_all
    if policy_spec:
        tool_policy = load_object(policy_spec)
    if not callable(tool_policy):
        raise ValueError(f"--policy {policy_spec} is not callable")

    _refuse_inside_workspaces(workspace, {"--port-file": port_file, "--record-dir": record_dir})
    if record_dir:
        Path(record_dir).mkdir(parents=True, exist_ok=True, mode=0o700)

    skills = pop_skills_sources(more_tools)  # one source for every client session: it keeps their state apart

    def tools_for_a_session() -> list[Any]:
        return load_tools(list(tools), list(mcp), **more_tools) + skills

    config = ServeConfig(
        tools=tools_for_a_session, tool_policy=tool_policy, unattended="allow" if unattended == "allow" else "deny",
        pool_size=pool_size, workspace_root=Path(workspace) if workspace else None,
        record_dir=Path(record_dir) if record_dir else None,
        session_options=package_session_option(allow_package, find_links, no_index),
        limits=ClientLimits(max_sessions=max_sessions, idle_timeout=idle_timeout, cell_timeout=cell_timeout,
                            max_cells=max_cells, max_tool_calls=max_tool_calls,
                            max_session_seconds=max_session_seconds, observation_limit=observation_limit,
                            images=images))
    # Over stdio, standard output is the protocol's: anything a tool module prints while loading goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        catalogue = asyncio.run(Catalogue.load(config.tools))
    server = build_server(config, catalogue)
    if not http:
        asyncio.run(serve_stdio(server, stopped=_exit_now))
        _exit_now()
    asyncio.run(serve_http(server, host=host, port=port, token=token, allowed_hosts=allowed_host,
                           port_file=Path(port_file) if port_file else None, idle_timeout=idle_timeout,
                           max_sessions=max(64, 4 * max_sessions)))
    return 0


def _exit_now() -> NoReturn:
    """End the process now that every session is closed and its notebook sealed.

    The interpreter's own teardown after serving took 2 to 2.5 s on a busy host (measured: the main thread
    in C, no Python frame, after every session had closed in 0.45 s), and an MCP client gives a stdio
    server 2 s after closing its input before it kills the process group.
    """
    import logging

    logging.shutdown()
    sys.stderr.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os._exit(0)
