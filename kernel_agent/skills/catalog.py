"""Skills as a model finds them: search entries (``tools.search`` and ``registry.search``) and the manifest's section.

A skill is not a host tool: its entry's path is ``skills.NAME`` and its line
says how to import it (``from skills import NAME``), so a search result
never reads as something to call through ``tools``. The manifest section is
bounded like the tool manifest: past its budget it ends with how many more
skills there are and how to search them. Every text here is the library's,
which may have been copied from elsewhere: descriptions are cleaned when
read and cut to one line here; the code is not read at all.
"""

from __future__ import annotations

from kernel_agent.kernel.catalog_search import CatalogEntry, SearchIndex, one_line
from kernel_agent.skills.versions import Skill

MANIFEST_BUDGET = 1_500  # characters of the manifest's skills section
MAX_MANIFEST_SKILLS = 40  # listed one per line at most; the rest are counted
_LINE_CHARS = 160
HEADER = "Skills (import with `from skills import NAME`; code kept from earlier sessions):"
KIND = "skill"


def skill_line(skill: Skill) -> str:
    """What a search result or the manifest shows of a skill: how to import it and what it does."""
    return one_line(f"from skills import {skill.name}: {skill.description} (skill v{skill.version})", _LINE_CHARS)


def catalog_entry(skill: Skill) -> CatalogEntry:
    """A skill's search entry; the namespace is ``skills`` and the path ``skills.NAME``, never ``tools...``."""
    return CatalogEntry(path=f"skills.{skill.name}", name=skill.name, namespace="skills", line=skill_line(skill),
                        summary=skill.description, description=KIND, kind=KIND)


def catalog_entries(skills: list[Skill]) -> list[CatalogEntry]:
    """The search entries of ``skills``, by name. Not by use: they go into a session's SDK, whose hash a
    resumed session checks, and a use elsewhere must not change it."""
    return [catalog_entry(s) for s in sorted(skills, key=lambda s: s.name)]


class SkillSearch:
    """An index over ``skills`` (built once) ranking them with the tool search's ranking; with an empty query,
    every skill, most used first."""

    def __init__(self, skills: list[Skill]) -> None:
        self._ordered = _by_use(skills)
        self._index = SearchIndex(catalog_entry(s) for s in self._ordered)

    def search(self, query: str, limit: int | None = None) -> list[Skill]:
        return [self._ordered[position] for position in self._index.rank(query, limit)]


def search(skills: list[Skill], query: str, limit: int | None = None) -> list[Skill]:
    """``skills`` ranked for ``query`` (see :class:`SkillSearch`)."""
    return SkillSearch(skills).search(query, limit)


def manifest_section(skills: list[Skill], budget: int = MANIFEST_BUDGET) -> str:
    """The manifest's skills section within ``budget`` characters: the most used skills one a line, then how
    many more there are and how to find them. "" when there are no skills (or not even the count fits)."""
    if not skills:
        return ""
    ordered = _by_use(skills)
    lines = [HEADER]
    size = len(HEADER)
    for shown, skill in enumerate(ordered[:MAX_MANIFEST_SKILLS]):
        line = "  " + skill_line(skill)
        rest = len(ordered) - shown - 1
        # Room is kept for the tail a cut list needs, so the list never has to lose a line to add it.
        reserve = len(_more(rest)) + 1 if rest else 0
        if size + 1 + len(line) + reserve > budget:
            break
        lines.append(line)
        size += 1 + len(line)
    hidden = len(ordered) - (len(lines) - 1)
    if hidden:
        lines.append(_more(hidden))
    text = "\n".join(lines)
    if len(text) <= budget:
        return text
    short = f"{len(ordered):,} skills (import with `from skills import NAME`): tools.search('words') finds them."
    return short if len(short) <= budget else ""


def _more(hidden: int) -> str:
    return f"  ... {hidden:,} more skills: tools.search('words') finds them (marked 'skill')."


def _by_use(skills: list[Skill]) -> list[Skill]:
    return sorted(skills, key=lambda s: (-s.uses, s.name))
