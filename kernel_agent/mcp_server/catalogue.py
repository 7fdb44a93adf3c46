"""The session's host tools as a client discovers them: the manifest, search, and one tool's SDK description.

The tools are loaded once at server start (tool sources started, listed and
closed again) to learn the catalogue every client session will have; each
client session later gets fresh instances of the same tools. ``describe``
is what ``help(tools.x)`` shows in the kernel: the generated SDK function
(signature and docstring) and the types it uses, from the same generator.
"""

from __future__ import annotations

import ast
import threading
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
        self._sources: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
        self._sources_lock = threading.Lock()  # describe runs in worker threads

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
        if query.strip():  # the kernel's order, skills included (an entry that is not a tool shows its own line)
            tools = {self.registry.path(tool): tool for tool in self.registry}
            found: list[str] = [self._line(tools[entry.path]) if entry.kind == "tool" and entry.path in tools
                                else inert(entry.line) for entry in self.registry.search_entries(query)]
        else:
            found = [self._line(tool) for tool in self.registry]
        lines = found[:limit]
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
        functions, classes = self._namespace_sources(self.registry.namespace_of(tool))
        text = functions[self.registry.identifier(tool)]
        used = [source for class_name, source in classes.items() if class_name in text]
        where = f"# {self.registry.path(tool)}(...): call it from run_python code\n"
        return inert(where + "\n\n".join([*used, text]))  # the generator escapes docstrings; names too, to be sure

    def _namespace_sources(self, namespace: str) -> tuple[dict[str, str], dict[str, str]]:
        """The source of each function and class of ``namespace``'s SDK module, made once per namespace.

        Generating the module of a 2,500-operation namespace took 9 to 12 s of CPU (holding the GIL the event
        loop needs), and every describe_tool call did it again: a client repeating the call stalled every
        client. The catalogue never changes once loaded, so the first call does the work (others wait for it
        on the lock, not redo it), with each definition cut from the source's lines once.
        """
        with self._sources_lock:
            if namespace not in self._sources:
                source = generate_module(self.registry, namespace)
                lines = source.splitlines(keepends=True)
                functions: dict[str, str] = {}
                classes: dict[str, str] = {}
                for node in ast.parse(source).body:
                    if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.end_lineno is not None:
                        segment = "".join(lines[node.lineno - 1:node.end_lineno]).rstrip("\n")
                        (functions if isinstance(node, ast.FunctionDef) else classes)[node.name] = segment
                self._sources[namespace] = (functions, classes)
            return self._sources[namespace]
