"""The tools of a session, each with the Python name the model's code calls it by.

A :class:`ToolRegistry` collects :class:`~kernel_agent.tools.tool.Tool`
objects (from Python functions, JSON-schema definitions or MCP servers) and
is the single authority on naming: every tool, namespace and parameter gets
a valid, readable ASCII identifier here, chosen deterministically in
registration order. :mod:`kernel_agent.tools.sdkgen` emits names only from
this module, so an untrusted tool name never reaches generated source as code.
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kernel_agent.errors import ToolDefinitionError
from kernel_agent.kernel.catalog_search import MAX_QUERY_CHARS, CatalogEntry, SearchIndex, one_line
from kernel_agent.kernel.sdk import Namespace
from kernel_agent.tools import extras
from kernel_agent.tools.sources import is_tool_source
from kernel_agent.tools.tool import Tool, tool_from_function

# Attributes every `tools` namespace object already has (today: "search");
# derived from the runtime class so a new method is reserved automatically.
RESERVED_NAMES = frozenset(name for name in dir(Namespace) if not name.startswith("_"))

# Generated modules annotate with these; a tool named `list` or `dict` at module
# level would change what `list[str]` means to typing.get_type_hints.
_BUILTIN_TYPES = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type) and name.islower()
)

_SUMMARY_LIMIT = 120
_MANIFEST_PARAMS = 6


def _words(text: str) -> list[str]:
    """ASCII words of ``text``, splitting camelCase, punctuation and spaces."""
    # NFKD + ASCII: Python normalises non-ASCII identifiers (NFKC), which would
    # make the defined name differ from the one we recorded.
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    ascii_text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", ascii_text)
    ascii_text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", ascii_text)
    return [word for word in re.split(r"[^A-Za-z0-9]+", ascii_text) if word]


def snake_identifier(text: str, *, digit_prefix: str = "t", fallback: str = "tool") -> str:
    """A lowercase snake_case identifier for ``text`` that is no keyword and no builtin type."""
    name = "_".join(word.lower() for word in _words(text)) or fallback
    if name[0].isdigit():
        name = f"{digit_prefix}_{name}"
    if keyword.iskeyword(name) or name in _BUILTIN_TYPES:
        name += "_"
    return name


def class_identifier(text: str, *, fallback: str = "Model") -> str:
    """A CamelCase identifier for ``text`` (a generated TypedDict's name)."""
    name = "".join(word[:1].upper() + word[1:] for word in _words(text)) or fallback
    if name[0].isdigit():
        name = "T" + name
    if keyword.iskeyword(name) or hasattr(builtins, name):
        name += "_"
    return name


def parameter_identifier(text: str) -> str:
    """A parameter name for a schema property: kept as is when Python accepts it."""
    if text.isascii() and text.isidentifier() and not keyword.iskeyword(text):
        return text
    words = _words(text)
    name = "_".join(words) or "arg"
    if name[0].isdigit():
        name = "p_" + name
    return name + "_" if keyword.iskeyword(name) else name


def unique(name: str, taken: set[str] | frozenset[str], *, separator: str = "_", start: int = 1) -> str:
    """``name``, or ``name_2``, ``name_3``... whichever is first not in ``taken``.

    ``start`` (N > 1) begins at ``name_N``: the caller knows that the names before it are taken."""
    candidate, counter = (name, 1) if start <= 1 else (f"{name}{separator}{start}", start)
    while candidate in taken:
        counter += 1
        candidate = f"{name}{separator}{counter}"
    return candidate


@dataclass(frozen=True)
class Parameter:
    """One property of a tool's input schema as a Python parameter."""

    name: str
    json_name: str
    schema: dict[str, Any]
    required: bool
    has_default: bool = False
    default: Any = None


def plan_parameters(schema: dict[str, Any]) -> list[Parameter]:
    """The parameters of an object schema: required first, each group in schema order."""
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    listed = schema.get("required")
    required_list = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
    # A set: a recorded schema (hostile) may list 100,000 properties and as many required names.
    required = set(required_list)
    # Required names without a property still have to be passed: once each (a recording's schema is not
    # checked against the JSON-schema rules, and may repeat one).
    missing = [n for n in dict.fromkeys(required_list) if n not in properties]
    json_names = [n for n in properties if isinstance(n, str)] + missing
    ordered = [n for n in json_names if n in required] + [n for n in json_names if n not in required]
    # Names Python accepts as they are win over mapped ones, so `a_b` stays
    # `a_b` even when `a-b` (which also maps to `a_b`) comes first.
    taken: set[str] = {n for n in ordered if parameter_identifier(n) == n}
    names: dict[str, str] = {}
    tried: dict[str, int] = {}  # identifier -> the suffixes below this are taken (so `-`, `--`, ... stay linear)
    for json_name in ordered:
        identifier = parameter_identifier(json_name)
        if identifier == json_name:
            names[json_name] = json_name
        else:
            names[json_name] = unique(identifier, taken, start=tried.get(identifier, 1))
            taken.add(names[json_name])
            suffix = names[json_name][len(identifier) + 1:]
            tried[identifier] = int(suffix) if suffix.isdigit() else 1
    parameters = []
    for json_name in ordered:
        prop = properties.get(json_name)
        prop = prop if isinstance(prop, dict) else {}
        is_required = json_name in required
        parameters.append(Parameter(
            name=names[json_name], json_name=json_name, schema=prop, required=is_required,
            has_default=not is_required and "default" in prop, default=prop.get("default"),
        ))
    return parameters


def _server_label(server: object) -> str | None:
    """The name an MCP server gives itself, else its ``name`` (McpServer raises before start)."""
    try:
        info = getattr(server, "server_info", None)
        if isinstance(info, dict) and isinstance(info.get("name"), str) and info["name"]:
            return str(info["name"])
        name = getattr(server, "name", None)
    except Exception:  # noqa: BLE001 - only a label for docs
        return None
    return name if isinstance(name, str) and name else None


class ToolRegistry:
    """The tools of a session, in registration order, with their Python identifiers."""

    def __init__(self, tools: Iterable[object] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._identifiers: dict[str, str] = {}  # qualified name -> identifier in its namespace
        self._parameters: dict[str, list[Parameter]] = {}
        self._namespaces: dict[str, str] = {}  # raw namespace -> identifier
        self._raw_namespaces: dict[str, str] = {}  # identifier -> raw namespace
        self._members: dict[str, list[Tool]] = {}  # namespace identifier ("" = top level) -> its tools, in order
        self._servers: dict[str, str] = {}  # namespace identifier -> MCP server name
        self._descriptions: dict[str, str] = {}  # raw namespace -> the line its source gave (first one wins)
        self._index: tuple[SearchIndex, list[Tool]] | None = None  # built at the first search after a change
        self._taken: dict[str, set[str]] = {"": set(RESERVED_NAMES)}  # per namespace identifier
        # Sources that add search entries or a manifest section besides tools (kernel_agent.tools.extras),
        # with the raw namespace of their tools ("" for none); their entries are read once, when first needed.
        self._extra_sources: list[tuple[object, str]] = []
        self._extras: dict[str, list[CatalogEntry]] | None = None
        self._entries_index: SearchIndex | None = None
        for item in tools:
            self.add(item)

    # -- adding ---------------------------------------------------------------------

    def add(self, item: object) -> list[Tool]:
        """Register a Tool, a @tool function, a plain callable, another registry's tools,
        a started tool source (:mod:`kernel_agent.tools.sources`: an MCP server), or
        anything whose ``.tools`` is a list of Tools."""
        if isinstance(item, Tool):
            return [self._add_tool(item)]
        declared = getattr(item, "__kernel_agent_tool__", None)
        if isinstance(declared, Tool):
            return [self._add_tool(declared)]
        if isinstance(item, ToolRegistry):  # merged tool by tool, so names are chosen afresh
            added = [self._add_tool(t) for t in item.tools()]
            for t in added:
                label = item.server(item.namespace_of(t))
                if t.namespace and label:
                    self._servers[self._namespaces[t.namespace]] = label
            for namespace, description in item._descriptions.items():
                self._descriptions.setdefault(namespace, description)
            for source, namespace in item._extra_sources:
                self._add_extras(source, namespace)
            return added
        if is_tool_source(item):  # a source that is not started says so itself when asked for its tools
            return self._add_server(item, item.tools)
        listed = getattr(item, "tools", None)
        if isinstance(listed, (list, tuple)):
            return self._add_server(item, listed)
        if extras.has_extras(item) and not callable(item):  # search entries and a manifest section, no tools
            self._add_extras(item, "")
            return []
        if isinstance(item, dict):
            raise ToolDefinitionError(
                "a tool definition dict needs a handler: build it with "
                "kernel_agent.tools.tool.tool_from_schema(definition, handler) and add the Tool")
        if callable(item):
            return [self._add_tool(tool_from_function(item))]
        raise ToolDefinitionError(
            f"cannot make a tool from {type(item).__name__} {item!r:.80}: pass a Tool, a function "
            "(optionally decorated with @tool), or a started MCP server")

    def _add_server(self, server: object, listed: list[Any] | tuple[Any, ...]) -> list[Tool]:
        wrong = [t for t in listed if not isinstance(t, Tool)]
        if wrong:
            raise ToolDefinitionError(
                f"{type(server).__name__}.tools must hold Tool objects, found {type(wrong[0]).__name__}")
        added = [self._add_tool(t) for t in listed]
        label = _server_label(server)
        for t in added:
            if t.namespace and label:
                self._servers[self._namespaces[t.namespace]] = label
        # Kept by raw namespace, whichever item brings its tools (a recording's descriptions come on their own).
        for namespace, description in _namespace_descriptions(server).items():
            if description:
                self._descriptions.setdefault(namespace, description)
        if extras.has_extras(server):
            self._add_extras(server, (added[0].namespace or "") if added else "")
        return added

    def _add_extras(self, source: object, namespace: str) -> None:
        if namespace:
            self._namespace_identifier(namespace)
        self._extra_sources.append((source, namespace))
        self._extras = None
        self._entries_index = None

    def _add_tool(self, tool: Tool) -> Tool:
        qualified = tool.qualified_name
        if qualified in self._tools:
            raise ToolDefinitionError(
                f"two tools are named {qualified!r} ({self._tools[qualified].source} and {tool.source}): "
                "rename one or give it another namespace")
        if not isinstance(tool.input_schema, dict):
            raise ToolDefinitionError(f"tool {qualified}: the input schema must be a dict")
        scope = self._namespace_identifier(tool.namespace) if tool.namespace else ""
        identifier = unique(snake_identifier(tool.name), self._taken[scope])
        self._taken[scope].add(identifier)
        self._tools[qualified] = tool
        self._members.setdefault(scope, []).append(tool)
        self._index = self._entries_index = None
        self._identifiers[qualified] = identifier
        self._parameters[qualified] = plan_parameters(tool.input_schema)
        if scope and tool.source.startswith("mcp:"):  # an MCP tool added on its own
            self._servers.setdefault(scope, tool.source[len("mcp:"):])
        return tool

    def _namespace_identifier(self, namespace: str) -> str:
        if namespace not in self._namespaces:
            # Namespaces share the top-level scope with top-level tools.
            identifier = unique(snake_identifier(namespace, digit_prefix="ns", fallback="ns"), self._taken[""])
            self._taken[""].add(identifier)
            self._taken[identifier] = set(RESERVED_NAMES)
            self._namespaces[namespace] = identifier
            self._raw_namespaces[identifier] = namespace
        return self._namespaces[namespace]

    # -- looking up -------------------------------------------------------------------

    def lookup(self, qualified_name: str) -> Tool:
        """The tool the SDK calls ``qualified_name`` (``namespace.name`` or ``name``)."""
        try:
            return self._tools[qualified_name]
        except KeyError:
            raise KeyError(f"no tool named {qualified_name!r}") from None

    def identifier(self, tool: Tool | str) -> str:
        """The Python name of a tool (a Tool or its qualified name) inside its namespace."""
        qualified = tool if isinstance(tool, str) else tool.qualified_name
        return self._identifiers[qualified]

    def namespace_of(self, tool: Tool) -> str:
        """The identifier of the tool's namespace, "" for a top-level tool."""
        return self._namespaces[tool.namespace] if tool.namespace else ""

    def path(self, tool: Tool) -> str:
        """How the model's code reaches the tool: ``tools.ns.name`` or ``tools.name``."""
        namespace = self.namespace_of(tool)
        return f"tools.{namespace + '.' if namespace else ''}{self.identifier(tool)}"

    def parameters(self, tool: Tool) -> list[Parameter]:
        """The tool's parameters in signature order, with Python and JSON names."""
        return self._parameters[tool.qualified_name]

    def namespaces(self) -> list[str]:
        """Namespace identifiers in order of first registration (top level not included)."""
        return list(self._namespaces.values())

    def server(self, namespace: str) -> str | None:
        """The MCP server a namespace's tools came from, when they came from one."""
        return self._servers.get(namespace)

    def namespace_description(self, identifier: str) -> str | None:
        """The one line the tools' source gave a namespace (``namespace_descriptions``), if it gave one.

        As the source wrote it (untrusted: the manifest shows it through
        :func:`kernel_agent.kernel.catalog_search.one_line`, bounded)."""
        raw = self._raw_namespaces.get(identifier)
        return self._descriptions.get(raw) if raw is not None else None

    def tools(self, namespace: str | None = None) -> list[Tool]:
        """All tools in registration order, or those of one namespace identifier ("" = top level)."""
        return list(self._tools.values()) if namespace is None else list(self._members.get(namespace, ()))

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __contains__(self, qualified_name: object) -> bool:
        return qualified_name in self._tools

    def search(self, query: str, limit: int | None = None) -> list[Tool]:
        """Tools ranked by relevance to ``query`` (words of names, namespaces, summaries, parameters,
        descriptions; an exact name first), at most ``limit``; every tool for an empty query.

        The ranking is :mod:`kernel_agent.kernel.catalog_search`'s, the same as ``tools.search`` in the
        kernel; the index is built at the first search and kept until a tool is added."""
        from kernel_agent.tools.catalog import catalog_entries, sdk_order

        if self._index is None:
            ordered = sdk_order(self)
            self._index = (SearchIndex(catalog_entries(self, ordered)), ordered)
        index, ordered = self._index
        return [ordered[position] for position in index.rank(query[:MAX_QUERY_CHARS], limit)]

    def extras(self, namespace: str | None = None) -> list[CatalogEntry]:
        """The search entries sources gave besides their tools (skills), of one namespace identifier ("" =
        the top level) or all; read from the sources once (what the session's SDK holds), then kept."""
        if self._extras is None:
            self._extras = extras.collect([(s, self._namespaces[n] if n else "") for s, n in self._extra_sources])
        if namespace is not None:
            return list(self._extras.get(namespace, ()))
        return [e for n in ["", *self.namespaces()] for e in self._extras.get(n, ())]

    def search_entries(self, query: str, limit: int | None = None) -> list[CatalogEntry]:
        """Like :meth:`search`, but as catalogue entries and with the sources' extras (skills: ``kind`` says
        what an entry is; only ``kind == "tool"`` entries are callable): the same results, in the same order,
        as ``tools.search`` in the session's kernel."""
        from kernel_agent.tools.catalog import catalog_entries

        if self._entries_index is None:
            entries = []
            for namespace in ["", *self.namespaces()]:
                entries += catalog_entries(self, self.tools(namespace)) + self.extras(namespace)
            self._entries_index = SearchIndex(entries)
        return self._entries_index.search(query[:MAX_QUERY_CHARS], limit)

    # -- the system prompt ----------------------------------------------------------------

    def manifest(self) -> str:
        """The tools for the system prompt, bounded: every tool with a one-line summary while they fit,
        else an overview by namespace (see :mod:`kernel_agent.tools.manifest`); then the sections sources
        add (skills), within :data:`kernel_agent.tools.extras.EXTRAS_BUDGET` together."""
        from kernel_agent.tools.manifest import build_manifest

        sections = extras.manifest_sections([source for source, _ in self._extra_sources])
        return build_manifest(self) + (f"\n\n{sections}" if sections else "")

    def summary_line(self, tool: Tool) -> str:
        """One line on a tool: how to call it (parameters, defaults), its summary and flags."""
        shown = []
        parameters = self.parameters(tool)
        for p in parameters[:_MANIFEST_PARAMS]:
            if p.required:
                shown.append(p.name)
            else:
                default = repr(p.default) if p.has_default else "None"
                shown.append(f"{p.name}={default if len(default) <= 24 else '...'}")
        if len(parameters) > _MANIFEST_PARAMS:
            shown.append("...")
        # The source's words (a wrapped MCP server's, an OpenAPI document's): escape, bidi and other control
        # characters, and lone surrogates a provider's JSON encoder may refuse, become spaces, as in search lines.
        summary = one_line(tool.summary, _SUMMARY_LIMIT)
        flags = " [destructive]" if tool.destructive else " [read-only]" if tool.read_only else ""
        line = f"{self.path(tool)}({', '.join(shown)})"
        return f"{line}: {summary}{flags}" if summary else f"{line}{flags}"


def _namespace_descriptions(source: object) -> Mapping[str, str]:
    """A source's ``namespace_descriptions`` (raw namespace -> one line), only the string pairs of it."""
    try:
        given = getattr(source, "namespace_descriptions", None)
        if not isinstance(given, Mapping):
            return {}
        return {k: v for k, v in given.items() if isinstance(k, str) and isinstance(v, str)}
    except Exception:  # noqa: BLE001 - only descriptions: a source that fails to give them has none
        return {}
