"""What a tool source may add to search and to the manifest besides its tools (skills, today).

A source added to a :class:`~kernel_agent.tools.registry.ToolRegistry` may have

- ``catalog_extras() -> list[CatalogEntry]``: search entries that are *not*
  host tools (a skill: path ``skills.NAME``, its line saying how to import
  it). ``registry.search_entries`` ranks them with the tools, and the
  generated SDK carries them in the catalogue of the source's namespace
  module, so ``tools.search`` in the kernel finds them too; nothing makes
  them callable through ``tools``.
- ``manifest_extras(budget) -> str``: a section the manifest ends with, at
  most ``budget`` characters.

This module knows nothing of skills: it reads the two methods by shape,
bounds and cleans what they give (a source's text reaches the model's prompt
and terminals), drops what presents itself as a host tool (an entry whose
path or line, or a section line, starts with ``tools.``: the kernel's search
shows lines only, so it would read as a callable tool), and treats a source
that fails to answer as having nothing to add. A registry without such a source has exactly the manifest, SDK and
recording it had before.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from kernel_agent.kernel.catalog_search import CatalogEntry, one_line
from kernel_agent.terminal_text import terminal_safe

EXTRAS_BUDGET = 1_500  # characters the manifest gives the sections of every source together
MAX_EXTRAS = 10_000  # search entries taken from one source
_LINE_CHARS = 300
_NAME_CHARS = 200
_KIND_CHARS = 20


def has_extras(item: object) -> bool:
    """Whether ``item`` (judged by its class, as tool sources are) gives catalogue entries or a manifest section."""
    cls = type(item)
    return callable(getattr(cls, "catalog_extras", None)) or callable(getattr(cls, "manifest_extras", None))


def _line(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters, with escape sequences gone whole (payload included)."""
    return one_line(terminal_safe(text[: limit * 4 + 16]), limit)


def _clean(entry: CatalogEntry, namespace: str) -> CatalogEntry | None:
    if not isinstance(entry, CatalogEntry):
        return None
    fields = (entry.path, entry.name, entry.line, entry.summary, entry.description, entry.kind)
    if not all(isinstance(f, str) for f in fields) or not entry.name.strip():
        return None
    kind = _line(entry.kind, _KIND_CHARS) or "extra"
    if _folded(kind) == "tool":  # whatever the source says, an extra is never a callable host tool
        kind = "extra"
    if _reads_as_tool(entry.path) or _reads_as_tool(entry.line):
        # In the kernel, tools.search shows an entry's line only: a line (or path) written as a host call
        # would read as a tool the model can call, next to (or instead of) the real one. Such an entry lies.
        return None
    return CatalogEntry(path=_line(entry.path, _NAME_CHARS), name=_line(entry.name, _NAME_CHARS),
                        namespace=namespace, line=_line(entry.line, _LINE_CHARS),
                        summary=_line(entry.summary, _LINE_CHARS), description=_line(entry.description, 400),
                        kind=kind)


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def _reads_as_tool(text: str) -> bool:
    """Whether ``text`` starts as a host tool's call does (``tools.``), in any case or width, spaced out or
    behind quotes, backticks or a bullet."""
    start = "".join(_folded(text[:64]).split())
    return start.lstrip("`'\"*-+>•([{").startswith("tools.")


def catalog_extras(source: object, namespace: str) -> list[CatalogEntry]:
    """The source's extra search entries, cleaned and bounded, in ``namespace`` (where its tools are)."""
    method: Callable[[], Any] | None = getattr(source, "catalog_extras", None)
    if not callable(method):
        return []
    try:
        given = method()
        if not isinstance(given, (list, tuple)):
            return []
        found = [_clean(entry, namespace) for entry in given[:MAX_EXTRAS]]
    except Exception:  # noqa: BLE001 - extras only: a source that fails to give them has none
        return []
    return [entry for entry in found if entry is not None]


def manifest_extras(source: object, budget: int) -> str:
    """The source's manifest section within ``budget`` characters, each line cleaned ("" for none)."""
    method: Callable[[int], Any] | None = getattr(source, "manifest_extras", None)
    if not callable(method) or budget <= 0:
        return ""
    try:
        text = method(budget)
    except Exception:  # noqa: BLE001 - extras only
        return ""
    if not isinstance(text, str):
        return ""
    lines = []
    for raw in text[: budget * 2].split("\n"):
        indent = "  " if raw.startswith(" ") else ""
        line = _line(raw, _LINE_CHARS)
        if line and not _reads_as_tool(line):  # a section lists what the source adds, never host tools
            lines.append(indent + line)
    cleaned = "\n".join(lines)
    if len(cleaned) <= budget:
        return cleaned
    return cleaned[:budget].rsplit("\n", 1)[0] if "\n" in cleaned[:budget] else ""


def collect(sources: list[tuple[object, str]]) -> dict[str, list[CatalogEntry]]:
    """The extra entries of each (source, namespace identifier), by namespace, in the sources' order."""
    found: dict[str, list[CatalogEntry]] = {}
    for source, namespace in sources:
        found.setdefault(namespace, []).extend(catalog_extras(source, namespace))
    return found


def manifest_sections(sources: list[object], budget: int = EXTRAS_BUDGET) -> str:
    """The sources' manifest sections, blank-line separated, within ``budget`` characters together."""
    sections: list[str] = []
    for source in sources:
        section = manifest_extras(source, budget)
        if section:
            sections.append(section)
            budget -= len(section) + 2
    return "\n\n".join(sections)


def extras_rows(entries: list[CatalogEntry]) -> list[list[str]]:
    """The entries as the catalogue of a generated module holds them (read back by
    :func:`kernel_agent.kernel.catalog_search.extra_entries`)."""
    return [[e.kind, e.path, e.name, e.line, e.summary, e.description] for e in entries]
