"""What search knows of each tool, on the host and (through the generated SDK) in the kernel.

:func:`catalog_entries` feeds ToolRegistry.search. :func:`catalog_record`
is the same knowledge as plain data for one generated module: sdkgen writes
it into the module's source as its last line (``__catalog__ = {...}``), so
the kernel can search, list namespaces and describe them without executing
any namespace's module (see kernel_agent.kernel.sdk: namespaces load on
first use).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from kernel_agent.kernel.catalog_search import DESCRIPTION_CHARS, CatalogEntry, one_line
from kernel_agent.tools.extras import extras_rows
from kernel_agent.tools.tool import Tool


class Named(Protocol):
    """A parameter as the catalogue reads it."""

    @property
    def name(self) -> str: ...
    @property
    def schema(self) -> dict[str, Any]: ...


class ToolRegistry(Protocol):
    """What the catalogue and the manifest read of a :class:`kernel_agent.tools.registry.ToolRegistry`
    (a protocol, so that the registry can use them without an import cycle)."""

    def __len__(self) -> int: ...
    def tools(self, namespace: str | None = None) -> list[Tool]: ...
    def namespaces(self) -> list[str]: ...
    def namespace_of(self, tool: Tool) -> str: ...
    def identifier(self, tool: Tool | str) -> str: ...
    def path(self, tool: Tool) -> str: ...
    def parameters(self, tool: Tool) -> Sequence[Named]: ...
    def server(self, namespace: str) -> str | None: ...
    def namespace_description(self, identifier: str) -> str | None: ...
    def summary_line(self, tool: Tool) -> str: ...
    def extras(self, namespace: str | None = None) -> list[CatalogEntry]: ...

SUMMARY_CHARS = 160


def _description_start(tool: Tool, parameters: Sequence[Named]) -> str:
    """What the index reads of the description: the start of what follows the summary line, then the start
    of the parameters' descriptions (``timezone: an IANA name``)."""
    rest = tool.description.strip().split("\n", 1)
    text = " ".join(rest[1][:DESCRIPTION_CHARS * 2].split())[:DESCRIPTION_CHARS // 2] if len(rest) > 1 else ""
    notes = []
    for p in parameters[:32]:
        note = p.schema.get("description") if isinstance(p.schema, dict) else None
        if isinstance(note, str):
            notes.append(note[:DESCRIPTION_CHARS])
    return (text + " " + " ".join(" ".join(notes).split())[:DESCRIPTION_CHARS // 2]).strip()


def tool_entry(registry: ToolRegistry, tool: Tool, line: str) -> CatalogEntry:
    """One tool's search entry; ``line`` is what a result shows."""
    identifier = registry.identifier(tool)
    return CatalogEntry(
        path=registry.path(tool), name=identifier, namespace=registry.namespace_of(tool), line=line,
        summary=one_line(tool.summary, SUMMARY_CHARS),
        parameters=tuple(p.name for p in registry.parameters(tool)),
        description=_description_start(tool, registry.parameters(tool)),
        original_name=tool.name if tool.name != identifier else "",
    )


def sdk_order(registry: ToolRegistry) -> list[Tool]:
    """The tools in the generated SDK's order (top level, then each namespace in registration order): the
    order search breaks ties in, on the host and in the kernel alike."""
    return [t for namespace in ["", *registry.namespaces()] for t in registry.tools(namespace)]


def catalog_entries(registry: ToolRegistry, tools: list[Tool]) -> list[CatalogEntry]:
    """The entries of ``tools`` (of ``registry``), each shown by its manifest line."""
    return [tool_entry(registry, t, registry.summary_line(t)) for t in tools]


def catalog_record(registry: ToolRegistry, namespace: str, signatures: dict[str, str], line: str) -> dict[str, Any]:
    """A module's catalogue as plain data: its namespace ``line`` (the manifest's) and, per tool, what
    search needs, then the extras a source gave the namespace (skills). ``signatures`` maps each tool's
    identifier to its typed signature as the generated source declares it (``(city: str) -> Any``)."""
    rows = []
    for tool in registry.tools(namespace):
        entry = tool_entry(registry, tool, "")
        rows.append([entry.name, signatures.get(entry.name, "(...)"), entry.summary, list(entry.parameters),
                     entry.description, entry.original_name])
    record: dict[str, Any] = {"line": line, "tools": rows}
    extra = registry.extras(namespace)
    if extra:  # only then: the SDK (and its hash) of a session without extras is what it always was
        record["extras"] = extras_rows(extra)
    return record
