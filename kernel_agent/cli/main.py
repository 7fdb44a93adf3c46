"""The ``kernel-agent`` command line: the command group, and what every command shares.

One module per command (``cli/run.py``, ``cli/audit.py``, ...). A command
returns its exit status; :func:`main` turns the errors a user can meet into
one line on stderr (exit 1, or 2 for usage errors and unusable input) and a
closed pipe into a quiet end, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from kernel_agent._version import __version__
from kernel_agent.cli import audit, demo, example, kernelspec, keygen, mcp, recover, replay, run, sdk, sessions
from kernel_agent.cli import experiment as experiment_command
from kernel_agent.cli import skills as skills_cli
from kernel_agent.cli.errors import EXIT_BROKEN_PIPE, silence_stdout
from kernel_agent.errors import KernelAgentError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class _Commands(click.Group):
    """The command group: commands listed in the order they are added, an unknown one named as such."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            choices = ", ".join(repr(known) for known in self.list_commands(ctx))
            ctx.fail(f"argument COMMAND: invalid choice: {name!r} (choose from {choices})")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader of our output went away (`... | head`): end quietly, as a Unix tool killed by SIGPIPE.
            silence_stdout()
            return EXIT_BROKEN_PIPE
        except (KernelAgentError, ValueError, ImportError, AttributeError) as exc:
            print(f"kernel-agent: error: {exc}", file=sys.stderr)
            return EXIT_ERROR


@click.group("kernel-agent", cls=_Commands, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kernel-agent", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> int:
    """Stateful code agents in sandboxed, recorded IPython kernels."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
    return 0


for _module in (example, run, demo, experiment_command, sdk, recover, replay, kernelspec, audit, keygen, sessions, mcp):
    cli.add_command(_module.command)
cli.add_command(skills_cli.command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kernel-agent`` console script: run the command, return its exit status."""
    try:
        status = cli.main(args=list(argv) if argv is not None else None, prog_name="kernel-agent",
                          standalone_mode=False)
    except click.ClickException as exc:  # usage errors (exit 2)
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C outside a run (a run handles its own)
        return EXIT_INTERRUPTED
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
