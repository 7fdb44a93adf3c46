"""OpenAPI schemas -> the JSON schemas (draft 2020-12) of tool parameters and results.

Each schema is rebuilt from a list of known keywords (so a document cannot slip in ``$id``,
``$schema``, remote references or kernel-agent's own ``x-kernel-agent-type``), with
OpenAPI 3.0's ``nullable`` and boolean ``exclusiveMinimum``/``exclusiveMaximum`` turned into
their JSON-schema forms. ``pattern`` is dropped from what the host validates: a document's
regular expression run on the kernel's strings could take exponential time (it stays in
the description).

A ``$ref`` is not expanded: the schema it points at is converted once (cached by pointer)
and put in the ``$defs`` of each tool that reaches it, the reference rewritten to
``#/$defs/NAME``. So a recursive schema stays finite and a fan-out of references
(each schema using the next one twice, ten levels deep) costs one conversion per schema,
not 2**10; the ``$defs`` a tool carries, and all tools together, are capped
(:data:`MAX_TOOL_SCHEMA_VALUES`, :data:`MAX_TOTAL_SCHEMA_VALUES`).
"""

from __future__ import annotations

import re
from typing import Any

from kernel_agent.errors import OpenApiError
from kernel_agent.tools.openapi.document import Document, clean_text, escape

MAX_SCHEMA_DEPTH = 48  # inline nesting of one schema (references do not count: they are not expanded)
MAX_TOOL_SCHEMA_VALUES = 200_000  # the schemas of one tool, $defs included
MAX_TOTAL_SCHEMA_VALUES = 4_000_000  # all tools of a document together
MAX_EXPANSION = 20_000  # schemas applied to one value, references followed (see Converted)
_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_VALUES = ("items", "not", "additionalProperties", "contains")
_NUMBERS = ("minimum", "maximum", "multipleOf")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_FLAGS = ("uniqueItems", "readOnly", "writeOnly", "deprecated")
_TEXTS = ("title", "description", "format")
_DEF_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class Converted:
    """A converted schema, the $defs names it refers to directly, and its size in values.

    ``level_refs`` (with repeats) and ``level_size`` count what a validator applies to the
    *same* value (through allOf, anyOf, oneOf, not and $ref, not into properties or items):
    what one value's validation costs, once the references' own costs are known.
    """

    __slots__ = ("level_refs", "level_size", "refs", "schema", "size")

    def __init__(self) -> None:
        self.schema: dict[str, Any] = {}
        self.refs: set[str] = set()
        self.size = 0
        self.level_refs: list[str] = []
        self.level_size = 0


class SchemaConverter:
    """Converts the schemas of one document; shared by all its operations (the cache and the budget)."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.openapi_30 = document.version.startswith("3.0.")
        self.definitions: dict[str, Converted] = {}  # $defs name -> converted target
        self._names: dict[str, str] = {}  # pointer -> $defs name
        self._used_names: set[str] = set()
        self._queue: list[tuple[str, Any, str]] = []  # definitions named but not converted yet
        self._pointers: dict[str, str] = {}  # $defs name -> where it is in the document
        self._costs: dict[str, int] = {}  # $defs name -> what validating one value against it costs
        self.total = 0  # values in the $defs of all tools so far
        self.work = 0  # schema values converted so far

    # -- one schema ---------------------------------------------------------------------

    def convert(self, schema: Any, where: str) -> Converted:
        """``schema`` (at ``where``) converted, with the definitions it refers to directly.

        The definitions it reaches are converted too, one after the other (a queue, not
        recursion: a chain of a thousand references must not exhaust the stack).
        """
        converted = self._convert_one(schema, where)
        while self._queue:
            name, target, target_pointer = self._queue.pop()
            self.definitions[name] = self._convert_one(target, target_pointer)
        cost = converted.level_size + sum(self._cost(name, where) for name in converted.level_refs)
        if cost > MAX_EXPANSION:
            raise OpenApiError(f"validating one value against this schema would apply {cost} schemas through "
                               f"its $refs (more than {MAX_EXPANSION}): a reference fan-out", pointer=where)
        return converted

    def _convert_one(self, schema: Any, where: str) -> Converted:
        converted = Converted()
        converted.schema = self._schema(schema, where, 0, converted, False)
        return converted

    def _cost(self, root: str, where: str) -> int:
        """What validating one value against definition ``root`` costs (memoised; iterative, not recursive)."""
        if root in self._costs:
            return self._costs[root]
        visiting: set[str] = set()
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            name, finished = stack.pop()
            if name in self._costs:
                continue
            definition = self.definitions[name]
            if finished:
                visiting.discard(name)
                cost = definition.level_size + sum(self._costs[r] for r in definition.level_refs)
                if cost > MAX_EXPANSION:
                    raise OpenApiError(f"validating one value against the schema {name!r} would apply {cost} "
                                       f"schemas through its $refs (more than {MAX_EXPANSION}): a reference "
                                       "fan-out", pointer=self._pointers[name])
                self._costs[name] = cost
                continue
            if name in visiting:
                raise OpenApiError(f"the schema {name!r} refers to itself without describing anything "
                                   "(a $ref, allOf, anyOf or oneOf cycle): no value could be checked against it",
                                   pointer=self._pointers[name])
            visiting.add(name)
            stack.append((name, True))
            stack.extend((r, False) for r in set(definition.level_refs) if r not in self._costs)
        return self._costs[root]

    def _schema(self, schema: Any, where: str, depth: int, walk: Converted, nested: bool) -> dict[str, Any]:
        """``schema`` converted; ``nested``: it applies to a value inside the one the walk started at."""
        walk.size += 1
        if not nested:
            walk.level_size += 1
        self.work += 1
        if self.work > MAX_TOTAL_SCHEMA_VALUES:
            raise OpenApiError(f"converting the schemas took more than {MAX_TOTAL_SCHEMA_VALUES} steps: "
                               "too large to use", pointer=where)
        if depth > MAX_SCHEMA_DEPTH:
            raise OpenApiError(f"a schema nested deeper than {MAX_SCHEMA_DEPTH} levels", pointer=where)
        if schema is True:
            return {}
        if schema is False:
            return {"not": {}}
        if not isinstance(schema, dict):
            raise OpenApiError(f"a schema must be an object, not {type(schema).__name__}", pointer=where)
        if "$ref" in schema:
            name = self._definition(schema["$ref"], f"{where}/$ref")
            walk.refs.add(name)
            if not nested:
                walk.level_refs.append(name)
            out: dict[str, Any] = {"$ref": f"#/$defs/{name}"}
            if isinstance(schema.get("description"), str):
                out["description"] = schema["description"]
            return out
        out = {}
        for key in _TEXTS:
            if isinstance(schema.get(key), str):
                out[key] = clean_text(schema[key])
        if isinstance(schema.get("pattern"), str):  # documented, not enforced (see the module docstring)
            note = f"pattern: {schema['pattern'][:200]}"
            out["description"] = f"{out['description']} ({note})" if "description" in out else note
        types = schema.get("type")
        if isinstance(types, str):
            types = [types]
        if isinstance(types, list):
            kept = [t for t in types if isinstance(t, str) and t in _TYPES]
            if self.openapi_30 and schema.get("nullable") is True and kept and "null" not in kept:
                kept.append("null")
            if kept:
                out["type"] = kept[0] if len(kept) == 1 else list(dict.fromkeys(kept))
        for key in ("enum",):
            if isinstance(schema.get(key), list):
                out[key] = list(schema[key])
                if self.openapi_30 and schema.get("nullable") is True and None not in out[key]:
                    out[key].append(None)
        for key in ("const", "default"):
            if key in schema:
                out[key] = schema[key]
        for key in _NUMBERS:
            if _is_number(schema.get(key)):
                out[key] = schema[key]
        for key in _COUNTS:
            value = schema.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                out[key] = value
        for key in _FLAGS:
            if isinstance(schema.get(key), bool):
                out[key] = schema[key]
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = schema.get(key)
            if value is True and bound in out:  # OpenAPI 3.0: a flag on minimum/maximum
                out[key] = out.pop(bound)
            elif _is_number(value):
                out[key] = value
        if isinstance(schema.get("required"), list):
            out["required"] = [name for name in schema["required"] if isinstance(name, str)]
        properties = schema.get("properties")
        if isinstance(properties, dict):
            # In document order: a recording keeps it (kernel_agent.tools.key_order), so a replay makes the same SDK.
            out["properties"] = {
                name: self._schema(properties[name], f"{where}/properties/{escape(name)}", depth + 1, walk, True)
                for name in properties}
        for key in _SCHEMA_VALUES:
            if key not in schema:
                continue
            value = schema[key]
            if isinstance(value, bool) and key in ("additionalProperties", "items"):
                out[key] = value
            else:
                out[key] = self._schema(value, f"{where}/{key}", depth + 1, walk, nested or key != "not")
        for key in _SCHEMA_LISTS:
            value = schema.get(key)
            if isinstance(value, list):
                inner = nested or key == "prefixItems"
                out[key] = [self._schema(item, f"{where}/{key}/{index}", depth + 1, walk, inner)
                            for index, item in enumerate(value)]
        if self.openapi_30 and schema.get("nullable") is True and "type" not in out and \
                any(key in out for key in ("allOf", "anyOf", "oneOf")):
            out = {"anyOf": [out, {"type": "null"}]}
        return out

    # -- references -----------------------------------------------------------------------

    def _definition(self, ref: Any, where: str) -> str:
        """The $defs name of what ``ref`` points at, converting it on first use."""
        target, target_pointer = self.document.resolve(ref, where)
        name = self._names.get(target_pointer)
        if name is not None:
            return name
        base = _DEF_NAME.sub("_", target_pointer.rsplit("/", 1)[-1]).strip("_") or "Schema"
        name, counter = base, 1
        while name in self._used_names:
            counter += 1
            name = f"{base}_{counter}"
        self._used_names.add(name)
        self._names[target_pointer] = name
        # Named now, converted later by convert(): a schema that refers to itself finds its name.
        self._pointers[name] = target_pointer
        self._queue.append((name, target, target_pointer))
        return name

    def resolve_local(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A converted schema with its top-level ``$ref`` chain followed (to look at a body's properties)."""
        seen: set[str] = set()
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name in seen or name not in self.definitions:
                return schema
            seen.add(name)
            schema = self.definitions[name].schema
        return schema

    # -- a tool's schema ----------------------------------------------------------------------

    def closure(self, refs: set[str], where: str) -> tuple[dict[str, Any], int]:
        """The $defs reached from ``refs`` (transitively) and their total size; charged to the budgets."""
        definitions: dict[str, Any] = {}
        size = 0
        pending = sorted(refs)
        while pending:
            name = pending.pop()
            if name in definitions:
                continue
            converted = self.definitions[name]
            definitions[name] = converted.schema
            size += converted.size
            if size > MAX_TOOL_SCHEMA_VALUES:
                raise OpenApiError(f"the schemas of this operation reach more than {MAX_TOOL_SCHEMA_VALUES} "
                                   "values through their $refs: too large to use", pointer=where)
            pending.extend(n for n in converted.refs if n not in definitions)
        self.charge(size, where)
        return definitions, size

    def charge(self, size: int, where: str) -> None:
        self.total += size
        if self.total > MAX_TOTAL_SCHEMA_VALUES:
            raise OpenApiError(f"the operations' schemas add up to more than {MAX_TOTAL_SCHEMA_VALUES} values "
                               "(counting each $defs a tool carries): too large to use", pointer=where)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
