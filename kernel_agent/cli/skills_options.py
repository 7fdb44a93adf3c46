"""The command line's skills options (``--skills [DIR]``, ``--approve-skills``), part of ``session_options``.

``--skills`` gives every session of ``run`` and ``mcp`` a
:class:`~kernel_agent.skills.source.SkillsSource` on the library (DIR, or the
default one): ``from skills import NAME`` in the kernel, ``skills.propose(...)``
to keep a function. A command line runs unattended, so proposals are stored
only with ``--approve-skills`` (after their checks and trial); without it each
is refused, saying so. See docs/skills.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def skills_options() -> list[Callable[[Any], Any]]:
    """``--skills [DIR]`` and ``--approve-skills`` (they arrive as ``skills`` and ``approve_skills``)."""
    return [
        click.option("--skills", is_flag=False, flag_value="", default=None, metavar="[DIR]",
                     help="give the kernel the skills library (DIR, default $KERNEL_AGENT_SKILLS_DIR or "
                          "~/.local/share/kernel-agent/skills): `from skills import NAME`; put a TASK argument "
                          "before it, or DIR is taken for the task"),
        click.option("--approve-skills", is_flag=True,
                     help="store the skills the kernel proposes once they pass their checks and tests (default: "
                          "refuse every proposal, saying why)"),
    ]


def pop_skills_sources(options: dict[str, Any]) -> list[Any]:
    """Take the skills options out of ``options``: the SkillsSource they ask for (none without ``--skills``)."""
    directory = options.pop("skills", None)
    approve = bool(options.pop("approve_skills", False))
    if directory is None:
        if approve:
            raise click.UsageError("--approve-skills goes with --skills")
        return []
    from kernel_agent.skills.source import SkillsSource

    return [SkillsSource(directory or None, approver=_approve_all if approve else None)]


def _approve_all(request: Any) -> bool:
    return True
