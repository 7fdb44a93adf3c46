"""ToolRegistry: what it accepts, how it names tools, namespaces and parameters, and its manifest."""

from __future__ import annotations

from typing import Any

import pytest

from kernel_agent.errors import ToolDefinitionError
from kernel_agent.tools.registry import (
    RESERVED_NAMES,
    ToolRegistry,
    class_identifier,
    plan_parameters,
    snake_identifier,
)
from kernel_agent.tools.tool import Tool, tool, tool_from_function, tool_from_schema


def schema_tool(name: str, namespace: str | None = None, description: str = "", **extra: Any) -> Tool:
    """A Tool from a bare JSON-schema definition, with a handler echoing its arguments."""
    definition = {"name": name, "description": description,
                  "input_schema": extra.pop("schema", {"type": "object", "properties": {}})}
    return tool_from_schema(definition, lambda **kwargs: kwargs, namespace=namespace, **extra)


class FakeServer:
    """What a started MCP server looks like to the registry: a name and a list of Tools."""

    def __init__(self, name: str, tools: list[Any]) -> None:
        self.name = name
        self.tools = tools


def get_weather(city: str, unit: str = "c") -> str:
    """Current weather for a city.

    Args:
        city: The city.
        unit: c or f.
    """
    return f"{city} {unit}"


# -- what add() accepts ----------------------------------------------------------------


def test_add_accepts_tool_decorated_plain_function_and_server() -> None:
    @tool(namespace="db", destructive=True)
    def drop_table(table: str) -> None:
        """Drop a table."""

    server = FakeServer("time", [schema_tool("get_current_time", "time"), schema_tool("convert_time", "time")])
    registry = ToolRegistry([schema_tool("echo"), drop_table, get_weather, server])

    assert [t.qualified_name for t in registry.tools()] == [
        "echo", "db.drop_table", "get_weather", "time.get_current_time", "time.convert_time"]
    assert registry.lookup("db.drop_table") is drop_table.__kernel_agent_tool__
    assert registry.lookup("get_weather").handler is get_weather
    assert registry.server("time") == "time" and registry.server("db") is None
    assert len(registry) == 5 and [t.name for t in registry] == [t.name for t in registry.tools()]
    assert "time.convert_time" in registry and "convert_time" not in registry


def test_add_returns_the_tools_it_added() -> None:
    registry = ToolRegistry()
    server = FakeServer("s", [schema_tool("a", "s"), schema_tool("b", "s")])
    assert [t.name for t in registry.add(server)] == ["a", "b"]
    assert [t.name for t in registry.add(get_weather)] == ["get_weather"]


@pytest.mark.parametrize("item, message", [
    (42, "cannot make a tool from int"),
    ("get_weather", "cannot make a tool from str"),
    ({"name": "x", "input_schema": {"type": "object"}}, "tool_from_schema"),
    (FakeServer("s", [{"name": "raw"}]), "must hold Tool objects"),
    (lambda x: x, "needs a name"),
])
def test_add_rejects_what_is_not_a_tool(item: object, message: str) -> None:
    with pytest.raises(ToolDefinitionError, match=message):
        ToolRegistry([item])


def test_the_same_qualified_name_twice_is_an_error() -> None:
    registry = ToolRegistry([schema_tool("query", "db")])
    with pytest.raises(ToolDefinitionError, match="two tools are named 'db.query'"):
        registry.add(schema_tool("query", "db"))
    # The same name in another namespace, or at the top level, is fine.
    registry.add(schema_tool("query", "other"))
    registry.add(schema_tool("query"))
    assert len(registry) == 3


# -- naming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("get_weather", "get_weather"),
    ("get-weather", "get_weather"),
    ("Get Weather!", "get_weather"),
    ("getWeather", "get_weather"),
    ("HTTPRequest", "http_request"),
    ("3d_render", "t_3d_render"),
    ("class", "class_"),
    ("None", "none"),
    ("list", "list_"),
    ("dict", "dict_"),
    ("__init__", "init"),
    ("météo", "meteo"),
    ("天气", "tool"),
    ("x.y/z", "x_y_z"),
])
def test_tool_identifiers_are_readable_python(raw: str, expected: str) -> None:
    assert snake_identifier(raw) == expected
    assert expected.isidentifier() and expected.isascii()


@pytest.mark.parametrize("raw, expected", [
    ("Addr", "Addr"), ("get_weather result", "GetWeatherResult"), ("None", "None_"),
    ("Exception", "Exception_"), ("3d", "T3d"), ("", "Model"), ("a\"b'c", "ABC"),
])
def test_class_identifiers(raw: str, expected: str) -> None:
    assert class_identifier(raw) == expected


def test_collisions_get_suffixes_in_registration_order() -> None:
    registry = ToolRegistry([schema_tool("get-weather"), schema_tool("Get Weather!"), schema_tool("get_weather"),
                             schema_tool("get weather", "ns")])
    assert [registry.identifier(t) for t in registry.tools()] == [
        "get_weather", "get_weather_2", "get_weather_3", "get_weather"]
    # Registering in the same order again gives the same names.
    again = ToolRegistry(list(registry.tools()))
    assert [again.identifier(t) for t in again] == [registry.identifier(t) for t in registry]
    assert registry.identifier("Get Weather!") == "get_weather_2"


def test_reserved_names_are_not_used() -> None:
    assert "search" in RESERVED_NAMES
    registry = ToolRegistry([schema_tool("search"), schema_tool("search", "web"), schema_tool("_hidden"),
                             schema_tool("x", "search")])
    identifiers = [registry.identifier(t) for t in registry]
    assert identifiers[:3] == ["search_2", "search_2", "hidden"]
    assert registry.namespaces() == ["web", "search_3"]  # a namespace shares the top-level scope


def test_namespaces_do_not_collide_with_top_level_tools() -> None:
    registry = ToolRegistry([schema_tool("db"), schema_tool("query", "db"), schema_tool("query", "my-server"),
                             schema_tool("ping", "my_server")])
    assert registry.namespaces() == ["db_2", "my_server", "my_server_2"]
    assert registry.path(registry.lookup("db.query")) == "tools.db_2.query"
    assert registry.namespace_of(registry.lookup("db")) == ""
    assert [t.name for t in registry.tools("db_2")] == ["query"]
    assert [t.name for t in registry.tools("")] == ["db"]


def test_parameter_names_are_mapped_only_when_needed() -> None:
    schema = {"type": "object", "required": ["max-results", "query"], "properties": {
        "max-results": {"type": "integer"}, "from": {"type": "string"}, "query": {"type": "string"},
        "max_results": {"type": "integer", "default": 3}, "2fa": {"type": "string"}, "cityName": {},
    }}
    parameters = plan_parameters(schema)
    assert [(p.name, p.json_name, p.required) for p in parameters] == [
        ("max_results_2", "max-results", True), ("query", "query", True), ("from_", "from", False),
        ("max_results", "max_results", False), ("p_2fa", "2fa", False), ("cityName", "cityName", False)]
    assert parameters[3].has_default and parameters[3].default == 3
    assert not parameters[2].has_default


def test_required_names_without_a_property_still_become_parameters() -> None:
    parameters = plan_parameters({"type": "object", "required": ["x"], "properties": {"y": {"type": "string"}}})
    assert [(p.name, p.required, p.schema) for p in parameters] == [("x", True, {}), ("y", False, {"type": "string"})]


# -- search and manifest ----------------------------------------------------------------------


def registry_for_manifest() -> ToolRegistry:
    return ToolRegistry([
        get_weather,
        tool_from_function(get_weather, name="forecast", description="Weather forecast.\nMore details here.",
                           read_only=True),
        FakeServer("db", [
            schema_tool("drop-table", "db", "Drop a table.", destructive=True,
                        schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
            schema_tool("query", "db", "Run a SQL query. " + "Long text. " * 40,
                        schema={"type": "object", "properties": {
                            f"p{i}": {"type": "string", "default": "x" * (i * 10)} for i in range(8)}}),
        ]),
    ])


def test_manifest_lists_tools_with_summaries_and_flags() -> None:
    manifest = registry_for_manifest().manifest()
    lines = manifest.splitlines()
    assert "tools.get_weather(city, unit='c'): Current weather for a city." in lines
    assert "tools.forecast(city, unit='c'): Weather forecast. [read-only]" in lines
    assert "tools.db (MCP server 'db'):" in lines
    assert "  tools.db.drop_table(name): Drop a table. [destructive]" in lines
    query_line = next(line for line in lines if "tools.db.query" in line)
    assert query_line.startswith("  tools.db.query(p0='', p1='xxxxxxxxxx', p2='" + "x" * 20 + "', p3=..., ")
    assert query_line.count("=") == 6 and ", ...)" in query_line  # 6 parameters shown, then "..."
    assert query_line.endswith("...") and len(query_line) < 220
    assert "More details here" not in manifest and "properties" not in manifest
    assert "help(tools." in lines[-1] and "tools.search(" in lines[-1] and "dir(tools)" in lines[-1]


def test_empty_manifest() -> None:
    assert ToolRegistry().manifest() == "No tools are available in this session."


def test_host_side_search() -> None:
    registry = registry_for_manifest()
    assert [t.name for t in registry.search("weather")] == ["get_weather", "forecast"]
    # Ranked: the tool with every word first, then one with some of them.
    assert [t.name for t in registry.search("forecast weather")] == ["forecast", "get_weather"]
    assert [t.name for t in registry.search("SQL")] == ["query"]
    assert [t.name for t in registry.search("table")] == ["drop-table"]
    assert registry.search("nothing-like-this") == []
    assert len(registry.search("")) == len(registry)


def test_mcp_server_labels() -> None:
    class Started(FakeServer):
        server_info = {"name": "mcp-time", "version": "1"}

    registry = ToolRegistry([Started("mcp_time", [schema_tool("now", "mcp_time")]),
                             schema_tool("other", "solo", source="mcp:solo")])
    assert registry.server("mcp_time") == "mcp-time"  # the server's own name, not the namespace
    assert registry.server("solo") == "solo"


def test_an_mcp_server_that_is_not_started_says_so() -> None:
    from kernel_agent.errors import McpServerError
    from kernel_agent.tools.mcp import McpServer

    with pytest.raises(McpServerError, match="not started"):
        ToolRegistry([McpServer.stdio(["true"], namespace="x")])


def test_a_registry_can_be_added_to_another() -> None:
    inner = ToolRegistry([get_weather, FakeServer("db", [schema_tool("query", "db")])])
    outer = ToolRegistry([schema_tool("db"), inner])
    assert [t.qualified_name for t in outer] == ["db", "get_weather", "db.query"]
    assert outer.namespaces() == ["db_2"]  # named afresh: "db" is a top-level tool here
    assert outer.lookup("db.query") is inner.lookup("db.query")
    assert outer.server("db_2") == "db"
    with pytest.raises(ToolDefinitionError, match="two tools are named 'get_weather'"):
        outer.add(inner)
