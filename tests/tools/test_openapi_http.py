"""OpenApiSource's requests against a real HTTP server on 127.0.0.1: parameters, bodies, credentials, bounds.

The tools are invoked on the host here (Tool.invoke, as the bridge does); tests/tools/test_openapi_kernel.py
calls them from a real sandboxed kernel.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from kernel_agent.tools.openapi import OpenApiCallError, OpenApiSource
from kernel_agent.tools.tool import ArgumentsInvalid, Tool
from tests.tools.openapi_fixtures.server import ApiServer, serve, spec

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "tok-" + secrets.token_hex(16)
API_KEY = "key-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[ApiServer]:
    """Another origin (another port): where the redirect points."""
    with serve(token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def api(elsewhere: ApiServer) -> Iterator[ApiServer]:
    with serve(token=TOKEN, api_key=API_KEY, other_origin=elsewhere.url) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def source(api: ApiServer) -> AsyncIterator[OpenApiSource]:
    async with OpenApiSource(spec(), base_url=api.url + "/v1", auth={"bearerAuth": TOKEN, "key": API_KEY,
                                                                     "session": "s1"},
                             max_response_bytes=1_000_000, timeout=5) as started:
        yield started


def tools(source: OpenApiSource) -> dict[str, Tool]:
    return {tool.name: tool for tool in source.tools}


def last(api: ApiServer) -> dict[str, Any]:
    return api.log[-1]


async def test_operations_become_tools_with_namespaces_flags_and_schemas(source: OpenApiSource) -> None:
    found = tools(source)
    assert set(found) == {"listPets", "createPet", "getPet", "deletePet", "fail", "get /text", "keyed",
                          "redirect", "huge", "hang", "bomb"}
    assert found["listPets"].namespace == "pets" and found["fail"].namespace == "misc"
    assert source.namespace_descriptions == {"pets": "Everything about your pets.", "misc": "Odds and ends."}
    assert found["listPets"].read_only and not found["listPets"].destructive
    assert found["deletePet"].destructive and not found["deletePet"].read_only
    assert not found["createPet"].read_only and not found["createPet"].destructive
    assert found["listPets"].source == "openapi:Pet Store"
    listing = found["listPets"].input_schema
    assert listing["properties"]["limit"] == {"description": "How many.", "type": "integer", "default": 2,
                                              "minimum": 1, "maximum": 100}
    assert found["listPets"].output_schema == {"type": "array", "items": {"$ref": "#/$defs/Pet"},
                                               "$defs": {"Pet": found["createPet"].input_schema["$defs"]["Pet"]}}
    create = found["createPet"].input_schema  # the JSON body's fields, flattened
    assert set(create["properties"]) == {"id", "name", "kind", "tag"} and create["required"] == ["name"]
    assert create["properties"]["tag"]["type"] == ["string", "null"]  # OpenAPI 3.0 nullable
    get = found["getPet"].input_schema
    assert set(get["properties"]) == {"petId", "X-Trace"}, "an Authorization header parameter is never exposed"
    assert get["required"] == ["petId"]
    assert "List the pets." in found["listPets"].description and "HTTP: GET /pets" in found["listPets"].description


async def test_query_path_header_and_body_parameters_reach_the_server(source: OpenApiSource, api: ApiServer) -> None:
    found = tools(source)
    pets = await found["listPets"].invoke({"limit": 3, "kind": ["dog", "cat"]})
    assert pets == [{"id": 0, "name": "pet0", "kind": "dog"}, {"id": 1, "name": "pet1", "kind": "cat"},
                    {"id": 2, "name": "pet2", "kind": "dog"}]
    assert last(api)["query"] == "limit=3&kind=dog&kind=cat"
    assert last(api)["headers"]["authorization"] == f"Bearer {TOKEN}"
    made = await found["createPet"].invoke({"name": "Rex", "kind": "dog", "tag": None})
    assert made == {"id": 7, "name": "Rex", "kind": "dog"}
    assert last(api)["headers"]["content-type"] == "application/json"
    got = await found["getPet"].invoke({"petId": "p 1", "X-Trace": "t-1"})
    assert got == {"petId": "p 1", "trace": "t-1"} and last(api)["raw_path"] == "/v1/pets/p%201"
    assert await found["deletePet"].invoke({"petId": "p1"}) is None
    assert await found["get /text"].invoke({"name": "é&x=1"}) == "hello é&x=1"


async def test_arguments_are_validated_against_the_schema(source: OpenApiSource, api: ApiServer) -> None:
    before = len(api.log)
    for arguments in ({"limit": 0}, {"limit": "3"}, {"nope": 1}):
        with pytest.raises(ArgumentsInvalid):
            await tools(source)["listPets"].invoke(arguments)
    with pytest.raises(ArgumentsInvalid):
        await tools(source)["createPet"].invoke({"kind": "dog"})  # name is required
    assert len(api.log) == before, "nothing invalid was sent"


@pytest.mark.parametrize("value", ["../admin", "..", ".", "a/b?x=1#f", "%2e%2e/admin", "..%2Fadmin", "\\..\\admin"])
async def test_path_values_cannot_leave_their_segment(source: OpenApiSource, api: ApiServer, value: str) -> None:
    got = await tools(source)["getPet"].invoke({"petId": value})
    assert got["petId"] == value, "the server got the value back whole, as one segment"
    assert last(api)["raw_path"].startswith("/v1/pets/") and "/" not in last(api)["raw_path"][len("/v1/pets/"):]
    assert "/v1/admin" not in api.paths()


async def test_an_error_status_is_a_call_error_with_a_bounded_excerpt(source: OpenApiSource) -> None:
    with pytest.raises(OpenApiCallError) as caught:
        await tools(source)["fail"].invoke({})
    assert caught.value.status == 503
    message = str(caught.value)
    assert message.startswith("GET /fail: HTTP 503 Service Unavailable: the database is down")
    assert message.endswith(" ...") and len(message) < 1_200


async def test_credentials_come_from_the_host_and_win_over_parameters(source: OpenApiSource, api: ApiServer) -> None:
    # The API key's query parameter is filled by the host, so the tool does not offer it.
    assert "api_key" not in tools(source)["keyed"].input_schema["properties"]
    with pytest.raises(ArgumentsInvalid):
        await tools(source)["keyed"].invoke({"api_key": "chosen-by-the-kernel"})
    answer = await tools(source)["keyed"].invoke({})
    # The server echoed the key: the answer has it redacted ("s1" is too short to be taken for a secret).
    assert answer == {"ok": True, "session": "s1", "keys": ["[redacted]"]}
    assert last(api)["query"] == f"api_key={API_KEY}", "the host sent the key"
    assert TOKEN not in str(last(api)["headers"]), "the bearer scheme is not asked for by this operation"
    # A header parameter named like the credential's header is not offered; a cookie value cannot add a cookie.
    assert "Authorization" not in tools(source)["getPet"].input_schema["properties"]


async def test_a_redirect_elsewhere_is_not_followed(source: OpenApiSource, elsewhere: ApiServer) -> None:
    with pytest.raises(OpenApiCallError) as caught:
        await tools(source)["redirect"].invoke({})
    assert caught.value.status == 302 and "not followed" in str(caught.value)
    assert elsewhere.log == [], "the other origin got no request, so no credentials"


async def test_a_huge_answer_is_cut_off(source: OpenApiSource) -> None:
    with pytest.raises(OpenApiCallError) as caught:
        await tools(source)["huge"].invoke({})
    assert "larger than 1000000 bytes" in str(caught.value)


async def test_a_compressed_answer_is_bounded_as_it_is_inflated(source: OpenApiSource) -> None:
    with pytest.raises(OpenApiCallError) as caught:
        await tools(source)["bomb"].invoke({})  # 64 kB on the wire, 64 MB inflated
    assert "larger than 1000000 bytes" in str(caught.value)


async def test_a_server_that_never_answers_times_out(api: ApiServer) -> None:
    async with OpenApiSource(spec(), base_url=api.url + "/v1", timeout=0.5) as quick:
        with pytest.raises(OpenApiCallError) as caught:
            await tools(quick)["hang"].invoke({})
    assert "no complete answer within 0.5 s" in str(caught.value)


async def test_error_messages_never_hold_the_credentials(api: ApiServer) -> None:
    # A query API key is in the URL: an unreachable server's error must not show the URL.
    async with OpenApiSource(spec(), base_url="http://127.0.0.1:9/v1", auth={"key": API_KEY, "session": "s1"}) as down:
        with pytest.raises(OpenApiCallError) as caught:
            await tools(down)["keyed"].invoke({})
    text = str(caught.value)
    assert text == "GET /keyed: the request to http://127.0.0.1:9 failed (ConnectError)"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_closed_source_refuses_calls(api: ApiServer) -> None:
    closed = OpenApiSource(spec(), base_url=api.url + "/v1")
    assert not closed.started
    with pytest.raises(OpenApiCallError, match="closed"):
        await tools(closed)["fail"].invoke({})


async def test_values_cannot_inject_headers_or_query_parameters(source: OpenApiSource, api: ApiServer) -> None:
    before = len(api.log)
    with pytest.raises(OpenApiCallError) as caught:
        await tools(source)["getPet"].invoke({"petId": "1", "X-Trace": "t\r\nAuthorization: Bearer stolen"})
    assert str(caught.value) == "GET /pets/{petId}: header parameter 'X-Trace' holds a line break or NUL"
    assert len(api.log) == before, "nothing was sent"
    pets = await tools(source)["listPets"].invoke({"limit": 1, "kind": ["dog&limit=50&kind=cat"]})
    assert pets == [{"id": 0, "name": "pet0", "kind": "dog&limit=50&kind=cat"}]
    assert last(api)["query"] == "limit=1&kind=dog%26limit%3D50%26kind%3Dcat"
