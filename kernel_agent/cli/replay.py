"""``kernel-agent replay NOTEBOOK``: re-run a recorded session and print whether it did the same.

Exit status: 0 faithful, 1 divergent, 2 when the replay cannot be done
(unusable notebook, missing tools: one line on stderr, never a traceback).
The replay is :func:`kernel_agent.verify.replay.replay`; this module renders
its report.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kernel_agent.cli.errors import input_error, one_line
from kernel_agent.cli.packages import package_options, package_policy
from kernel_agent.cli.terminal_text import terminal_safe
from kernel_agent.errors import KernelAgentError

if TYPE_CHECKING:
    from kernel_agent.packages import PackagePolicy
    from kernel_agent.verify.replay import ReplayReport

EXIT_FAITHFUL, EXIT_DIVERGENT, EXIT_ERROR = 0, 1, 2


@click.command("replay", short_help="re-run a recorded session and check it does the same "
                                    "(exit 0 faithful, 1 divergent, 2 error)")
@click.argument("notebook")
@click.option("--live", is_flag=True,
              help="call the real tools (--tools/--mcp) instead of answering from the recording")
@click.option("--out", metavar="PATH", help="record the replayed session to this notebook")
@click.option("--tools", multiple=True, metavar="MODULE:OBJECT",
              help="with --live: a tool, a list of tools or a ToolRegistry to load (repeatable)")
@click.option("--mcp", multiple=True, metavar="COMMAND",
              help="with --live: an MCP server to start over stdio (repeatable)")
@click.option("--json", "json_output", is_flag=True, help="print the report as JSON")
@package_options
def command(notebook: str, live: bool, out: str | None, tools: tuple[str, ...], mcp: tuple[str, ...],
            json_output: bool, allow_package: tuple[str, ...], find_links: tuple[str, ...], no_index: bool) -> int:
    """Re-run NOTEBOOK (the recorded session notebook, never modified) in a fresh sandbox and compare every cell."""
    try:
        return asyncio.run(_replay(notebook, live=live, out=out, tools=list(tools), mcp=list(mcp),
                                   json_output=json_output,
                                   packages=package_policy(allow_package, find_links, no_index)))
    except (KernelAgentError, ValueError, ImportError, AttributeError) as exc:
        print(f"kernel-agent replay: error: {one_line(terminal_safe(str(exc)))}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the notebook is hostile input: one line, never a traceback
        return input_error("replay", exc)


async def _replay(notebook: str, *, live: bool, out: str | None, tools: list[str], mcp: list[str],
                  json_output: bool, packages: PackagePolicy | None) -> int:
    from kernel_agent.tools.loading import load_tools
    from kernel_agent.verify.replay import ReplayInputError, replay

    live_tools: list[Any] | None = None
    if (tools or mcp) and not live:
        raise ReplayInputError("--tools and --mcp are for --live replays (a plain replay answers from the recording)")
    if live:
        live_tools = load_tools(tools, mcp)
    report = await replay(Path(notebook), live_tools=live_tools, out=Path(out) if out else None,
                          package_policy=packages)
    # The text report quotes recorded and rerun outputs (the kernel's text): cleaned for the terminal.
    print(report.model_dump_json(indent=2) if json_output else terminal_safe(render_report(report)))
    sys.stdout.flush()
    return EXIT_FAITHFUL if report.faithful else EXIT_DIVERGENT


def render_report(report: ReplayReport) -> str:
    """The human-readable report."""
    mode = "live tools" if report.live else f"{report.tool_calls_served} tool calls served from the recording"
    lines = [f"replayed {report.cells} code cells of {report.notebook} ({mode})"]
    lines += [f"warning: {w}" for w in report.warnings]
    if report.faithful:
        lines.append("faithful: every cell matches its recording")
    else:
        lines.append(f"DIVERGENT: {len(report.divergent_cells)} of {report.cells} cells differ from the recording")
        first = report.first_divergence
        if first is not None:
            seq = f", seq {first.seq}" if first.seq is not None else ""
            lines.append(f"first divergence: cell {first.cell_index}{seq}: {first.source_first_line}")
            lines.append(f"reason: {first.reason}")
            lines.append(first.diff.rstrip("\n"))
        for call in report.unrecorded_calls:
            lines.append(f"not in the recording: {call}")
    if report.out:
        lines.append(f"replayed session recorded to {report.out}")
    return "\n".join(lines)
