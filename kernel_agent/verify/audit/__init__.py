"""Auditing a recorded notebook: verify its integrity chain and summarise its session.

A recorded notebook is evidence: someone reviewing what an agent did needs
to know that the cells they read are the cells that ran, in that order, all
of them, with the tool results that came back. :func:`audit_notebook`
recomputes the recorder's hash chain from the file (read only) and returns
an :class:`AuditReport`; it prints nothing (``kernel-agent audit`` renders
the report: :mod:`kernel_agent.cli.audit`).

Verdicts, and the exit status the report carries:

* ``intact`` (0): every cell links to the previous one, the header matches
  the genesis, the metadata's length and head match the last cell, every
  side file matches its name, and the HMAC (when a key is given) is right.
* ``tampered`` (1): something covered by the chain was changed, removed,
  inserted or reordered, or a key was given and the signature is wrong or
  absent.
* ``incomplete`` (1): nothing was shown to be changed, but part of the
  record is missing: cells at the end (truncated), a side file, or the
  session's close.
* unusable input (2, :class:`AuditInputError`): not a file, not JSON, not a
  notebook, not recorded by kernel-agent, or a format version this code does
  not read.

The modules: ``report`` (the report's models), ``cells`` (cells as the
verifier sees them), ``chain`` (the verifier), ``summary`` (the session
recomputed from the cells), ``notebook`` (the whole audit).
"""

from kernel_agent.verify.audit.notebook import audit_notebook, load_recorded_notebook, read_key
from kernel_agent.verify.audit.report import (
    EXIT_INTACT,
    EXIT_PROBLEM,
    EXIT_UNUSABLE,
    AuditInputError,
    AuditReport,
    CellRef,
    ChainReport,
    Problem,
    Summary,
    ToolUsage,
    UnusableReport,
)
from kernel_agent.verify.audit.summary import summarise

__all__ = [
    "EXIT_INTACT", "EXIT_PROBLEM", "EXIT_UNUSABLE", "AuditInputError", "AuditReport", "CellRef", "ChainReport",
    "Problem", "Summary", "ToolUsage", "UnusableReport", "audit_notebook", "load_recorded_notebook", "read_key",
    "summarise",
]
