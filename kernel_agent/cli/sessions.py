"""``kernel-agent sessions``: the sessions on a Jupyter Server or gateway: list them, attach to one, stop one.

A session detached from its kernel (``Session.detach()``) leaves the kernel
running on the server and its record unsealed, ending with a ``detached``
note. ``list`` shows the server's kernels and, for each, the record in the
host's record directory that detached from it; ``attach`` runs code in the
kernel (its state intact) and detaches again, or ends the session with
``--close``; ``stop`` ends it: with ``--notebook`` through the session (the
record is sealed), otherwise by shutting the kernel down on the server.

The server's token comes from ``--token`` or ``KERNEL_AGENT_SERVER_TOKEN``
and is never printed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kernel_agent.cli.terminal_text import terminal_safe

if TYPE_CHECKING:
    from kernel_agent.runtime.remote import JupyterServer, ServerKernel

SERVER_ENV, TOKEN_ENV = "KERNEL_AGENT_SERVER", "KERNEL_AGENT_SERVER_TOKEN"
# Records larger than this are not opened to find which kernel they detached from (listing stays quick).
_MAX_LISTED_RECORD_BYTES = 64 * 1024**2


def _server_options(function: Any) -> Any:
    function = click.option("--token", envvar=TOKEN_ENV, metavar="TOKEN",
                            help=f"the server's token (default: ${TOKEN_ENV})")(function)
    return click.option("--server", "url", envvar=SERVER_ENV, required=True, metavar="URL",
                        help=f"the Jupyter Server or gateway, e.g. http://127.0.0.1:8888 (default: ${SERVER_ENV})",
                        )(function)


def _tool_options(function: Any) -> Any:
    function = click.option("--mcp", multiple=True, metavar="COMMAND",
                            help="an MCP server of the session's tools (repeatable)")(function)
    return click.option("--tools", multiple=True, metavar="MODULE:OBJECT",
                        help="the session's tools, as recorded (repeatable)")(function)


@click.group("sessions", short_help="list, attach to and stop the sessions on a Jupyter Server or gateway")
def command() -> None:
    """Sessions whose kernels live on a Jupyter Server, Kernel Gateway or Enterprise Gateway."""


@command.command("list", short_help="the server's kernels, with the records detached from them")
@_server_options
@click.option("--record-dir", metavar="DIR", help="where to look for detached records (default: the host's)")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
def list_command(url: str, token: str | None, record_dir: str | None, as_json: bool) -> int:
    """List the kernels running on the server and the detached records that name them."""
    from kernel_agent.record.location import default_record_dir
    from kernel_agent.runtime.remote import JupyterServer

    kernels = asyncio.run(_list(JupyterServer(url, token=token)))
    records = detached_records(Path(record_dir) if record_dir else default_record_dir())
    rows = [{"kernel_id": k.id, "kernel_name": k.name, "state": k.execution_state, "connections": k.connections,
             "last_activity": k.last_activity.isoformat() if k.last_activity else None,
             "detached_record": str(records[k.id]) if k.id in records else None} for k in kernels]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no kernels on {url}")
    for row in rows:
        record = row["detached_record"] or "-"
        # The server's fields (a kernel name, a state) are not ours to trust: cleaned for the terminal.
        print(terminal_safe(f"{row['kernel_id']}  {row['kernel_name']:<20} {row['state']:<10} "
                            f"{row['connections']} connection(s), last active {row['last_activity'] or '-'}; "
                            f"record: {record}"))
    return 0


async def _list(server: JupyterServer) -> list[ServerKernel]:
    async with server:
        return await server.list_kernels()


def detached_records(directory: Path) -> dict[str, Path]:
    """Kernel id -> the record in ``directory`` whose last cell is a detach from it (unreadable ones skipped)."""
    from kernel_agent.errors import KernelAgentError
    from kernel_agent.record import format as fmt
    from kernel_agent.record.reader import read_notebook

    found: dict[str, Path] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.ipynb")):
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > _MAX_LISTED_RECORD_BYTES:
                continue
            cells = read_notebook(path).get("cells") or []
        except (KernelAgentError, OSError):
            continue  # not ours to judge here: `kernel-agent audit` says what is wrong with it
        last = ((cells[-1].get("metadata") or {}).get(fmt.METADATA_KEY) or {}) if cells else {}
        kernel = last.get("kernel") if isinstance(last, dict) and last.get("kind") == "detached" else None
        if isinstance(kernel, dict) and isinstance(kernel.get("kernel_id"), str):
            found[kernel["kernel_id"]] = path
    return found


@command.command("attach", short_help="run code in a detached session's kernel, then detach again (or --close)")
@click.argument("kernel_id")
@_server_options
@click.option("--notebook", metavar="PATH", help="the session's record, continued (its last cell is the detach)")
@_tool_options
@click.option("--code", "codes", multiple=True, metavar="CODE",
              help="a cell to run (repeatable; default: one cell read from standard input)")
@click.option("--close", is_flag=True, help="end the session afterwards: seal the record, shut the kernel down")
def attach_command(kernel_id: str, url: str, token: str | None, notebook: str | None, tools: tuple[str, ...],
                   mcp: tuple[str, ...], codes: tuple[str, ...], close: bool) -> int:
    """Attach to KERNEL_ID on the server (its variables intact), run cells, print their output."""
    cells = list(codes) or [sys.stdin.read()]
    return asyncio.run(_attach(kernel_id, url, token, notebook, list(tools), list(mcp), cells, close))


async def _attach(kernel_id: str, url: str, token: str | None, notebook: str | None, tools: list[str],
                  mcp: list[str], cells: list[str], close: bool) -> int:
    from kernel_agent.agent.observation import cell_output_text
    from kernel_agent.runtime.remote import JupyterServer
    from kernel_agent.session.session import Session
    from kernel_agent.tools.loading import load_tools

    session = await Session.attach(kernel_id, server=JupyterServer(url, token=token), notebook=notebook,
                                   tools=load_tools(tools, mcp))
    failed = False
    try:
        for code in cells:
            result = await session.execute(code)
            text = terminal_safe(cell_output_text(result))  # the kernel's output
            print(text, end="" if text.endswith("\n") else "\n")
            failed = failed or not result.ok
    finally:
        if close:
            await session.close()
        else:
            detached = await session.detach()
            print(f"detached again from kernel {detached.kernel_id}", file=sys.stderr)
    return 1 if failed else 0


@command.command("stop", short_help="end a session on the server: its kernel, and its record when given")
@click.argument("kernel_id")
@_server_options
@click.option("--notebook", metavar="PATH", help="the session's record: attached to and sealed as the kernel ends")
@_tool_options
def stop_command(kernel_id: str, url: str, token: str | None, notebook: str | None, tools: tuple[str, ...],
                 mcp: tuple[str, ...]) -> int:
    """Shut KERNEL_ID down; with --notebook, through its session, so that the record is sealed."""
    return asyncio.run(_stop(kernel_id, url, token, notebook, list(tools), list(mcp)))


async def _stop(kernel_id: str, url: str, token: str | None, notebook: str | None, tools: list[str],
                mcp: list[str]) -> int:
    from kernel_agent.runtime.remote import JupyterServer
    from kernel_agent.session.session import Session
    from kernel_agent.tools.loading import load_tools

    server = JupyterServer(url, token=token)
    if notebook is not None:
        session = await Session.attach(kernel_id, server=server, notebook=notebook, tools=load_tools(tools, mcp))
        await session.close()
        print(f"stopped kernel {kernel_id}; {notebook} is sealed")
        return 0
    async with server:
        await server.shutdown(kernel_id)
    print(f"stopped kernel {kernel_id}")
    return 0
