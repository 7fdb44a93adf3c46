"""Generate the in-kernel tool SDK: one module of Python source per namespace.

Each tool becomes a stub with a real signature, type hints and a docstring,
decorated with :func:`kernel_agent.kernel.sdk.bind`; nested object schemas
become ``TypedDict`` classes. Tool definitions may come from an untrusted MCP
server, so nothing from a schema is emitted as code except through
:mod:`kernel_agent.tools.registry` identifiers, ``repr`` of plain data, and
escaped docstrings.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from kernel_agent.kernel.catalog_search import CATALOG_MARKER, one_line
from kernel_agent.tools.catalog import catalog_record
from kernel_agent.tools.manifest import NAMESPACE_LINE, group_line
from kernel_agent.tools.registry import Parameter, ToolRegistry, class_identifier
from kernel_agent.tools.tool import DATA_TYPE_KEY, DATA_TYPES, Tool

_MAX_DEPTH = 24  # deeper schemas are typed _t.Any rather than risking recursion limits
_LINE_LIMIT = 100
# Wider unions are typed _t.Any: `A | B | ...` nests one level per `|` when Python compiles it, and 20,000
# branches made the module fail to compile (RecursionError) in the kernel.
_MAX_UNION = 64
# A $ref's hint is rendered once and then copied wherever the ref is used: definitions that are unions of
# wrappers around the next one (L0 = list[L1] | dict[str, L1] | ..., 32 ways) multiplied by 32 a level, so a
# 10 KB notebook gave a 60 MB module, and one level more 2 GB. Past this many characters copied in a module, a
# ref is typed _t.Any (a 2,500-tool catalogue copies a few hundred thousand: class names and small enums).
_REF_TEXT_BUDGET = 8_000_000
_HEADER = ("from __future__ import annotations\n\nimport typing as _t\n\n"
           "from kernel_agent.kernel.sdk import bind as _bind\n")
_DATA_HINTS = {name: name for name in DATA_TYPES.values()}  # annotations only: never evaluated at import
_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


# -- safe rendering of data --------------------------------------------------------------


# A quote followed by a quote or by the end: escaped, so that no two unescaped quotes are adjacent and none ends
# the text, and the literal cannot close early.
_CLOSING_QUOTE = re.compile(r'"(?="|\Z)')


def docstring(text: str, indent: str = "") -> str:
    """``text`` as a triple-quoted literal whose value, after inspect.cleandoc, is ``text``."""
    # Whole-string operations, not a loop over characters: a 2,500-tool SDK has a million characters of docs.
    body = _CLOSING_QUOTE.sub(r'\\"', text.replace("\\", "\\\\"))
    if not body.replace("\n", "").replace("\t", "").isprintable():  # lone surrogates are not printable either
        body = "".join(char if char in "\n\t" or char.isprintable()
                       else char.encode("unicode_escape", "backslashreplace").decode("ascii") for char in body)
    body = "\n".join(indent + line if line and i else line for i, line in enumerate(body.split("\n")))
    return f'{indent}"""{body}\n{indent}"""' if "\n" in text else f'{indent}"""{body}"""'


def literal(value: Any, depth: int = 0) -> str | None:
    """Python source for a JSON value, or None when it has none (so the caller can fall back)."""
    if depth > _MAX_DEPTH:
        return None
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, (list, dict)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        parts = []
        for key, item in items:
            rendered_item, rendered_key = literal(item, depth + 1), literal(key, depth + 1)
            if rendered_item is None or rendered_key is None:
                return None
            parts.append(f"{rendered_key}: {rendered_item}" if isinstance(value, dict) else rendered_item)
        return "{" + ", ".join(parts) + "}" if isinstance(value, dict) else "[" + ", ".join(parts) + "]"
    return None


# -- JSON schema -> type hints --------------------------------------------------------------


@dataclass
class _Module:
    """The classes of one generated module, with the names they took."""

    classes: dict[str, str] = field(default_factory=dict)  # name -> source, dependencies first
    fingerprints: dict[str, str] = field(default_factory=dict)  # name -> the schema it was made from
    by_ref: dict[tuple[int, str], str] = field(default_factory=dict)  # (id(root), ref) -> class name
    # Indexes of the two above, so that naming a class costs the same with 5 classes or 5,000 (a catalogue whose
    # tools each have an "Options" object of their own made Options, Options2, ... Options2500, and a scan of
    # every earlier name per class: 15 s for one SDK). Names are never taken back, so the indexes only grow.
    first_with: dict[str, str] = field(default_factory=dict)  # fingerprint -> the first class made from it
    chain_match: dict[tuple[str, str], int] = field(default_factory=dict)  # (base, fingerprint) -> least position
    chain_free: dict[str, int] = field(default_factory=dict)  # base -> no free name before this position
    ref_text: int = 0  # characters of $ref hints copied into the module so far (see _REF_TEXT_BUDGET)

    def claim(self, name: str, fingerprint: str) -> None:
        """Record that ``name`` was made from ``fingerprint`` (the class source comes later)."""
        self.classes[name] = ""
        self.fingerprints[name] = fingerprint
        self.first_with.setdefault(fingerprint, name)
        for base, position in _chain_positions(name):
            key = (base, fingerprint)
            if position < self.chain_match.get(key, position + 1):
                self.chain_match[key] = position

    def free_position(self, base: str) -> int:
        """The first position of ``base``'s names (base, base2, base3, ...) not taken yet."""
        position = self.chain_free.get(base, 0)
        while _chain_name(base, position) in self.classes:
            position += 1
        self.chain_free[base] = position
        return position


# A class name's position in the names tried for a base: ``Item`` is position 0 of Item, ``Item12`` position 11
# of Item (and 0 of Item12, 1 of Item1). Suffixes of more digits than this never come up (as many classes).
_MAX_SUFFIX_DIGITS = 9


def _chain_name(base: str, position: int) -> str:
    return base if position == 0 else f"{base}{position + 1}"


def _chain_positions(name: str) -> list[tuple[str, int]]:
    positions = [(name, 0)]
    digits = len(name) - len(name.rstrip("0123456789"))
    for length in range(1, min(digits, _MAX_SUFFIX_DIGITS) + 1):
        suffix = name[-length:]
        if suffix[0] != "0" and int(suffix) >= 2 and len(name) > length:
            positions.append((name[:-length], int(suffix) - 1))
    return positions


class _Types:
    """Maps the schemas of one tool (``root`` holds their $defs) to type hints in ``module``."""

    def __init__(self, module: _Module, root: dict[str, Any]) -> None:
        self.module = module
        self.root = root
        self.in_progress: dict[str, str] = {}  # refs being rendered -> the hint a self-reference gets
        self.nullable_refs: dict[str, bool] = {}
        self.definitions_text: str | None = None

    def hint(self, schema: Any, context: str, depth: int = 0) -> str:
        """The type hint for ``schema``; ``context`` names classes of inline objects."""
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return "_t.Any"
        hint, nullable = self._hint(schema, context, depth)
        return _optional(hint) if nullable else hint

    def nullable(self, schema: Any, depth: int = 0) -> bool:
        """Whether the schema accepts null (so None is a value, not 'left out')."""
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return False
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref not in self.nullable_refs:
                self.nullable_refs[ref] = False  # until known: a definition may contain itself
                self.nullable_refs[ref] = self.nullable(self._resolve(ref), depth + 1)
            return self.nullable_refs[ref]
        types = schema.get("type")
        if types == "null" or (isinstance(types, list) and "null" in types):
            return True
        if isinstance(schema.get("enum"), list) and None in schema["enum"]:
            return True
        branches = schema.get("anyOf", schema.get("oneOf"))
        return isinstance(branches, list) and any(self.nullable(b, depth + 1) for b in branches)

    def _hint(self, schema: dict[str, Any], context: str, depth: int) -> tuple[str, bool]:
        nullable = self.nullable(schema)
        data_type = schema.get(DATA_TYPE_KEY)
        if isinstance(data_type, str) and data_type in _DATA_HINTS:  # our own names only, never the schema's text
            return _DATA_HINTS[data_type], nullable
        if isinstance(schema.get("$ref"), str):
            return self._ref(schema["$ref"], depth), nullable
        if "const" in schema:
            return self._literal([schema["const"]]) or "_t.Any", nullable
        if isinstance(schema.get("enum"), list):
            values = [v for v in schema["enum"] if v is not None]
            return self._literal(values) or self._typed(schema, context, depth), nullable
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                return self._union(schema[key], context, depth), nullable
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            return self._hint(all_of[0], context, depth + 1) if isinstance(all_of[0], dict) else ("_t.Any", False)
        return self._typed(schema, context, depth), nullable

    def _literal(self, values: list[Any]) -> str | None:
        # Literal takes str, int, bool and None; other enums are typed by their base type.
        if not values or not all(v is None or isinstance(v, (str, int, bool)) for v in values):
            return None
        return f"_t.Literal[{', '.join(repr(v) for v in values)}]"

    def _union(self, branches: list[Any], context: str, depth: int) -> str:
        hints: dict[str, None] = {}
        for index, branch in enumerate(branches):
            if isinstance(branch, dict) and branch.get("type") == "null":
                continue
            hint = self.hint(branch, f"{context} option {index + 1}", depth + 1)
            if hint.startswith("_t.Optional["):
                hint = hint[len("_t.Optional["):-1]
            if hint == "_t.Any":
                return "_t.Any"
            hints.setdefault(hint)  # a dict, not a list: an anyOf of 100,000 branches is not 10**10 comparisons
            if len(hints) > _MAX_UNION:
                return "_t.Any"
        return " | ".join(hints) if hints else "None"

    def _typed(self, schema: dict[str, Any], context: str, depth: int) -> str:
        types = schema.get("type")
        if isinstance(types, list):
            # Each name once: an unchecked schema (a recording's) may repeat one, and ["array"] * 8 at each of 8
            # levels rendered the innermost items 8**8 times (the list is deduplicated below, but only after).
            names = list(dict.fromkeys(t for t in types if t != "null" and isinstance(t, str)))
            hints = list(dict.fromkeys(self._one_type(t, schema, context, depth) for t in names))
            return "_t.Any" if "_t.Any" in hints or not hints else " | ".join(hints)
        if not isinstance(types, str):
            types = "object" if "properties" in schema else "array" if "items" in schema else ""
        return self._one_type(types, schema, context, depth)

    def _one_type(self, type_name: str, schema: dict[str, Any], context: str, depth: int) -> str:
        if type_name in _TYPES:
            return _TYPES[type_name]
        if type_name == "array":
            items = schema.get("items")
            return f"list[{self.hint(items, context + ' item', depth + 1)}]"
        if type_name == "object":
            properties = schema.get("properties")
            if isinstance(properties, dict) and properties:
                title = schema.get("title")
                return self.typed_dict(schema, title if isinstance(title, str) else context, depth)
            extra = schema.get("additionalProperties")
            value = self.hint(extra, context + " value", depth + 1) if isinstance(extra, dict) else "_t.Any"
            return f"dict[str, {value}]"
        return "_t.Any"

    def _resolve(self, ref: str) -> Any:
        # Only local refs (pydantic's "#/$defs/X", older "#/definitions/X").
        if not ref.startswith("#/"):
            return None
        node: Any = self.root
        for part in ref[2:].split("/"):
            # A $ref is a URI fragment: percent-decode, then undo JSON-pointer escapes.
            part = urllib.parse.unquote(part).replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def _ref(self, ref: str, depth: int) -> str:
        hint = self._ref_hint(ref, depth)
        self.module.ref_text += len(hint)
        return hint if self.module.ref_text <= _REF_TEXT_BUDGET else "_t.Any"

    def _ref_hint(self, ref: str, depth: int) -> str:
        key = (id(self.root), ref)
        if key in self.module.by_ref:
            return self.module.by_ref[key]
        if ref in self.in_progress:  # a recursive schema refers to itself
            return self.in_progress[ref]
        target = self._resolve(ref)
        if not isinstance(target, dict):
            return "_t.Any"
        properties = target.get("properties")
        if isinstance(properties, dict) and properties:
            name = self.typed_dict(target, ref.rsplit("/", 1)[-1], depth, ref=ref)
        else:
            # Cached and guarded too: definitions that refer to each other
            # through anyOf would otherwise be expanded exponentially.
            self.in_progress[ref] = "_t.Any"
            name = self.hint(target, ref.rsplit("/", 1)[-1], depth + 1)
            del self.in_progress[ref]
        self.module.by_ref[key] = name
        return name

    def typed_dict(self, schema: dict[str, Any], title: str, depth: int, ref: str | None = None) -> str:
        """Emit (or reuse) a TypedDict for an object schema; identical schemas share one class."""
        fingerprint = self._fingerprint(schema)
        base = class_identifier(title)
        # The first of base, base2, base3, ... made from this schema, if one comes before the first free name.
        module = self.module
        free = module.free_position(base)
        match = module.chain_match.get((base, fingerprint))
        if match is not None and match < free:
            return _chain_name(base, match)
        name = _chain_name(base, free)
        same = module.first_with.get(fingerprint)
        if same is not None and not module.classes[same]:
            return same  # still being rendered (recursion): an alias here would precede it
        module.claim(name, fingerprint)
        if same is not None:
            # The same shape under another name (an MCP server's output model
            # reused by several tools): an alias, not a second copy.
            self.module.classes[name] = f"{name} = {same}\n"
            return name
        # The name is claimed before rendering: a recursive schema refers to it.
        if ref is not None:
            self.in_progress[ref] = name
        source = self._class_source(name, schema, depth)
        if ref is not None:
            del self.in_progress[ref]
        # Re-insert so that classes this one uses come first in the module.
        del self.module.classes[name]
        self.module.classes[name] = source
        return name

    def _fingerprint(self, schema: dict[str, Any]) -> str:
        # The title only names the class; everything else makes the type and its docs.
        text = json.dumps({k: v for k, v in schema.items() if k != "title"}, sort_keys=True, default=repr)
        if "$ref" in text:  # the same text means the same type only with the same $defs
            if self.definitions_text is None:  # once per root, and short: each of 5,000 definitions added them all
                definitions = {k: self.root.get(k) for k in ("$defs", "definitions")}
                dumped = json.dumps(definitions, sort_keys=True, default=repr).encode(errors="surrogatepass")
                self.definitions_text = "$defs sha256 " + hashlib.sha256(dumped).hexdigest()
            text += self.definitions_text
        return text

    def _class_source(self, name: str, schema: dict[str, Any], depth: int) -> str:
        listed = schema.get("required")
        required = {k for k in listed if isinstance(k, str)} if isinstance(listed, list) else set()
        keys: list[tuple[str, str]] = []
        docs: list[str] = []
        for key, prop in schema["properties"].items():
            if not isinstance(key, str):
                continue
            hint = self.hint(prop, f"{name} {key}", depth + 1)
            keys.append((key, f"_t.Required[{hint}]" if key in required else hint))
            # Documented because _t.Required is lost at runtime under
            # `from __future__ import annotations` (Python < 3.14).
            label = f"{key} (required)" if key in required else key
            note = describe(prop, required=key in required)
            if note or key in required:
                docs.append(f"    {label}: {note}" if note else f"    {label}")
        description = str(schema.get("description") or f"{name} (a dict).")
        text = description.strip() + ("\n\nKeys:\n" + "\n".join(docs) if docs else "")
        if all(_plain_key(k) for k, _ in keys):
            body = "\n".join(f"    {k}: {hint}" for k, hint in keys)
            return f"class {name}(_t.TypedDict, total=False):\n{docstring(text, '    ')}\n\n{body}\n"
        # Keys Python cannot spell as attributes: the functional form, with hints
        # as strings so forward references to later classes still work.
        fields = ", ".join(f"{k!r}: {hint!r}" for k, hint in keys)
        return f"{name} = _t.TypedDict({name!r}, {{{fields}}}, total=False)\n{name}.__doc__ = {docstring(text)}\n"


def _plain_key(key: str) -> bool:
    """Whether a TypedDict key can be written as a class attribute (``__x`` would be name-mangled)."""
    return key.isascii() and key.isidentifier() and not key.startswith("__") and not keyword.iskeyword(key)


# -- docstrings ------------------------------------------------------------------------------


def _optional(hint: str) -> str:
    return hint if hint.startswith("_t.Optional[") or hint in ("None", "_t.Any") else f"_t.Optional[{hint}]"


def describe(schema: Any, *, required: bool = True) -> str:
    """One line on a property: its description, allowed values, format and default."""
    if not isinstance(schema, dict):
        return ""
    text = " ".join(str(schema.get("description") or "").split())
    parts = [text + "." if text and text[-1].isalnum() else text]
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if isinstance(values, list) and values:
        parts.append("One of: " + ", ".join(repr(v) for v in values) + ".")
    # Optional[datetime] from pydantic puts the format inside anyOf.
    options = schema.get("anyOf", schema.get("oneOf"))
    branches = [schema, *[b for b in (options if isinstance(options, list) else []) if isinstance(b, dict)]]
    formats = list(dict.fromkeys(b["format"] for b in branches if isinstance(b.get("format"), str)))
    if formats:
        parts.append(f"Format: {' or '.join(formats)} (a string).")
    if not required and schema.get("default") is not None:
        default = repr(schema["default"])
        parts.append(f"Default: {default if len(default) <= 80 else default[:77] + '...'}.")
    return " ".join(p for p in parts if p)


def _function_doc(tool: Tool, parameters: list[Parameter], returns: str | None) -> str:
    sections = [tool.description.strip() or f"The tool {tool.qualified_name}."]
    if tool.destructive or tool.read_only:
        sections.append("This tool is destructive: it changes or deletes data." if tool.destructive
                        else "This tool is read-only.")
    lines = []
    for p in parameters:
        note = describe(p.schema, required=p.required)
        if p.name != p.json_name:
            note = f"{note} (sent as {p.json_name!r})".strip()
        lines.append(f"    {p.name}: {note}" if note else f"    {p.name}")
    if lines:
        sections.append("Args:\n" + "\n".join(lines))
    if returns is not None:
        sections.append("Returns:\n    " + returns)
    return "\n\n".join(sections)


# -- functions and modules ---------------------------------------------------------------------


def _function_source(registry: ToolRegistry, tool: Tool, module: _Module,
                     signatures: dict[str, str] | None = None) -> str:
    identifier = registry.identifier(tool)
    parameters = registry.parameters(tool)
    types = _Types(module, tool.input_schema)
    context = class_identifier(identifier)
    rendered: list[str] = []
    omit_none: list[str] = []
    for p in parameters:
        hint = types.hint(p.schema, f"{context} {p.json_name}") if p.schema else "_t.Any"
        default = literal(p.default) if p.has_default else None
        if p.required:
            rendered.append(f"{p.name}: {hint}")
        elif default not in (None, "None"):
            rendered.append(f"{p.name}: {hint} = {default}")
        else:
            # Without a usable default, None means "not given": left out of the
            # request (so the host applies the schema's default) unless null is a value.
            if not types.nullable(p.schema):
                omit_none.append(p.name)
            rendered.append(f"{p.name}: {_optional(hint)} = None")
    returns, returns_doc = _return_type(tool, module, context)
    bind_args = [repr(tool.qualified_name)]
    renamed = {p.name: p.json_name for p in parameters if p.name != p.json_name}
    if renamed:
        bind_args.append(f"params={renamed!r}")
    if omit_none:
        bind_args.append(f"omit_none={tuple(omit_none)!r}")
    signature = f"def {identifier}({', '.join(rendered)}) -> {returns}:"
    if signatures is not None:  # for the catalogue search shows: as help() would print it
        signatures[identifier] = f"({', '.join(rendered)}) -> {returns}".replace("_t.", "")
    if len(signature) > _LINE_LIMIT and rendered:
        signature = f"def {identifier}(\n" + "".join(f"    {r},\n" for r in rendered) + f") -> {returns}:"
    doc = docstring(_function_doc(tool, parameters, returns_doc), "    ")
    return f"@_bind({', '.join(bind_args)})\n{signature}\n{doc}\n    ...\n"


def _return_type(tool: Tool, module: _Module, context: str) -> tuple[str, str | None]:
    """(annotation, Returns: text) from the output schema; _t.Any without one."""
    schema = tool.output_schema
    if not isinstance(schema, dict):
        return "_t.Any", None
    types = _Types(module, schema)
    properties = schema.get("properties")
    if isinstance(properties, dict) and properties and schema.get("type", "object") == "object":
        hint = types.typed_dict(schema, f"{context} Result", 0)
    else:
        hint = types.hint(schema, f"{context} Result")
    description = " ".join(str(schema.get("description") or "").split())
    return hint, f"{hint}: {description}" if description else hint


def _module_doc(registry: ToolRegistry, namespace: str) -> str:
    if not namespace:
        return "Top-level tools of this session (tools.<name>)."
    server = registry.server(namespace)
    origin = f" from MCP server {server!r}" if server else ""
    description = one_line(registry.namespace_description(namespace) or "", 2 * NAMESPACE_LINE)
    return f"Tools in tools.{namespace}{origin}." + (f" {description}" if description else "")


def generate_module(registry: ToolRegistry, namespace: str) -> str:
    """The source of one namespace's module ("" = the top-level tools)."""
    module = _Module()
    signatures: dict[str, str] = {}
    functions = [_function_source(registry, t, module, signatures) for t in registry.tools(namespace)]
    definitions = [part.rstrip("\n") for part in [*module.classes.values(), *functions]]
    # Last, on one line: tools.search and tools.namespaces() read it without running the module.
    members = [registry.identifier(t) for t in registry.tools(namespace)]
    record = catalog_record(registry, namespace, signatures, group_line(registry, namespace, members))
    # JSON in a string literal: the kernel reads it with one literal_eval of a string and json.loads (fast),
    # where a nested Python literal of 2,500 entries took literal_eval seconds.
    catalog = repr(json.dumps(record, ensure_ascii=True, separators=(",", ":")))
    return (f"{docstring(_module_doc(registry, namespace))}\n\n{_HEADER}\n\n" + "\n\n\n".join(definitions)
            + f"\n\n\n{CATALOG_MARKER}{catalog}\n")


def generate_sdk(registry: ToolRegistry) -> dict[str, str]:
    """Source per namespace identifier ("" = top level), for kernel_agent.kernel.sdk.build_tools."""
    namespaces = ([""] if registry.tools("") or registry.extras("") else []) + registry.namespaces()
    return {namespace: generate_module(registry, namespace) for namespace in namespaces}


def sdk_hash(modules: dict[str, str]) -> str:
    """sha256 of the generated sources, independent of dict order."""
    canonical = json.dumps(sorted(modules.items()), ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def render_sdk(registry: ToolRegistry) -> str:
    """What the model sees: the manifest, then every generated module under a header."""
    modules = generate_sdk(registry)
    parts = ["# ==== system prompt: tool manifest ====\n" + registry.manifest() + "\n"]
    for namespace, source in modules.items():
        where = f"tools.{namespace}" if namespace else "tools"
        parts.append(f"# ==== {where} (module kernel_agent_tools{'.' + namespace if namespace else ''}) ====\n"
                     + source)
    parts.append(f"# sdk sha256: {sdk_hash(modules)}\n")
    return "\n".join(parts)
