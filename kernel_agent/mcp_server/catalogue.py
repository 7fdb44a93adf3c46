"""The session's host tools as a client discovers them: the manifest, search, and one tool's SDK description.

The tools are loaded once at server start (tool sources started, listed and
closed again) to learn the catalogue every client session will have; each
client session later gets fresh instances of the same tools. ``describe``
is what ``help(tools.x)`` shows in the kernel: the generated SDK function
(signature and docstring) and the types it uses, from the same generator.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from kernel_agent.mcp_server.errors import BadArgumentError
from kernel_agent.mcp_server.inert import inert
from kernel_agent.session.toolbox import SessionTools
from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.sdkgen import generate_module
from kernel_agent.tools.tool import Tool

MAX_QUERY_CHARS = 500
MAX_RESULTS = 50


class Catalogue:
    """What the clients' sessions can call: a registry of the tools (never called from here)."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry

    @classmethod
    async def load(cls, tools: Callable[[], list[Any]]) -> Catalogue:
        """Load the tools once (starting and closing their sources) to learn the catalogue."""
        loaded = SessionTools(tools())
        try:
            await loaded.prepare()
            assert loaded.registry is not None
            return cls(loaded.registry)
        finally:
            await loaded.close()

    @property
    def manifest(self) -> str:
        """The tool list in run_python's description: what the tool sources said, with no terminal control in it."""
        return inert(self.registry.manifest()) if len(self.registry) else "No host tools are available in this session."

    def search(self, query: str, limit: int) -> str:
        """Tools matching ``query`` (every tool for an empty one), one line each, at most ``limit``."""
        if len(query) > MAX_QUERY_CHARS:
            raise BadArgumentError(f"query is longer than {MAX_QUERY_CHARS} characters")
        limit = max(1, min(limit, MAX_RESULTS))
        found = self.registry.search(query) if query.strip() else list(self.registry)
        lines = [self._line(tool) for tool in found[:limit]]
        more = f"\n({len(found) - limit} more: narrow the query)" if len(found) > limit else ""
        if not lines:
            return f"No tool matches {query!r}." if query.strip() else "No host tools are available."
        return "\n".join(lines) + more + "\nDetails of one: describe_tool(name)."

    def _line(self, tool: Tool) -> str:
        summary = " ".join(tool.summary.split())
        flags = " [destructive]" if tool.destructive else " [read-only]" if tool.read_only else ""
        return inert(f"{self.registry.path(tool)}: {summary}{flags}")

    def find(self, name: str) -> Tool:
        """The tool ``name`` means: its SDK path (``tools.ns.fn``, ``ns.fn``) or its qualified name."""
        wanted = name.strip().removeprefix("tools.")
        for tool in self.registry:
            if wanted in (self.registry.path(tool).removeprefix("tools."), tool.qualified_name):
                return tool
        raise BadArgumentError(f"no tool named {name[:200]!r}; search_tools finds tools by words")

    def describe(self, name: str) -> str:
        """The tool's SDK function as help() shows it: signature, docstring, and the types they name."""
        tool = self.find(name)
        source = generate_module(self.registry, self.registry.namespace_of(tool))
        identifier = self.registry.identifier(tool)
        tree = ast.parse(source)
        function = next(node for node in tree.body
                        if isinstance(node, ast.FunctionDef) and node.name == identifier)
        text = ast.get_source_segment(source, function) or ""
        used = [ast.get_source_segment(source, node) or "" for node in tree.body
                if isinstance(node, ast.ClassDef) and node.name in text]
        where = f"# {self.registry.path(tool)}(...): call it from run_python code\n"
        return inert(where + "\n\n".join([*used, text]))  # the generator escapes docstrings; names too, to be sure
