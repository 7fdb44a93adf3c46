"""Formats in a tool's JSON schema are checked in linear time on the kernel's (hostile) arguments.

jsonschema's default format checker runs every optional format package installed; rfc3987_syntax
(which jupyter-server's dependencies install) parses "iri" strings with an Earley parser whose time is
cubic in the string's length: 16 kB held a host thread for 55 s, 64 kB would hold it for an hour.
"""

from __future__ import annotations

from typing import Any

import pytest

from kernel_agent.tools.tool import ArgumentsInvalid, Tool, tool_from_schema


def _tool(fmt: str) -> Tool:
    def echo(value: str) -> str:
        return value

    return tool_from_schema({"name": "echo", "input_schema": {
        "type": "object", "properties": {"value": {"type": "string", "format": fmt}}, "required": ["value"]}}, echo)


def _validate(tool: Tool, value: Any) -> None:
    tool.validate({"value": value})


@pytest.mark.parametrize("fmt", ["iri", "iri-reference", "uri", "uri-reference", "regex", "idn-hostname"])
def test_a_kernel_string_under_a_costly_format_is_not_parsed(fmt: str) -> None:
    # Formats without a linear check are annotations: 64 kB of them is accepted, not parsed for an hour.
    _validate(_tool(fmt), "a" * 65_536)
    _validate(_tool(fmt), "(" * 65_536)


@pytest.mark.parametrize(("fmt", "good", "bad"), [
    ("date-time", "2026-11-26T01:02:03Z", "yesterday"),
    ("date", "2026-11-26", "2026-13-45"),
    ("email", "a@example.org", "no at sign"),
    ("ipv4", "127.0.0.1", "999.1.1.1"),
    ("ipv6", "::1", "1:::2"),
    ("uuid", "12345678-1234-5678-1234-567812345678", "not-a-uuid"),
])
def test_cheap_formats_are_still_checked(fmt: str, good: str, bad: str) -> None:
    tool = _tool(fmt)
    _validate(tool, good)
    with pytest.raises(ArgumentsInvalid):
        _validate(tool, bad)


def test_an_over_long_string_fails_a_checked_format_without_being_parsed() -> None:
    # No valid e-mail address, date or address is this long: refused, by name of the field.
    with pytest.raises(ArgumentsInvalid) as caught:
        _validate(_tool("email"), "a" * 200 + "@" + "b" * 200)
    assert caught.value.errors[0]["field"] == "value"
