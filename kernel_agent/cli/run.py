"""``kernel-agent run``: an agent in the terminal, live, with its notebook left behind.

Exit status: 0 answered; 1 the model failed (or a usage error); 3 a limit
(steps, tokens, cost, time) ended the run first; 130 interrupted (Ctrl-C),
with the notebook saved.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kernel_agent.cli.openapi import openapi_options
from kernel_agent.cli.packages import package_options, package_session_option
from kernel_agent.cli.skills_options import pop_skills_sources, skills_options

if TYPE_CHECKING:  # the agent modules load only when a command runs: `--help` stays fast
    from kernel_agent.agent import Agent, AgentResult, Pricing

EXIT_MODEL_ERROR, EXIT_LIMIT, EXIT_INTERRUPTED = 1, 3, 130

F = TypeVar("F", bound=Callable[..., Any])


def session_options(function: F) -> F:
    """The options that say where a run's session works and what it may call: tools, MCP servers, places."""
    for option in reversed([
        click.option("--tools", multiple=True, metavar="MODULE:OBJECT",
                     help="a tool, a list of tools or a ToolRegistry to load (repeatable)"),
        click.option("--mcp", multiple=True, metavar="COMMAND",
                     help="an MCP server to start over stdio, e.g. 'python -m mcp_server_time' (repeatable)"),
        *openapi_options(),
        *skills_options(),
        click.option("--workspace", metavar="DIR", help="the kernel's working directory (kept); default: temporary"),
        click.option("--notebook", metavar="PATH",
                     help="where the session is recorded (default: the host's record directory, "
                          "KERNEL_AGENT_RECORD_DIR or ~/.local/share/kernel-agent/records)"),
    ]):
        function = option(function)
    return function


@click.command("run", short_help="give a model a sandboxed kernel with tools and let it work on a task",
               help="Run an agent on TASK. The model writes Python cells that run in a sandboxed kernel with "
                    "the tools as an SDK; the session is recorded as a notebook. Exit status: 0 answered, "
                    "1 model error, 3 a limit ended the run, 130 interrupted.")
@click.argument("task", required=False)
@click.option("--resume", metavar="NOTEBOOK",
              help="continue the agent run recorded in NOTEBOOK (kernel state rebuilt, no tool run twice, the model "
                   "given the recorded conversation, recording on into NOTEBOOK); TASK is then an optional follow-up")
@click.option("--model", required=True, metavar="SPEC",
              help="anthropic:MODEL, openai:MODEL, openai:MODEL@BASE_URL (a local OpenAI-compatible "
                   "server) or scripted:PATH")
@click.option("--base-url", metavar="URL", help="the provider's API base URL (a local server, a proxy)")
@click.option("--max-retries", type=int, default=4, metavar="N",
              help="retries of rate limits, overloads and server errors by the provider's SDK (default 4)")
@click.option("--vision/--no-vision", default=None,
              help="whether the model takes images (a cell's plots); default: yes for Anthropic and OpenAI's API, "
                   "no for other servers")
@session_options
@click.option("--max-steps", type=int, default=30, metavar="N", help="model replies at most (default 30)")
@click.option("--max-tokens", type=int, metavar="N", help="tokens in all, input and output")
@click.option("--max-cost", type=float, metavar="USD", help="dollars at most (needs --price)")
@click.option("--price", metavar="IN,OUT", help="US dollars per million input and output tokens")
@click.option("--max-seconds", type=float, metavar="S", help="wall time of the whole run")
@click.option("--observation-limit", type=int, default=4000, metavar="CHARS",
              help="characters of a cell's output sent back to the model (default 4000)")
@click.option("--cell-timeout", type=float, default=300.0, metavar="S", help="seconds per cell (default 300)")
@click.option("--background-after", type=float, default=None, metavar="S",
              help="a cell still running after S seconds runs on in the background (up to --cell-timeout); the "
                   "model can %wait for it or %cancel it")
@click.option("--server", metavar="URL", envvar="KERNEL_AGENT_SERVER",
              help="run the kernel on this Jupyter Server or gateway (its kernel-agent kernelspec) instead of here")
@click.option("--token", metavar="TOKEN", envvar="KERNEL_AGENT_SERVER_TOKEN",
              help="the server's token (default: $KERNEL_AGENT_SERVER_TOKEN)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON at the end")
@click.option("--quiet", is_flag=True, help="print only the result, not each step")
@package_options
def command(task: str | None, resume: str | None, model: str, base_url: str | None, max_retries: int,
            vision: bool | None, tools: tuple[str, ...], mcp: tuple[str, ...], workspace: str | None,
            notebook: str | None, max_steps: int,
            max_tokens: int | None, max_cost: float | None, price: str | None, max_seconds: float | None,
            observation_limit: int, cell_timeout: float, background_after: float | None, server: str | None,
            token: str | None, as_json: bool, quiet: bool, allow_package: tuple[str, ...] = (),
            find_links: tuple[str, ...] = (), no_index: bool = False, **openapi: tuple[str, ...]) -> int:
    from kernel_agent.agent import Agent
    from kernel_agent.models import model_from_spec
    from kernel_agent.tools.loading import load_tools

    if resume is None and not task:
        raise click.UsageError("give a TASK, or --resume NOTEBOOK to continue a recorded run")
    if resume is not None and notebook:
        raise click.UsageError("--resume records into the resumed notebook: --notebook does not go with it")
    skills = pop_skills_sources(openapi)
    loaded = load_tools(list(tools), list(mcp), **openapi) + skills
    if workspace and not Path(workspace).is_dir():
        raise ValueError(f"--workspace {workspace} does not exist or is not a directory; create it first")
    options: dict[str, Any] = {} if model.startswith("scripted:") else {"max_retries": max_retries}
    if vision is not None:
        options["vision"] = vision
    agent = Agent(
        model_from_spec(model, base_url=base_url, **options), loaded, workspace=workspace, notebook=notebook,
        max_steps=max_steps, max_tokens=max_tokens, max_cost=max_cost, pricing=_pricing(price),
        max_seconds=max_seconds, observation_limit=observation_limit, cell_timeout=cell_timeout,
        background_after=background_after, session_options={
            **_server_option(server, token, workspace),
            **package_session_option(allow_package, find_links, no_index)},
    )
    return drive(agent, task, quiet=quiet, as_json=as_json, resume=resume)


def _server_option(url: str | None, token: str | None, workspace: str | None) -> dict[str, Any]:
    """The session option that puts the kernel on a server (tools still run here)."""
    if url is None:
        return {}
    if workspace:
        raise ValueError("--workspace is for kernels launched here: a server's kernel works in the server's directory")
    from kernel_agent.runtime.remote import JupyterServer

    return {"server": JupyterServer(url, token=token)}


def drive(agent: Agent, task: str | None, *, quiet: bool, as_json: bool, resume: str | None = None) -> int:
    """Run the agent with live output; Ctrl-C stops it cleanly (the session closes, the notebook stays)."""
    from kernel_agent.agent import StopReason
    from kernel_agent.cli.console import answer_text, reporter_for
    from kernel_agent.cli.errors import input_error
    from kernel_agent.cli.terminal_text import terminal_safe
    from kernel_agent.errors import RecordingError

    reporter = None
    if not quiet:
        # With --json, standard output is the JSON document alone; the live display goes to stderr.
        agent.on_event = reporter = reporter_for(sys.stderr if as_json else sys.stdout)

    async def main() -> AgentResult:
        # SIGTERM (kill, a job scheduler) stops the run as cleanly as Ctrl-C does.
        current = asyncio.current_task()
        if current is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
        try:
            return await agent.run(task, resume=resume)
        finally:
            await agent.close()

    try:
        try:
            result = asyncio.run(main())
        finally:
            if reporter is not None:
                reporter.close()  # the live region (or an open output line) ends before anything else is printed
    except RecordingError as exc:
        if resume is None:
            raise
        return input_error("run --resume", exc)  # a notebook that cannot be continued: exit 2, as replay's
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: the session was closed and its notebook saved.", file=sys.stderr)
        if agent.last_result is not None:
            print(terminal_safe(str(agent.last_result)), file=sys.stderr)
        return EXIT_INTERRUPTED
    if as_json:
        print(json.dumps(result.summary(), indent=2, default=str))
    else:
        if quiet:
            print(terminal_safe(str(result)))
        if result.answer is not None:
            print("\nanswer:\n" + answer_text(result.answer))
    if result.stop_reason is StopReason.MODEL_ERROR:
        print(f"kernel-agent: error: {result.error}", file=sys.stderr)
        return EXIT_MODEL_ERROR
    return 0 if result.ok else EXIT_LIMIT


def _pricing(text: str | None) -> Pricing | None:
    from kernel_agent.agent import Pricing

    if text is None:
        return None
    try:
        input_price, output_price = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--price takes IN,OUT in dollars per million tokens, e.g. 3,15; got {text!r}") from None
    return Pricing(input=input_price, output=output_price)
