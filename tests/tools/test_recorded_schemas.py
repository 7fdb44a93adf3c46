"""A recording's tool schemas are not checked by jsonschema (they only make the SDK): crafted ones must still
give a named error or a safe SDK, never a crash, a hang or code in the generated modules.

The definitions here are what a notebook can hold (strict JSON: any structure, nesting bounded at 256);
they go through :func:`recorded_tools` as replay, resume and restore take them, then through everything a
replayed session does with its tools: the registry, the manifest, search, the SDK, and loading that SDK
the way the kernel loads it (:func:`kernel_agent.kernel.sdk.build_tools`).
"""

from __future__ import annotations

import ast
import copy
import json
import random
import sys
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from kernel_agent.errors import ToolDefinitionError
from kernel_agent.kernel import sdk
from kernel_agent.protocol import strict_json
from kernel_agent.record.recording import ReplayInputError
from kernel_agent.tools.recorded import RecordedTools, recorded_tools
from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.sdkgen import generate_sdk
from kernel_agent.tools.tool import tool_from_schema

EVIL = 'x"""; __import__(\'os\').system(\'touch /tmp/pwned\') #\'\'\'\n\\'
# Every keyword the generator reads, each given values jsonschema's meta-schema refuses.
KEYWORDS = ["type", "enum", "const", "anyOf", "oneOf", "allOf", "properties", "required", "items",
            "additionalProperties", "$ref", "$defs", "definitions", "default", "description", "format", "title",
            "x-kernel-agent-type", "examples"]
JUNK: list[Any] = [5, -1, 1.5, EVIL, "", None, True, [], [EVIL, 5, None], {}, {EVIL: EVIL}, [[{}]],
                   {"type": EVIL}, ["null"], "#/$defs/x", "#", "#/", "#/$defs/" + EVIL, 10**30, "object", "array"]


def definition(name: str, input_schema: Any, output_schema: Any = None, **extra: Any) -> dict[str, Any]:
    return {"qualified_name": name, "name": name, "namespace": None, "description": f"Tool {name}.",
            "input_schema": input_schema, "output_schema": output_schema, **extra}


@pytest.fixture(autouse=True)
def forget_generated_modules() -> Iterator[None]:
    yield
    for name in [n for n in sys.modules if n == "kernel_agent_tools" or n.startswith("kernel_agent_tools.")]:
        del sys.modules[name]


def replayed_sdk(definitions: list[dict[str, Any]], *, inspect: bool = True) -> tuple[ToolRegistry, dict[str, str]]:
    """What a replay does with recorded definitions, through the SDK loaded as the kernel loads it.

    ``inspect``: also check every module's statements and every function's annotations (slow for big ones)."""
    # As a notebook holds them: strict JSON (so no NaN, no Python objects, nesting bounded).
    definitions = strict_json.loads(json.dumps(definitions))
    registry = ToolRegistry(recorded_tools(definitions, RecordedTools()))
    registry.manifest()
    registry.search("tool x")
    modules = generate_sdk(registry)
    if not inspect:
        for source in modules.values():
            compile(source, "<sdk>", "exec")
        return registry, modules
    for source in modules.values():
        assert_only_stubs(source)
    tools = sdk.build_tools(modules)
    for namespace in [tools, *(getattr(tools, n) for n in modules if n)]:
        for name in dir(namespace):
            function = getattr(namespace, name)
            if callable(function) and not isinstance(function, sdk.Namespace):
                typing.get_type_hints(function)  # every annotation resolves: a usable signature
    return registry, modules


def assert_only_stubs(source: str) -> None:
    """The module is docstrings, TypedDicts, aliases and ``...`` stubs decorated with _bind: nothing runs."""
    tree = ast.parse(source)
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert calls <= {"_bind", "_t.TypedDict"}, calls
    loaded = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    assert loaded <= {"_t", "_bind", "str", "int", "float", "bool", "list", "dict", "None"} | {
        n for n in loaded if n[:1].isupper()}, loaded
    for function in (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)):
        assert [ast.unparse(statement) for statement in function.body[1:]] == ["..."]


def test_recorded_tools_are_not_checked_but_live_ones_are() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "enum": "not-a-list"}}, "required": ["a"]}
    with pytest.raises(ToolDefinitionError, match="invalid input schema"):
        tool_from_schema({"name": "t", "input_schema": schema}, lambda arguments: arguments)
    (recorded,) = recorded_tools([definition("t", schema)], RecordedTools())
    assert recorded.validate({"a": 5, "unknown": []}) == {"a": 5, "unknown": []}  # answered from the record
    _, modules = replayed_sdk([definition("t", schema)])
    assert "def t(a: str) -> _t.Any:" in modules[""]


def test_keywords_with_junk_values_give_a_loadable_sdk() -> None:
    definitions = []
    for number, junk in enumerate(JUNK):
        properties = {f"p_{keyword}": {keyword: copy.deepcopy(junk)} for keyword in KEYWORDS}
        nested = {"type": "object", "properties": {k: {k: copy.deepcopy(junk)} for k in KEYWORDS}, "required": junk}
        schema = {"type": "object", "properties": {**properties, "nested": nested}, "required": junk,
                  "$defs": junk, "definitions": junk}
        output = {"type": "object", "properties": {"r": {k: copy.deepcopy(junk) for k in KEYWORDS}}}
        definitions.append(definition(f"t{number}", schema, output))
        definitions.append(definition(f"u{number}", {"type": "object", "properties": junk, "required": junk},
                                      junk))
    registry, _ = replayed_sdk(definitions)
    assert len(registry) == len(definitions)


def test_hostile_names_and_refs_stay_data() -> None:
    schema = {"type": "object", "required": [EVIL, EVIL, "missing", "missing"], "properties": {
        EVIL: {"$ref": f"#/$defs/{EVIL}", "default": {EVIL: [EVIL]}},
        "self": {"$ref": "#"}, "loop": {"$ref": "#/$defs/A"},
        "up": {"$ref": "#/properties/up"}, "enc": {"$ref": "#/%24defs/A"},
    }, "$defs": {EVIL: {"type": "object", "title": EVIL, "properties": {EVIL: {"const": EVIL}}},
                 "A": {"anyOf": [{"$ref": "#/$defs/B"}, {"$ref": "#"}]}, "B": {"allOf": [{"$ref": "#/$defs/A"}]}}}
    registry, _ = replayed_sdk([definition(EVIL, schema, {"$ref": "#/$defs/nope", "title": EVIL},
                                                 namespace_description=EVIL)])
    (tool,) = registry.tools()
    parameters = [p.name for p in registry.parameters(tool)]
    assert len(parameters) == len(set(parameters)) == 6  # the repeated required names count once
    assert all(p.isidentifier() for p in parameters)


def test_a_definition_that_is_not_a_tool_is_a_named_error() -> None:
    for broken in (definition("", {"type": "object"}), definition("t", "object"),
                   definition("t", {"type": "array"}), {**definition("t", {}), "name": ["t"]},
                   {**definition("t", {}), "namespace": 5}, definition("t", {}, key_order={"input_schema": 5})):
        with pytest.raises(ReplayInputError):
            recorded_tools([strict_json.loads(json.dumps(broken))], RecordedTools())


def random_schema(rng: random.Random, depth: int = 0) -> Any:
    if depth > 4 or rng.random() < 0.3:
        return copy.deepcopy(rng.choice(JUNK))
    schema: dict[str, Any] = {}
    for keyword in rng.sample(KEYWORDS, rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.3:
            schema[keyword] = random_schema(rng, depth + 1)
        elif roll < 0.5:
            schema[keyword] = [random_schema(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        elif roll < 0.7:
            schema[keyword] = {rng.choice(["a", "b", EVIL, "A", "Item2"]): random_schema(rng, depth + 1)
                               for _ in range(rng.randint(0, 3))}
        else:
            schema[keyword] = copy.deepcopy(rng.choice(JUNK))
    return schema


def test_random_schemas_give_a_loadable_sdk_or_a_named_error() -> None:
    rng = random.Random(15)  # fixed: the same 300 schemas in every run
    definitions = []
    for number in range(300):
        schema = random_schema(rng)
        if isinstance(schema, dict):
            schema["type"] = "object"
            schema["properties"] = {f"q{i}": random_schema(rng, 2) for i in range(3)}
        definitions.append(definition(f"t{number}", schema, random_schema(rng)))
    usable = []
    for item in definitions:
        try:
            recorded_tools([strict_json.loads(json.dumps(item))], RecordedTools())
            usable.append(item)
        except ReplayInputError:  # a schema that is not an object schema
            assert not isinstance(item["input_schema"], dict) or item["input_schema"].get("type") != "object"
    assert len(usable) > 150
    registry, _ = replayed_sdk(usable)
    assert len(registry) == len(usable)


def punctuation(number: int) -> str:
    """A distinct name without letters or digits for each number (so its parameter is named `arg`)."""
    return "".join("!#$%&*+-"[int(digit)] for digit in oct(number)[2:])


def test_wide_schemas_stay_linear() -> None:
    """Sizes a 256 MiB notebook holds easily, each of which was quadratic (minutes) somewhere in the generator."""
    same_identifier = {punctuation(n): {"type": "string"} for n in range(3_000)}  # all `arg`, `arg_2`, ...
    many_required = [f"r{n}" for n in range(20_000)] * 2
    distinct_options = {"anyOf": [{"const": n} for n in range(20_000)]}  # `|` 20,000 deep did not compile
    # 3,000 object definitions referring to each other: each used to dump all 3,000 to name itself.
    chained = {f"D{n}": {"type": "object", "properties": {"next": {"$ref": f"#/$defs/D{(n * 7 + 1) % 3_000}"}}}
               for n in range(3_000)}
    # 3,000 tools whose own "Options" objects all differ: Options, Options2, ..., Options3000.
    options = [definition(f"o{n}", {"type": "object", "properties": {"options": {
        "type": "object", "title": "Options", "properties": {f"k{n}": {"type": "integer"}}}}})
        for n in range(3_000)]
    registry, modules = replayed_sdk([
        definition("same", {"type": "object", "properties": same_identifier}),
        definition("required", {"type": "object", "properties": {}, "required": many_required}),
        definition("union", {"type": "object", "properties": {"x": distinct_options}}),
        definition("chained", {"type": "object", "properties": {f"d{n}": {"$ref": f"#/$defs/D{n}"} for n in range(
            3_000)}, "$defs": chained}),
        *options,
    ], inspect=False)
    names = [p.name for p in registry.parameters(registry.lookup("same"))]
    assert names[:3] == ["arg", "arg_2", "arg_3"] and len(set(names)) == 3_000
    assert len(registry.parameters(registry.lookup("required"))) == 20_000
    assert "class Options3000(" in modules[""] and "class Options3001(" not in modules[""]
    assert "class D2999(" in modules[""]
    assert "def union(x: _t.Any = None)" in modules[""]
