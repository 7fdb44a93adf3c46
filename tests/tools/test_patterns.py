"""Schema patterns are matched by a linear-time engine: same answers as JSON Schema's, no backtracking blowup."""

from __future__ import annotations

from typing import Any

import pytest

from kernel_agent.tools.tool import ArgumentsInvalid, jsonschema_validator

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"},
                                           "near": {"type": "string", "pattern": "(?<=x)y"}},
          "patternProperties": {"^tag_(x+)+$": {"type": "integer"}}, "additionalProperties": False}


@pytest.mark.parametrize("arguments", [{"name": "aaa"}, {"tag_xx": 1}, {"near": "anything"}, {}])
def test_matching_arguments_pass(arguments: dict[str, Any]) -> None:
    assert jsonschema_validator(SCHEMA, "t")(arguments) == arguments


@pytest.mark.parametrize(("arguments", "message"), [
    ({"name": "a" * 80 + "!"}, "does not match"),                    # hours with Python's re
    ({"tag_" + "x" * 80 + "!": 1}, "Additional properties are not allowed"),
    ({"tag_xx": "one"}, "is not of type 'integer'"),
    ({"other": 1}, "'other' was unexpected"),
])
def test_refused_arguments_say_why(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentsInvalid, match=message):
        jsonschema_validator(SCHEMA, "t")(arguments)


def test_a_pattern_the_linear_engine_cannot_compile_is_not_checked_and_matches_no_key() -> None:
    """Look-behind has no linear-time form: a value passes unchecked; a key is refused, never matched by re."""
    schema = {"type": "object", "patternProperties": {"(?<=a)b": {}}, "additionalProperties": False}
    with pytest.raises(ArgumentsInvalid, match="unexpected"):
        jsonschema_validator(schema, "t")({"ab": 1})
