"""The tool manifest of the system prompt, at a size that does not grow with the catalogue.

A small catalogue is listed in full: every tool with its call and a one-line
summary (what the model needs to write code at once). Past
:data:`FULL_BUDGET` characters the manifest becomes an overview within
:data:`OVERVIEW_BUDGET`, degraded step by step until it fits: namespaces
with their tool counts and one line each (the source's namespace
description, else a few tool names); namespace names with counts; the
largest namespaces and how many more there are. Every step ends with how to
find tools (``tools.search``, ``help``, ``dir``), so the model reaches any
tool by searching, not by reading the prompt. The text is deterministic
(registration order, counts, ties in that order) and no step cuts an
identifier: a name that does not fit is left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel_agent.kernel.catalog_search import one_line
from kernel_agent.tools.catalog import ToolRegistry

FULL_BUDGET = 4_000  # characters (about 1,000 tokens): a full listing while it fits
OVERVIEW_BUDGET = 1_800  # characters: the overview of a larger catalogue never takes more
NAMESPACE_LINE = 100  # characters of a namespace's one line
_EXAMPLE_NAMES = 3
_HEADER = "Tools (a Python SDK in the kernel; calls run on the host):"
_FOOTER = ("Details: help(tools.<name>) shows a tool's signature and docs; tools.search('words') "
           "finds tools; dir(tools) lists them. Await tools.<name>.aio(...) to run calls concurrently.")
_FIND = ("Find tools by searching: tools.search('words') ranks every tool (path, signature, summary); "
         "tools.<namespace>.search('words') searches one namespace; dir(tools.<namespace>) lists it; "
         "help(tools.<namespace>.<name>) shows a tool's parameters and docs. Await tools.<...>.aio(...) "
         "to run calls concurrently.")


@dataclass(frozen=True)
class Group:
    """A namespace (or the top-level tools, ``identifier == ""``) as the overview shows it."""

    identifier: str
    count: int
    line: str  # one line: the namespace's description, else its first tool names

    @property
    def label(self) -> str:
        return f"tools.{self.identifier}" if self.identifier else "tools.<name> (top level)"


def _examples(names: list[str], limit: int) -> str:
    """``e.g. a, b, c``: whole names only, as many as fit in ``limit`` characters."""
    shown: list[str] = []
    for name in names[:_EXAMPLE_NAMES]:
        text = "e.g. " + ", ".join([*shown, name])
        if len(text) > limit:
            break
        shown.append(name)
    return "e.g. " + ", ".join(shown) if shown else ""


def groups(registry: ToolRegistry) -> list[Group]:
    """The namespaces in registration order, then the top-level tools (when there are any)."""
    members: dict[str, list[str]] = {}
    for tool in registry.tools():
        members.setdefault(registry.namespace_of(tool), []).append(registry.identifier(tool))
    order = [*registry.namespaces(), *([""] if "" in members else [])]
    return [Group(n, len(members.get(n, [])), group_line(registry, n, members.get(n, []))) for n in order]


def group_line(registry: ToolRegistry, namespace: str, names: list[str]) -> str:
    """One bounded line on a namespace ("" = the top level) whose tools are ``names``: its description,
    else where it came from and a few tool names."""
    description = one_line(registry.namespace_description(namespace) or "", NAMESPACE_LINE) if namespace else ""
    if description:
        return description
    server = registry.server(namespace) if namespace else None
    origin = f"MCP server {one_line(server, 40)!r}; " if server else ""
    return origin + _examples(names, NAMESPACE_LINE - len(origin))


def _totals(registry: ToolRegistry, found: list[Group]) -> str:
    namespaced = [g for g in found if g.identifier]
    top = sum(g.count for g in found if not g.identifier)
    text = f"{len(registry):,} tools in {len(namespaced):,} namespaces"
    return text + (f" and {top:,} at the top level" if top else "")


def _with_lines(registry: ToolRegistry, found: list[Group]) -> str:
    lines = [f"{_HEADER} {_totals(registry, found)}; tools per namespace in brackets:"]
    lines += [f"{g.label} ({g.count:,}): {g.line}" if g.line else f"{g.label} ({g.count:,})" for g in found]
    return "\n".join([*lines, _FIND])


def _counts(registry: ToolRegistry, found: list[Group], shown: list[Group], hidden: int) -> str:
    names = ", ".join(f"{g.identifier or '(top level)'} {g.count:,}" for g in shown)
    more = ""
    if hidden:
        tools = sum(g.count for g in found) - sum(g.count for g in shown)
        more = f"; {hidden:,} more namespaces ({tools:,} tools): tools.namespaces() lists them all"
    return "\n".join([f"{_HEADER} {_totals(registry, found)}.",
                      f"Namespaces (tools.<namespace>) with their tool counts: {names}{more}.", _FIND])


def _largest(registry: ToolRegistry, found: list[Group], budget: int) -> str:
    """The largest namespaces that fit (whole names only, ties in registration order), then how many more."""
    by_size = sorted(found, key=lambda g: -g.count)  # stable: registration order among equals
    total = sum(g.count for g in found)
    # The text without any namespace, with the longest "N more" tail it can have: what is left is for names.
    room = budget - len(_counts(registry, found, [], len(found))) - len(f"{total:,}")
    shown: list[Group] = []
    for group in by_size:
        part = len(f"{group.identifier or '(top level)'} {group.count:,}") + 2
        if part <= room:
            shown.append(group)
            room -= part
    order = {id(g): i for i, g in enumerate(found)}
    shown.sort(key=lambda g: order[id(g)])
    return _counts(registry, found, shown, len(found) - len(shown))


def full_listing(registry: ToolRegistry, limit: int | None = None) -> str | None:
    """Every tool with its call and summary (the manifest of a small catalogue); None once it passes ``limit``
    characters (the listing of a large catalogue is not built only to be thrown away)."""
    lines = [_HEADER]
    size = len(_HEADER) + len(_FOOTER)

    def add(line: str) -> bool:
        nonlocal size
        lines.append(line)
        size += len(line) + 1
        return limit is None or size <= limit

    for t in registry.tools(""):
        if not add(registry.summary_line(t)):
            return None
    for namespace in registry.namespaces():
        server = registry.server(namespace)
        origin = f" (MCP server {server!r})" if server else ""
        description = one_line(registry.namespace_description(namespace) or "", NAMESPACE_LINE)
        if not add(f"tools.{namespace}{origin}:" + (f" {description}" if description else "")):
            return None
        for t in registry.tools(namespace):
            if not add("  " + registry.summary_line(t)):
                return None
    lines.append(_FOOTER)
    return "\n".join(lines)


def build_manifest(registry: ToolRegistry, *, full_budget: int = FULL_BUDGET,
                   overview_budget: int = OVERVIEW_BUDGET) -> str:
    """The manifest: the full listing when it fits ``full_budget``, else the richest overview that fits."""
    if not len(registry):
        return "No tools are available in this session."
    full = full_listing(registry, full_budget)
    if full is not None and len(full) <= full_budget:
        return full
    found = groups(registry)
    with_lines = _with_lines(registry, found)
    if len(with_lines) <= overview_budget:
        return with_lines
    counts = _counts(registry, found, found, 0)
    if len(counts) <= overview_budget:
        return counts
    return _largest(registry, found, overview_budget)

