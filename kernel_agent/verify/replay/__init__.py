"""Replay a recorded session: run its code cells again and check that they do the same.

:func:`replay` (``kernel-agent replay NOTEBOOK``) starts a fresh sandboxed
session, runs the recorded code cells in order and compares each one with
the recording. By default the tools answer *from the recording*: the
session's tools are rebuilt from the notebook's tool definitions (so the
kernel gets the same SDK), and each call is served by the recorded call of
that cell with the same tool and arguments, returning its recorded result
or re-raising its recorded error. A call the recording does not have is a
divergence; it fails in the kernel with a message saying so. With
``live_tools`` (``--live``) the real tools run instead. The kernel's ``random`` and NumPy's
global generator are seeded with the recorded seed (see
:mod:`kernel_agent.session.seeds`), so random values come out the same.

A cell is compared the way nbval compares notebooks: execution counts are
ignored; stream text is compared per stream name (stdout and stderr may
interleave differently); rich outputs are compared on their textual MIME
types (``text/*``, JSON), images only by presence; errors on ``ename`` and
``evalue``, not the traceback. All text is sanitized first: memory
addresses (``0x`` and 6+ hex digits), ANSI escape codes and trailing
whitespace. The cell's status, its tool calls (tool, arguments, outcome)
and its final answer are compared too.

:func:`replay` returns a :class:`ReplayReport` and prints nothing (the
command line renders it: :mod:`kernel_agent.cli.replay`). The modules:
``report`` (the report's models), ``compare`` (a cell as compared, and the
differ), ``engine`` (the replay itself).
"""

from kernel_agent.record.recording import ReplayInputError
from kernel_agent.verify.replay.compare import render_cell, sanitize
from kernel_agent.verify.replay.engine import replay
from kernel_agent.verify.replay.report import Divergence, ReplayReport

__all__ = ["Divergence", "ReplayInputError", "ReplayReport", "render_cell", "replay", "sanitize"]
