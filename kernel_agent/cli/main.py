"""The ``kernel-agent`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import textwrap
from collections.abc import Sequence

from kernel_agent._version import __version__

EXAMPLE_CELLS = [
    ("state persists: define data in one cell...", "rows = [{'id': i, 'value': i * i % 97} for i in range(10_000)]\nlen(rows)"),
    ("...and use it in the next", "top = sorted(rows, key=lambda r: r['value'], reverse=True)[:3]\nprint(top)"),
    ("errors come back as results, not exceptions", "rows[10**6]"),
    ("the sandbox: no network, no host secrets",
     "import os, socket\nprint('visible env:', sorted(os.environ))\n"
     "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\nexcept OSError as e:\n    print('network:', e)"),
    ("a runaway cell is interrupted, and the state survives", "while True: pass"),
    ("still there after the interrupt", "len(rows)"),
]


async def _example(timeout: float) -> int:
    from kernel_agent.session.session import Session

    async with Session() as session:
        print(f"session {session.id[:8]}: sandbox={session.policy.mode.value}, workspace={session.workspace}")
        for title, code in EXAMPLE_CELLS:
            # Only the runaway cell gets the short timeout: the first traceback
            # of a kernel imports IPython's formatter, slow on a busy machine.
            result = await session.execute(code, timeout=timeout if "while True" in code else 120)
            print(f"\n# {title}\n{textwrap.indent(code, '>>> ')}")
            if result.stdout:
                print(result.stdout.rstrip())
            if result.result is not None:
                print(f"=> {result.result}")
            if result.error is not None:
                print(f"!! {result.status.value}: {result.error.ename}: {result.error.evalue}".rstrip(": "))
        enforced = session.metadata()["sandbox"]["limits_enforced_by"]
        print("\nlimits enforced by:", json.dumps(enforced, indent=2))
    return 0


async def _sdk(tool_specs: list[str], mcp_commands: list[str]) -> int:
    from kernel_agent.tools.loading import load_tools
    from kernel_agent.tools.registry import ToolRegistry
    from kernel_agent.tools.sdkgen import render_sdk
    from kernel_agent.tools.sources import close_sources, is_tool_source, start_sources

    loaded = load_tools(tool_specs, mcp_commands)
    sources = [item for item in loaded if is_tool_source(item)]
    items = [item for item in loaded if not is_tool_source(item)]
    started = await start_sources(sources)
    try:
        print(render_sdk(ToolRegistry([*items, *sources])))
    finally:
        await close_sources(started)
    return 0


def _recover(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kernel_agent.record.recorder import recover

    journal = Path(args.journal)
    notebook = Path(args.out) if args.out else journal.with_name(journal.name.replace(".journal.jsonl", ".ipynb"))
    if notebook == journal:
        raise ValueError(f"{journal} is not named *.journal.jsonl; give --out NOTEBOOK")
    try:
        count = recover(journal, notebook)
    except Exception as exc:  # noqa: BLE001 - a journal is hostile input: one line, never a traceback
        return _input_error("recover", exc)
    print(f"recovered {count} cells from {journal} into {notebook}")
    return 0


def _input_error(command: str, exc: Exception) -> int:
    """Report why a recording could not be used, in one line, with exit status 2.

    Our own errors say what is wrong; anything else is named by its type
    (the input found a path the checks missed: still no traceback).
    """
    from kernel_agent.errors import KernelAgentError

    message = str(exc) if isinstance(exc, KernelAgentError) else f"{type(exc).__name__}: {exc}"
    print(f"kernel-agent {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _replay(args: argparse.Namespace) -> int:
    from kernel_agent.verify.replay import run_command

    return run_command(args)


def _kernelspec_install(args: argparse.Namespace) -> int:
    from kernel_agent.kernelspec.spec import install_kernelspec

    path = install_kernelspec(user=not args.sys_prefix, prefix=sys.prefix if args.sys_prefix else None)
    print(f"installed the kernel-agent kernelspec in {path}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from kernel_agent.verify.audit import main as audit_main

    return audit_main(args.notebook, json_output=args.json, key_env=args.key_env, key_file=args.key_file,
                      public_key_file=args.public_key)


def _keygen(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kernel_agent.record.signing import SIGNING_KEY_ENV, generate_keypair

    private = Path(args.private_key)
    public = generate_keypair(private)
    print(f"private key: {private} (mode 0600; give it to sessions with {SIGNING_KEY_ENV}={private})\n"
          f"public key:  {public} (give it to auditors: kernel-agent audit NOTEBOOK --public-key {public})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="kernel-agent",
        description="Stateful code agents in sandboxed, recorded IPython kernels.",
    )
    parser.add_argument("--version", action="version", version=f"kernel-agent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    example = commands.add_parser("example", help="run a short example session in a sandboxed kernel (offline)")
    example.add_argument("--timeout", type=float, default=2.0, help="seconds before the runaway cell is interrupted (default: 2)")
    example.set_defaults(handler=lambda a: asyncio.run(_example(a.timeout)))

    from kernel_agent.cli.agent_commands import add_commands

    add_commands(commands)

    sdk = commands.add_parser("sdk", help="print the tool SDK and manifest a model would see")
    sdk.add_argument("--tools", action="append", default=[], metavar="MODULE:OBJECT",
                     help="a tool, a list of tools or a ToolRegistry to load (repeatable)")
    sdk.add_argument("--mcp", action="append", default=[], metavar="COMMAND",
                     help="an MCP server to start over stdio, e.g. 'python -m mcp_server_time' (repeatable)")
    sdk.set_defaults(handler=lambda a: asyncio.run(_sdk(a.tools, a.mcp)))

    recover_command = commands.add_parser("recover", help="rebuild a session notebook from its journal (after a crash)")
    recover_command.add_argument("journal", help="the session's *.journal.jsonl")
    recover_command.add_argument("--out", help="notebook to write (default: next to the journal)")
    recover_command.set_defaults(handler=_recover)

    replay = commands.add_parser(
        "replay", help="re-run a recorded session and check it does the same (exit 0 faithful, 1 divergent, 2 error)")
    replay.add_argument("notebook", help="the recorded session notebook (.ipynb); it is never modified")
    replay.add_argument("--live", action="store_true",
                        help="call the real tools (--tools/--mcp) instead of answering from the recording")
    replay.add_argument("--out", metavar="PATH", help="record the replayed session to this notebook")
    replay.add_argument("--tools", action="append", default=[], metavar="MODULE:OBJECT",
                        help="with --live: a tool, a list of tools or a ToolRegistry to load (repeatable)")
    replay.add_argument("--mcp", action="append", default=[], metavar="COMMAND",
                        help="with --live: an MCP server to start over stdio (repeatable)")
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.set_defaults(handler=_replay)

    kernelspec = commands.add_parser("kernelspec", help="manage the Jupyter kernelspec")
    kernelspec_commands = kernelspec.add_subparsers(dest="kernelspec_command", metavar="ACTION", required=True)
    install = kernelspec_commands.add_parser("install", help="install the kernel-agent kernelspec")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user (default)")
    where.add_argument("--sys-prefix", action="store_true", help="into this Python environment")
    install.set_defaults(handler=_kernelspec_install)

    audit = commands.add_parser(
        "audit", help="verify a recorded notebook's integrity chain and summarise the session",
        description="Verify a recorded notebook (never modified) and summarise its session. Exit status: "
                    "0 intact, 1 tampered or incomplete, 2 unusable input.")
    audit.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb a session was recorded to")
    audit.add_argument("--json", action="store_true", help="print the report as one JSON document")
    key = audit.add_mutually_exclusive_group()
    key.add_argument("--key-env", metavar="VAR",
                     help="check the chain's HMAC with the key in this environment variable "
                          "(default: KERNEL_AGENT_AUDIT_KEY, if set)")
    key.add_argument("--key-file", metavar="PATH", help="check the chain's HMAC with the key in this file")
    audit.add_argument("--public-key", metavar="PATH",
                       help="check the chain's Ed25519 signature with this public key (PEM, or 64 hex digits)")
    audit.set_defaults(handler=_audit)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing recordings",
                                 description="Write a new private key (mode 0600) and PATH.pub beside it. Sessions "
                                             "sign their recordings with the private key (KERNEL_AGENT_SIGNING_KEY="
                                             "PATH); anyone verifies them with the public key (audit --public-key).")
    keygen.add_argument("private_key", metavar="PATH", help="where to write the private key (never overwritten)")
    keygen.set_defaults(handler=_keygen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kernel-agent`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    from kernel_agent.errors import KernelAgentError

    try:
        return int(args.handler(args))
    except BrokenPipeError:
        # The reader of our output went away (`... | head`): end quietly, as a Unix tool killed by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    except (KernelAgentError, ValueError, ImportError, AttributeError) as exc:
        print(f"kernel-agent: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
