"""How the command line reports what went wrong: one line on stderr, never a traceback, and a closed pipe."""

from __future__ import annotations

import os
import signal
import sys

from kernel_agent.cli.terminal_text import terminal_safe
from kernel_agent.errors import KernelAgentError

#: The status of a command whose reader went away (`... | head`), as a Unix tool killed by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
#: The status of a command given input it cannot use (audit, replay, recover).
EXIT_UNUSABLE_INPUT = 2


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def input_error(command: str, exc: Exception) -> int:
    """Report why a recording could not be used, in one line, with exit status 2.

    Our own errors say what is wrong; anything else is named by its type
    (the input found a path the checks missed: still no traceback).
    """
    message = str(exc) if isinstance(exc, KernelAgentError) else f"{type(exc).__name__}: {exc}"
    print(f"kernel-agent {command}: error: {one_line(terminal_safe(message))}", file=sys.stderr)
    return EXIT_UNUSABLE_INPUT


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
