"""The command line's skills options (``--skills [DIR]``, ``--approve-skills``, ``--approve-skill-updates``).

``--skills`` gives every session of ``run`` and ``mcp`` a
:class:`~kernel_agent.skills.source.SkillsSource` on the library (DIR, or the
default one): ``from skills import NAME`` in the kernel, ``skills.propose(...)``
to keep a function. A command line runs unattended, so proposals are stored
only with ``--approve-skills`` (after their checks and trial); without it each
is refused, saying so. ``--approve-skills`` takes new names only: a new version
of a skill the library holds (it would become current for every later session)
is refused unless ``--approve-skill-updates`` is given too (it implies
``--approve-skills``). See docs/skills.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def skills_options() -> list[Callable[[Any], Any]]:
    """``--skills [DIR]``, ``--approve-skills`` and ``--approve-skill-updates`` (they arrive as ``skills``,
    ``approve_skills`` and ``approve_skill_updates``)."""
    return [
        click.option("--skills", is_flag=False, flag_value="", default=None, metavar="[DIR]",
                     help="give the kernel the skills library (DIR, default $KERNEL_AGENT_SKILLS_DIR or "
                          "~/.local/share/kernel-agent/skills): `from skills import NAME`; put a TASK argument "
                          "before it, or DIR is taken for the task"),
        click.option("--approve-skills", is_flag=True,
                     help="store the new skills the kernel proposes once they pass their checks and tests "
                          "(default: refuse every proposal, saying why); a new version of an existing skill is "
                          "refused unless --approve-skill-updates is given"),
        click.option("--approve-skill-updates", is_flag=True,
                     help="as --approve-skills, and also store new versions of skills the library holds (they "
                          "become current for every later session)"),
    ]


def pop_skills_sources(options: dict[str, Any]) -> list[Any]:
    """Take the skills options out of ``options``: the SkillsSource they ask for (none without ``--skills``)."""
    directory = options.pop("skills", None)
    updates = bool(options.pop("approve_skill_updates", False))
    approve = bool(options.pop("approve_skills", False)) or updates
    if directory is None:
        if approve:
            flag = "--approve-skill-updates" if updates else "--approve-skills"
            raise click.UsageError(f"{flag} goes with --skills")
        return []
    from kernel_agent.skills.checks import SkillPolicy
    from kernel_agent.skills.source import SkillsSource

    return [SkillsSource(directory or None, approver=_approve_all if approve else None,
                         policy=SkillPolicy(allow_replacing=updates))]


def _approve_all(request: Any) -> bool:
    return True
