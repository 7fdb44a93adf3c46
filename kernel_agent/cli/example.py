"""``kernel-agent example``: a short session in a sandboxed kernel (offline): state, errors, the sandbox, timeouts."""

from __future__ import annotations

import asyncio
import json
import textwrap

import click

EXAMPLE_CELLS = [
    ("state persists: define data in one cell...",
     "rows = [{'id': i, 'value': i * i % 97} for i in range(10_000)]\nlen(rows)"),
    ("...and use it in the next", "top = sorted(rows, key=lambda r: r['value'], reverse=True)[:3]\nprint(top)"),
    ("errors come back as results, not exceptions", "rows[10**6]"),
    ("the sandbox: no network, no host secrets",
     "import os, socket\nprint('visible env:', sorted(os.environ))\n"
     "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\nexcept OSError as e:\n    print('network:', e)"),
    ("a runaway cell is interrupted, and the state survives", "while True: pass"),
    ("still there after the interrupt", "len(rows)"),
]


@click.command("example", short_help="run a short example session in a sandboxed kernel (offline)")
@click.option("--timeout", type=float, default=2.0, help="seconds before the runaway cell is interrupted (default: 2)")
def command(timeout: float) -> int:
    """Run a short example session in a sandboxed kernel (offline)."""
    return asyncio.run(_example(timeout))


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
