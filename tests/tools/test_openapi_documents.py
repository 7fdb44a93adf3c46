"""OpenAPI documents that cannot become tools give a named error (OpenApiError) with the JSON pointer, quickly.

Hostile documents included: $ref cycles, reference fan-outs ("billion laughs" by $ref and by YAML
alias), huge and deep documents, remote references, weird names. No kernel starts here.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from kernel_agent.errors import OpenApiError, ToolDefinitionError
from kernel_agent.tools.openapi import OpenApiSource
from kernel_agent.tools.openapi.document import MAX_DOCUMENT_BYTES
from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.sdkgen import render_sdk
from tests.tools.openapi_fixtures.server import spec

BASE = "http://127.0.0.1:9/v1"


def with_parameter_schema(schema: Any, schemas: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "t"}, "servers": [{"url": BASE}],
            "components": {"schemas": schemas or {}},
            "paths": {"/a": {"get": {"operationId": "a", "responses": {},
                                     "parameters": [{"name": "q", "in": "query", "schema": schema}]}}}}


def error_of(document: Any, **options: Any) -> OpenApiError:
    with pytest.raises(OpenApiError) as caught:
        OpenApiSource(document, **options)
    assert isinstance(caught.value, ToolDefinitionError)  # caught with the other tool definition errors
    return caught.value


def edited(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(spec())
    change(document)
    return document


@pytest.mark.parametrize(("change", "pointer", "words"), [
    (lambda d: d.pop("paths"), "/paths", "no paths"),
    (lambda d: d.update(openapi="4.0.0"), "/openapi", "unsupported OpenAPI version"),
    (lambda d: (d.pop("openapi"), d.update(swagger="2.0")), "/swagger", "Swagger 2.0"),
    (lambda d: d["paths"]["/fail"]["get"].update(operationId="listPets"), "/paths/~1fail/get/operationId",
     "used twice"),
    (lambda d: d["paths"]["/pets"]["get"]["parameters"][0].update(schema={"$ref": "#/components/schemas/Nope"}),
     "/paths/~1pets/get/parameters/0/schema/$ref", "points at nothing"),
    (lambda d: d["paths"]["/pets"]["get"]["parameters"][0].update(schema=["not", "a", "schema"]),
     "/paths/~1pets/get/parameters/0/schema", "must be an object"),
    (lambda d: d["paths"]["/pets"]["get"]["parameters"].append({"$ref": "https://evil.example/p.json"}),
     "/paths/~1pets/get/parameters/2", "not local"),
    (lambda d: d["paths"]["/pets"]["get"]["parameters"].append({"name": "x", "in": "body"}),
     "/paths/~1pets/get/parameters/2", "'in' of path, query, header or cookie"),
    (lambda d: d["paths"].update({"/v/{id}": {"get": {"responses": {}}}}), "/paths/~1v~1{id}/get",
     "{id} is not declared"),
    (lambda d: d["paths"].update({"nope": {}}), "/paths/nope", "must start with '/'"),
    (lambda d: d["components"]["schemas"].update(Pet={"$ref": "#/components/schemas/Pet"}),
     "/components/schemas/Pet", "refers to itself"),
])
def test_an_invalid_document_is_a_named_error_with_a_pointer(change: Any, pointer: str, words: str) -> None:
    error = error_of(edited(change), base_url=BASE)
    assert error.pointer == pointer, str(error)
    assert words in str(error) and str(error).startswith(pointer + ": ")


def test_ref_cycles_that_describe_nothing_are_refused_and_recursive_schemas_work() -> None:
    cycle = {"A": {"$ref": "#/components/schemas/B"}, "B": {"anyOf": [{"$ref": "#/components/schemas/A"}]}}
    error = error_of(with_parameter_schema({"$ref": "#/components/schemas/A"}, cycle))
    assert "refers to itself" in str(error) and error.pointer in ("/components/schemas/A", "/components/schemas/B")
    tree = {"Node": {"type": "object", "properties": {"children": {"type": "array",
                                                                   "items": {"$ref": "#/components/schemas/Node"}}}}}
    source = OpenApiSource(with_parameter_schema({"$ref": "#/components/schemas/Node"}, tree))
    schema = source.tools[0].input_schema
    assert schema["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert "children: list[Node]" in render_sdk(ToolRegistry([source]))


def test_a_reference_fan_out_is_refused_quickly() -> None:
    # L59 -> 2 x L58 -> ... : 2**59 schemas if expanded. Converted once each; the fan-out is measured, not walked.
    laughs = {f"L{i}": {"allOf": [{"$ref": f"#/components/schemas/L{i - 1}"}] * 2} for i in range(1, 60)}
    laughs["L0"] = {"type": "string"}
    error = error_of(with_parameter_schema({"$ref": "#/components/schemas/L59"}, laughs))
    assert "reference fan-out" in str(error) and error.pointer.startswith("/components/schemas/L")


def test_a_yaml_alias_fan_out_is_counted_use_by_use(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    lines = ["openapi: 3.1.0", "info: {title: t}", "paths: {}", "x-a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"x-a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 10)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "too large" in str(error_of(path))
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("openapi: 3.1.0\ninfo: {title: t}\npaths: {}\nx-loop: &loop [*loop]\n")
    assert "nested deeper than" in str(error_of(recursive))


def test_huge_and_deep_documents_are_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:
        file.truncate(MAX_DOCUMENT_BYTES + 1)
    assert "byte limit" in str(error_of(huge))
    deep = tmp_path / "deep.json"
    deep.write_text('{"openapi": "3.1.0", "paths": {}, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested" in str(error_of(deep))
    node: dict[str, Any] = {}
    for _ in range(80):
        node = {"items": node}
    error = error_of(with_parameter_schema(node))
    assert "nested deeper than" in str(error) and error.pointer.startswith("/paths/~1a/get/parameters/0/schema/items")


def test_files_urls_and_yaml(tmp_path: Path) -> None:
    path = tmp_path / "api.json"
    path.write_text(json.dumps(spec()))
    assert len(OpenApiSource(path, base_url=BASE).tools) == 11
    assert "never fetched" in str(error_of("https://example.com/openapi.json"))
    assert "cannot read" in str(error_of(tmp_path / "missing.json"))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    assert "not a regular file" in str(error_of(fifo))
    assert "not a regular file" in str(error_of(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text('{"openapi": NaN}')
    assert "not valid JSON" in str(error_of(bad))
    yaml = pytest.importorskip("yaml")
    as_yaml = tmp_path / "api.yaml"
    as_yaml.write_text(yaml.safe_dump(spec()).replace("responses: {}", "responses:\n      200: {description: ok}", 1))
    assert {t.name for t in OpenApiSource(as_yaml, base_url=BASE).tools} == {t.name for t in OpenApiSource(
        spec(), base_url=BASE).tools}


def test_server_urls_and_options_are_checked() -> None:
    assert "pass base_url=" in str(error_of(spec()))  # the document has no servers
    relative = edited(lambda d: d.update(servers=[{"url": "/v1"}]))
    assert "relative" in str(error_of(relative))
    templated = edited(lambda d: d.update(servers=[{"url": "https://{region}.example.com/v1",
                                                    "variables": {"region": {"default": "eu"}}}]))
    assert OpenApiSource(templated).base_url == "https://eu.example.com/v1"
    for url, words in (("ftp://x/v1", "http:// or https://"), ("https://user:pw@x/v1", "must not hold credentials"),
                       ("https://x/v1?key=1", "no query")):
        assert words in str(error_of(spec(), base_url=url))
    assert "does not declare" in str(error_of(spec(), base_url=BASE, auth={"nope": "x"}))
    assert "line breaks" in str(error_of(spec(), base_url=BASE, auth={"bearerAuth": "a\r\nX-Evil: 1"}))
    assert "line breaks" in str(error_of(spec(), base_url=BASE, headers={"X-A": "a\nb"}))


def test_weird_names_become_identifiers_and_stay_data() -> None:
    document = with_parameter_schema({"type": "string"})
    operation = document["paths"]["/a"]["get"]
    operation["operationId"] = "class\u202e\"; import os #"
    operation["tags"] = ["Ünïcode tag; rm -rf /"]
    operation["summary"] = '"""\nimport os\n"""'
    operation["parameters"].append({"name": "from", "in": "query", "schema": {"type": "integer"}})
    operation["parameters"].append({"name": "q", "in": "header", "schema": {"type": "string"}})
    source = OpenApiSource(document)
    registry = ToolRegistry([source])
    tool = source.tools[0]
    assert registry.path(tool) == "tools.unicode_tag_rm_rf.class_import_os"
    assert [(p.name, p.json_name) for p in registry.parameters(tool)] == [
        ("q", "q"), ("from_", "from"), ("q_header", "q_header")]  # in document order
    sdk = render_sdk(registry)
    compile(sdk.split("# ==== tools.unicode_tag_rm_rf")[1].split("\n", 1)[1], "sdk", "exec")
    assert source.namespace_descriptions == {"Ünïcode tag; rm -rf /": "Ünïcode tag; rm -rf /"}


def test_a_large_generated_document_is_read_fast_enough_to_matter_little() -> None:
    paths = {f"/r{i}/{{id}}": {"get": {"operationId": f"get{i}", "tags": [f"t{i % 50}"],
                                       "parameters": [{"name": "id", "in": "path", "required": True,
                                                       "schema": {"type": "string"}}],
                                       "responses": {"200": {"description": "ok", "content": {"application/json": {
                                           "schema": {"$ref": "#/components/schemas/Item"}}}}}}}
             for i in range(2500)}
    document = {"openapi": "3.0.0", "info": {"title": "big"}, "servers": [{"url": BASE}], "paths": paths,
                "components": {"schemas": {"Item": {"type": "object", "properties": {"id": {"type": "string"}}}}}}
    source = OpenApiSource(document)
    assert len(source.tools) == 2500 and len(source.namespace_descriptions) == 50


def test_control_characters_in_texts_and_names_do_not_reach_prompts_or_terminals() -> None:
    document = with_parameter_schema({"type": "string", "description": "q\x1b]0;pwned\x07 value"})
    document["info"]["title"] = "T\x1b[2J"
    document["tags"] = [{"name": "a\x1b[31m", "description": "Red \u202eevil\x9b line\r\nsecond"}]
    operation = document["paths"]["/a"]["get"]
    operation.update(operationId="op\x1b[2Jid", tags=["a\x1b[31m"], summary="Sum\x1b[1mmary\x00")
    source = OpenApiSource(document)
    (tool,) = source.tools
    texts = [tool.name, tool.namespace or "", tool.description, json.dumps(tool.input_schema, ensure_ascii=False),
             *source.namespace_descriptions, *source.namespace_descriptions.values(), source.title]
    for text in texts:
        assert not any((ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in text), text
    assert tool.name == "op[2Jid" and tool.description.startswith("Sum[1mmary")
    assert source.namespace_descriptions == {"a[31m": "Red evil line"}


def test_starting_a_source_imports_jsonschema_off_the_event_loop() -> None:
    # The first call's validator needs jsonschema, whose first import took 1.9 s on the loop every session shares.
    import subprocess
    import sys

    code = ("import asyncio, sys\n"
            "from kernel_agent.tools.openapi import OpenApiSource\n"
            "from tests.tools.openapi_fixtures.server import spec\n"
            "source = OpenApiSource(spec(), base_url='http://127.0.0.1:9')\n"
            "before = 'jsonschema' in sys.modules\n"
            "async def main():\n"
            "    await source.start()\n"
            "    await source.close()\n"
            "asyncio.run(main())\n"
            "print(before, 'jsonschema' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split() == ["False", "True"], done.stderr
