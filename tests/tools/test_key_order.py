"""A recorded tool definition regenerates the recorded SDK, though the notebook sorts every JSON object's keys.

The definitions go through what a recording does to them (JSON with sorted
keys, read back by the strict reader) and are rebuilt the way replay,
resume and restore rebuild them; the regenerated SDK must be the same text,
for every tool source. A crafted ``key_order`` is refused with a named error.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import mcp.types as mcp_types
import pytest
from pydantic import BaseModel

from kernel_agent.protocol.strict_json import loads as strict_loads
from kernel_agent.record.recording import ReplayInputError
from kernel_agent.session.toolbox import SessionTools
from kernel_agent.tools.key_order import MAX_ORDER_PATH, key_order
from kernel_agent.tools.mcp.convert import build_tools
from kernel_agent.tools.openapi import OpenApiSource
from kernel_agent.tools.recorded import RecordedTools, recorded_tools
from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.sdkgen import generate_sdk, sdk_hash
from kernel_agent.tools.tool import tool, tool_from_schema


class Window(BaseModel):
    """A time window (fields deliberately not in alphabetical order)."""

    start: int
    end: int
    label: str = "all"


@tool
def shift(value: int, step: int = 1, base: int = 0) -> int:
    """value * step + base (optional parameters not in alphabetical order)."""
    return value * step + base


@tool(namespace="stats")
def summarise(window: Window, weights: dict[str, int] | None = None,
              options: dict[str, Any] = {"zeta": 1, "alpha": 2}) -> Window:  # noqa: B006 - a default dict's order
    """Summarise a window (a nested model, a dict default whose keys are not sorted)."""
    return window


async def _noop(arguments: dict[str, Any]) -> Any:
    return arguments


SCHEMA_TOOL = tool_from_schema({
    "name": "search_orders",
    "description": "Search orders.",
    "input_schema": {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string"}, "since": {"type": "string"}, "limit": {"type": "integer"},
        "filter": {"type": "object", "properties": {"status": {"enum": ["open", "closed"]}, "customer": {}}}}},
}, _noop, namespace="orders", takes_mapping=True)

MCP_TOOLS = build_tools([mcp_types.Tool(
    name="fetchPage", description="Fetch a page.",
    inputSchema={"type": "object", "required": ["url"], "properties": {
        "url": {"type": "string"}, "timeout": {"type": "number"}, "agent": {"type": "string"}}},
    outputSchema={"type": "object", "properties": {"status": {"type": "integer"}, "body": {"type": "string"}}},
)], namespace="web", source="mcp:test", target="test", call=lambda name, arguments: _noop(dict(arguments)))

OPENAPI = {
    "openapi": "3.1.0", "info": {"title": "Pets"}, "servers": [{"url": "http://127.0.0.1:1"}],
    "paths": {"/pets": {"get": {
        "operationId": "listPets", "tags": ["pets"],
        "parameters": [{"name": "species", "in": "query", "schema": {"type": "string"}},
                       {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"total": {"type": "integer"}, "names": {"type": "array"}}}}}}},
    }}},
}

SOURCES = {"python": [shift, summarise], "json-schema": [SCHEMA_TOOL], "mcp": MCP_TOOLS,
           "openapi": OpenApiSource(OPENAPI).tools}


def _recorded(items: list[Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(the SDK a session generates, its definitions as a notebook gives them back: keys sorted)."""
    tools = SessionTools(items)
    tools.registry = ToolRegistry(items)
    definitions = tools.definitions()
    as_stored = json.dumps({"definitions": definitions}, sort_keys=True)  # what nbformat writes
    return generate_sdk(tools.registry), strict_loads(as_stored)["definitions"]


def _regenerated(definitions: list[dict[str, Any]]) -> dict[str, str]:
    return generate_sdk(ToolRegistry(recorded_tools(definitions, RecordedTools())))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_recorded_definition_regenerates_the_same_sdk(source: str) -> None:
    """Python, JSON-schema, MCP and OpenAPI tools: the same SDK text (and hash) from the sorted record."""
    sdk, definitions = _recorded(SOURCES[source])
    regenerated = _regenerated(definitions)
    assert regenerated == sdk
    assert sdk_hash(regenerated) == sdk_hash(sdk)


def test_parameters_keep_their_order_through_a_record() -> None:
    """The bug this guards against: optional parameters came back in alphabetical order."""
    _, definitions = _recorded([shift])
    source = _regenerated(definitions)[""]
    assert "def shift(value: int, step: int = 1, base: int = 0) -> int:" in source
    without_order = [{k: v for k, v in d.items() if k != "key_order"} for d in definitions]
    # A recording made before key_order existed is still read, as before (sorted order).
    assert "def shift(value: int, base: int = 0, step: int = 1) -> int:" in _regenerated(without_order)[""]


def test_nested_fields_and_default_dicts_keep_their_order() -> None:
    sdk, definitions = _recorded([summarise])
    source = _regenerated(definitions)["stats"]
    assert source == sdk["stats"]
    assert "    start: _t.Required[int]\n    end: _t.Required[int]\n    label: str\n" in source
    assert "{'zeta': 1, 'alpha': 2}" in source


def test_only_unsorted_objects_are_recorded() -> None:
    """Property maps and dicts inside shown values, when not sorted; not the order of a schema's keywords."""
    schema = {"type": "object", "properties": {"b": {"type": "string", "description": "B."}, "a": {}},
              "default": {"z": {"y": 1, "x": [{"w": 1, "v": 2}]}, "a": 1}}
    assert key_order(schema) == [[["default"], ["z", "a"]], [["default", "z"], ["y", "x"]],
                                 [["default", "z", "x", 0], ["w", "v"]], [["properties"], ["b", "a"]]]
    deep: dict[str, Any] = {"properties": {"z": {}, "a": {}}}
    for _ in range(MAX_ORDER_PATH + 5):
        deep = {"properties": {"x": deep}}
    assert key_order(deep) == []  # too deep to matter for an SDK: kept sorted, not recorded


def _with_order(order: Any) -> list[dict[str, Any]]:
    _, definitions = _recorded([shift])
    crafted = copy.deepcopy(definitions)
    crafted[0]["key_order"] = order
    return crafted


PROPERTIES = ["properties"]
BOGUS_ORDERS = {
    "not an object": ["value"],
    "an unknown schema": {"input_schema": [], "handler": []},
    "not a list": {"input_schema": {"properties": ["value"]}},
    "not a pair": {"input_schema": [[PROPERTIES]]},
    "a path that is not a list": {"input_schema": [["properties", ["value", "step", "base"]]]},
    "keys that are not strings": {"input_schema": [[PROPERTIES, ["value", "step", 3]]]},
    "a missing key": {"input_schema": [[PROPERTIES, ["value", "step"]]]},
    "an extra key": {"input_schema": [[PROPERTIES, ["value", "step", "base", "evil"]]]},
    "a repeated key": {"input_schema": [[PROPERTIES, ["value", "step", "step"]]]},
    "a path to no object": {"input_schema": [[["properties", "nothing"], ["a", "b"]]]},
    "a path to a string": {"input_schema": [[["properties", "value", "type"], ["a"]]]},
    "the same path twice": {"input_schema": [[PROPERTIES, ["value", "step", "base"]],
                                             [PROPERTIES, ["base", "step", "value"]]]},
    "a boolean index": {"input_schema": [[["required", True], ["a"]]]},
    "a path too long": {"input_schema": [[["properties"] * (MAX_ORDER_PATH + 1), ["a"]]]},
    "an order for a schema that is absent": {"output_schema": [[[], ["a"]]]},
}


@pytest.mark.parametrize("case", sorted(BOGUS_ORDERS))
def test_a_crafted_key_order_is_refused_with_a_named_error(case: str) -> None:
    """The notebook is hostile input: an order that is not a permutation of an existing object's keys is refused."""
    with pytest.raises(ReplayInputError, match=r"cannot be rebuilt: key_order"):
        recorded_tools(_with_order(BOGUS_ORDERS[case]), RecordedTools())


def test_a_valid_permutation_is_applied() -> None:
    """The recorded order is what the SDK gets (it is data, not code: any permutation is acceptable)."""
    crafted = _with_order({"input_schema": [[PROPERTIES, ["base", "value", "step"]]], "output_schema": []})
    assert "def shift(value: int, base: int = 0, step: int = 1) -> int:" in _regenerated(crafted)[""]


def test_a_schema_that_contains_itself_does_not_hang_the_recorder() -> None:
    looped: dict[str, Any] = {"type": "object", "properties": {}}
    looped["properties"]["self"] = looped
    looped["properties"]["again"] = looped
    assert key_order(looped) == [[["properties"], ["self", "again"]]]


def test_openapi_parameters_keep_the_documents_order_through_a_record() -> None:
    sdk, definitions = _recorded(SOURCES["openapi"])
    source = _regenerated(definitions)["pets"]
    assert source == sdk["pets"]
    assert source.index("species: ") < source.index("limit: ")  # the document's order, not alphabetical
