"""Crafted recorded tool definitions against the SDK generator (review of issue 15's unchecked recorded schemas).

A recording's schemas are no longer checked by jsonschema (they only make the SDK), so a notebook may hold
schemas no live tool could have. Each attack goes the way replay, resume and restore take a notebook's
definitions (strict JSON, :func:`recorded_tools`, a ToolRegistry, :func:`generate_sdk`) and must give a bounded
SDK that compiles: never a hang, and never host memory out of proportion to the notebook.
"""

from __future__ import annotations

import json
from typing import Any

from kernel_agent.protocol import strict_json
from kernel_agent.tools.recorded import RecordedTools, recorded_tools
from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.sdkgen import generate_sdk

SCALARS = ["integer", "number", "string", "boolean"]


def replayed_modules(input_schema: dict[str, Any]) -> dict[str, str]:
    definition = {"qualified_name": "t", "name": "t", "namespace": None, "description": "Crafted.",
                  "input_schema": input_schema, "output_schema": None}
    definitions = strict_json.loads(json.dumps([definition]))  # as a notebook holds it
    modules = generate_sdk(ToolRegistry(recorded_tools(definitions, RecordedTools())))
    for source in modules.values():
        compile(source, "<sdk>", "exec")
    return modules


def test_a_repeated_type_name_is_rendered_once() -> None:
    """``"type": ["array"] * 8`` at each of 24 levels: jsonschema's check refused the repeats (uniqueItems), the
    generator rendered the items once per repeat, 8**24 times in all (a few hundred bytes hung the host)."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(24):
        schema = {"type": ["array"] * 8, "items": schema}
    modules = replayed_modules({"type": "object", "properties": {"x": schema}})
    assert "x: _t.Optional[list[list[" in modules[""]


def test_refs_cannot_multiply_the_module() -> None:
    """Definitions each a union of 32 wrappers around the next one: a $ref's hint was copied whole wherever it
    is used, so each level multiplied the module by 32 (10 KB gave 60 MB at 4 levels, 2 GB at 5; 8 levels here)."""
    levels = 8
    definitions: dict[str, Any] = {}
    for level in range(levels):
        following = {"$ref": f"#/$defs/L{level + 1}"}
        wrappers = []
        for mask in range(16):
            extra = [name for bit, name in enumerate(SCALARS) if mask >> bit & 1]
            wrappers.append({"type": ["array", *extra], "items": following})
            wrappers.append({"type": ["object", *extra], "additionalProperties": following})
        definitions[f"L{level}"] = {"anyOf": wrappers}
    definitions[f"L{levels}"] = {"type": "string"}
    schema = {"type": "object", "properties": {"x": {"$ref": "#/$defs/L0"}}, "$defs": definitions}
    notebook_size = len(json.dumps(schema))
    modules = replayed_modules(schema)
    assert sum(map(len, modules.values())) < 1_000 * notebook_size  # was 32**8 times the innermost hint


def test_refs_within_the_budget_keep_their_types() -> None:
    """The bound does not touch ordinary schemas: an enum definition used by many properties stays a Literal."""
    colours = {"enum": [f"colour{n}" for n in range(200)], "type": "string"}
    schema = {"type": "object", "properties": {f"p{n}": {"$ref": "#/$defs/Colour"} for n in range(300)},
              "$defs": {"Colour": colours}}
    modules = replayed_modules(schema)
    assert modules[""].count("_t.Literal['colour0', ") == 300  # one per parameter of the signature
