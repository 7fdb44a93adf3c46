"""Text from a kernel or a model, made safe to print on the user's terminal: see :mod:`kernel_agent.terminal_text`.

The cleaning lives below the command line since the smolagents executor needs it too (smolagents' logger prints
the kernel's output); the command line's modules import it from here.
"""

from __future__ import annotations

from kernel_agent.terminal_text import terminal_safe

__all__ = ["terminal_safe"]
