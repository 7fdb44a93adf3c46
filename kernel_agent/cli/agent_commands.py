"""``kernel-agent run`` and ``kernel-agent demo``: an agent in the terminal, live, with its notebook left behind.

Exit status: 0 answered; 1 the model failed (or a usage error); 3 a limit
(steps, tokens, cost, time) ended the run first; 130 interrupted (Ctrl-C),
with the notebook saved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the agent modules load only when a command runs: `--help` stays fast
    from kernel_agent.agent import Agent, Pricing

EXIT_MODEL_ERROR, EXIT_LIMIT, EXIT_INTERRUPTED = 1, 3, 130
DEFAULT_DEMO_NOTEBOOK = "kernel-agent-demo.ipynb"


def add_commands(commands: Any) -> None:
    """Register ``run`` and ``demo`` on the main parser's subcommands."""
    run = commands.add_parser(
        "run", help="give a model a sandboxed kernel with tools and let it work on a task",
        description="Run an agent on TASK. The model writes Python cells that run in a sandboxed kernel with "
                    "the tools as an SDK; the session is recorded as a notebook. Exit status: 0 answered, "
                    "1 model error, 3 a limit ended the run, 130 interrupted.")
    run.add_argument("task", help="what to do, in words")
    run.add_argument("--model", required=True, metavar="SPEC",
                     help="anthropic:MODEL, openai:MODEL, openai:MODEL@BASE_URL (a local OpenAI-compatible "
                          "server) or scripted:PATH")
    run.add_argument("--base-url", metavar="URL", help="the provider's API base URL (a local server, a proxy)")
    run.add_argument("--max-retries", type=int, default=4, metavar="N",
                     help="retries of rate limits, overloads and server errors by the provider's SDK (default 4)")
    _add_session_options(run)
    run.add_argument("--max-steps", type=int, default=30, metavar="N", help="model replies at most (default 30)")
    run.add_argument("--max-tokens", type=int, metavar="N", help="tokens in all, input and output")
    run.add_argument("--max-cost", type=float, metavar="USD", help="dollars at most (needs --price)")
    run.add_argument("--price", metavar="IN,OUT", help="US dollars per million input and output tokens")
    run.add_argument("--max-seconds", type=float, metavar="S", help="wall time of the whole run")
    run.add_argument("--observation-limit", type=int, default=4000, metavar="CHARS",
                     help="characters of a cell's output sent back to the model (default 4000)")
    run.add_argument("--cell-timeout", type=float, default=300.0, metavar="S", help="seconds per cell (default 300)")
    run.add_argument("--json", action="store_true", help="print the result as JSON at the end")
    run.add_argument("--quiet", action="store_true", help="print only the result, not each step")
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo", help="an offline demo: a scripted model analyses a dataset through example tools (no API key)")
    demo.add_argument("--notebook", metavar="PATH", default=DEFAULT_DEMO_NOTEBOOK,
                      help=f"where the session is recorded (default: ./{DEFAULT_DEMO_NOTEBOOK})")
    demo.add_argument("--quiet", action="store_true", help="print only the result, not each step")
    demo.set_defaults(handler=_demo)


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tools", action="append", default=[], metavar="MODULE:OBJECT",
                        help="a tool, a list of tools or a ToolRegistry to load (repeatable)")
    parser.add_argument("--mcp", action="append", default=[], metavar="COMMAND",
                        help="an MCP server to start over stdio, e.g. 'python -m mcp_server_time' (repeatable)")
    parser.add_argument("--workspace", metavar="DIR", help="the kernel's working directory (kept); default: temporary")
    parser.add_argument("--notebook", metavar="PATH",
                        help="where the session is recorded (default: the host's record directory, "
                             "KERNEL_AGENT_RECORD_DIR or ~/.local/share/kernel-agent/records)")


def _run(args: argparse.Namespace) -> int:
    from kernel_agent.agent import Agent
    from kernel_agent.tools.loading import load_tools

    tools = load_tools(args.tools, args.mcp)
    if args.workspace and not Path(args.workspace).is_dir():
        raise ValueError(f"--workspace {args.workspace} does not exist or is not a directory; create it first")
    from kernel_agent.models import model_from_spec

    retries = {} if args.model.startswith("scripted:") else {"max_retries": args.max_retries}
    model = model_from_spec(args.model, base_url=args.base_url, **retries)
    agent = Agent(
        model, tools, workspace=args.workspace, notebook=args.notebook, max_steps=args.max_steps,
        max_tokens=args.max_tokens, max_cost=args.max_cost, pricing=_pricing(args.price),
        max_seconds=args.max_seconds, observation_limit=args.observation_limit, cell_timeout=args.cell_timeout,
    )
    return _drive(agent, args.task, quiet=args.quiet, as_json=args.json)


def _demo(args: argparse.Namespace) -> int:
    from kernel_agent.agent import Agent
    from kernel_agent.demo import DEMO_SCRIPT, DEMO_TASK, DEMO_TOOLS
    from kernel_agent.models.scripted import ScriptedModel

    notebook = Path(args.notebook)
    if not notebook.parent.is_dir():
        raise ValueError(f"the notebook's directory {notebook.parent} does not exist; create it first")
    print("kernel-agent demo: a scripted model (offline, no API key) works through a data-analysis task with "
          "example tools; everything runs in a sandboxed kernel and is recorded.\n")
    # The session's own temporary workspace: made, lent to the sandbox and removed (safely) by the session.
    agent = Agent(ScriptedModel.from_file(DEMO_SCRIPT), DEMO_TOOLS, notebook=notebook, max_steps=12)
    status = _drive(agent, DEMO_TASK, quiet=args.quiet, as_json=False)
    command = "kernel-agent" if shutil.which("kernel-agent") else sys.argv[0]
    print(f"\nThe session is recorded in {notebook} (open it in JupyterLab). Next:\n"
          f"  {command} audit {notebook}    # intact? which cell changed? a summary of the session\n"
          f"  {command} replay {notebook}   # re-run it in a fresh sandbox with the recorded tool results")
    return status


def _drive(agent: Agent, task: str, *, quiet: bool, as_json: bool) -> int:
    """Run the agent with live output; Ctrl-C stops it cleanly (the session closes, the notebook stays)."""
    from kernel_agent.agent import AgentResult, StopReason
    from kernel_agent.agent.console import ConsoleReporter, answer_text

    if not quiet:
        # With --json, standard output is the JSON document alone; the live display goes to stderr.
        agent.on_event = ConsoleReporter(sys.stderr if as_json else sys.stdout)

    async def main() -> AgentResult:
        # SIGTERM (kill, a job scheduler) stops the run as cleanly as Ctrl-C does.
        current = asyncio.current_task()
        if current is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
        try:
            return await agent.run(task)
        finally:
            await agent.close()

    try:
        result = asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: the session was closed and its notebook saved.", file=sys.stderr)
        if agent.last_result is not None:
            print(agent.last_result, file=sys.stderr)
        return EXIT_INTERRUPTED
    if as_json:
        print(json.dumps(result.summary(), indent=2, default=str))
    else:
        if quiet:
            print(result)
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
