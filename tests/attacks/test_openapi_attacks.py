"""Attacks on OpenAPI tools from inside a kernel, against a hostile HTTP server on 127.0.0.1.

* A server that echoes what it received (an echo endpoint, an error quoting the key, a redirect
  whose URL holds it) must not hand the host's credentials to the kernel or the recording.
* Arguments built to make validation super-linear (``uniqueItems`` over objects; ``format``
  checkers such as ``iri`` and ``regex``) must not hold the event loop every session shares.
* A kernel firing many calls at once must not make the host hold as many answers.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from jsonschema import Draft202012Validator
from jsonschema._utils import equal
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from kernel_agent import Session
from kernel_agent.errors import SessionOptionError
from kernel_agent.tools.bounded_validation import with_linear_unique_items
from kernel_agent.tools.openapi import OpenApiCallError, OpenApiSource
from kernel_agent.tools.openapi.options import sources_from_options

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "tok-" + secrets.token_hex(16)
API_KEY = "key/" + secrets.token_hex(16)  # a '/' so that its percent-encoded form differs
FIXED = "hdr-" + secrets.token_hex(16)
SLOW_CALLS = 40


class Hostile:
    """The server's view: what it saw, and the in-flight count of /slow."""

    def __init__(self) -> None:
        self.url = ""
        self.in_flight = 0
        self.most_in_flight = 0
        self.release: asyncio.Event | None = None
        self.bag_sizes: list[int] = []


def app(state: Hostile) -> Starlette:
    async def echo(request: Request) -> Response:  # like httpbin's /anything: everything it got
        return JSONResponse({"headers": dict(request.headers), "url": str(request.url),
                             "query": request.scope["query_string"].decode()})

    async def deny(request: Request) -> Response:
        return PlainTextResponse(f"invalid credentials {request.headers.get('authorization')} for "
                                 f"{request.url} (x-fixed {request.headers.get('x-fixed')})", status_code=401)

    async def bounce(request: Request) -> Response:
        return RedirectResponse(f"http://127.0.0.1:9/login?next={request.url.query}", status_code=302)

    async def bag(request: Request) -> Response:
        body = await request.json()
        state.bag_sizes.append(len(body["items"]))
        return JSONResponse({"count": len(body["items"])})

    async def slow(request: Request) -> Response:
        state.in_flight += 1
        state.most_in_flight = max(state.most_in_flight, state.in_flight)
        if state.release is None:
            state.release = asyncio.Event()
        if state.in_flight >= 8:  # the cap reached (or passed): let them all go
            state.release.set()
        await state.release.wait()
        state.in_flight -= 1
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/v1/echo", echo), Route("/v1/deny", deny), Route("/v1/bounce", bounce),
                             Route("/v1/bag", bag, methods=["POST"]), Route("/v1/slow", slow)])


@contextmanager
def serve(state: Hostile) -> Iterator[Hostile]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    state.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runner = uvicorn.Server(uvicorn.Config(app(state), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        runner.should_exit = runner.force_exit = True
        thread.join()
        sock.close()


def spec() -> dict[str, Any]:
    plain = {"200": {"description": "ok"}}
    return {
        "openapi": "3.1.0", "info": {"title": "hostile", "version": "1"},
        "security": [{"bearer": [], "key": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "key": {"type": "apiKey", "in": "query", "name": "api_key"}}},
        "paths": {
            "/echo": {"get": {"operationId": "echo", "tags": ["attack"], "responses": plain,
                              "parameters": [{"name": "q", "in": "query", "schema": {"type": "string"}}]}},
            "/deny": {"get": {"operationId": "deny", "tags": ["attack"], "responses": plain}},
            "/bounce": {"get": {"operationId": "bounce", "tags": ["attack"], "responses": plain}},
            "/slow": {"get": {"operationId": "slow", "tags": ["attack"], "responses": plain}},
            "/bag": {"post": {"operationId": "bag", "tags": ["attack"], "responses": plain, "requestBody": {
                "required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["items"], "properties": {
                        "items": {"type": "array", "uniqueItems": True, "items": {"type": "object"}},
                        "link": {"type": "string", "format": "iri"},
                        "template": {"type": "string", "format": "uri-template"},
                        "expression": {"type": "string", "format": "regex"},
                        "when": {"type": "string", "format": "date"}}}}}}}},
        },
    }


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with serve(Hostile()) as state:
        yield state


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(hostile: Hostile, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    api = OpenApiSource(spec(), base_url=hostile.url + "/v1", headers={"X-Fixed": FIXED},
                        auth={"bearer": TOKEN, "key": API_KEY})
    async with Session(tmp_path_factory.mktemp("openapi-attacks"), tools=[api], default_timeout=110) as started:
        yield started


def assert_no_secret(text: str) -> None:
    for secret in (TOKEN, API_KEY, FIXED, API_KEY.replace("/", "%2F"), TOKEN.partition("-")[2],
                   API_KEY.partition("/")[2], FIXED.partition("-")[2]):
        assert secret not in text


async def test_a_server_echoing_the_request_does_not_hand_the_kernel_the_credentials(session: Session) -> None:
    result = await session.execute(
        "seen = [repr(tools.attack.echo(q='x'))]\n"
        "for call in (tools.attack.deny, tools.attack.bounce):\n"
        "    try:\n        call()\n    except ToolError as error:\n        seen.append(error.message)\n"
        "print('\\n'.join(seen))")
    assert result.ok, result.error
    assert_no_secret(result.stdout)
    echoed, denied, bounced = result.stdout.splitlines()[:3]
    assert "'authorization': '[redacted]'" in echoed and "'x-fixed': '[redacted]'" in echoed
    assert "api_key=[redacted]" in echoed
    assert denied.startswith("OpenApiCallError: GET /deny: HTTP 401 Unauthorized: invalid credentials "
                             "[redacted] for ") and "(x-fixed [redacted])" in denied
    assert "a redirect to 'http://127.0.0.1:9/login?next=api_key=[redacted]'" in bounced


async def test_validation_of_hostile_arguments_stays_linear(session: Session, hostile: Hostile) -> None:
    # 20,000 distinct objects: jsonschema's own uniqueItems compares every pair (half an hour on the
    # event loop); iri and uri-template checkers parse for minutes; a regex format compiled deep groups.
    result = await session.execute(
        "items = [{'n': i} for i in range(20_000)]\n"
        "print(tools.attack.bag(items=items, link='http://' + 'a:' * 50_000, template='{' * 60_000,\n"
        "                       expression='(' * 5_000 + ')' * 5_000, when='2024-01-02'))\n"
        "for bad in ([{'n': 1}, {'n': 2}, {'n': 1.0}], [{'n': 1}] * 20_000):\n"
        "    try:\n        tools.attack.bag(items=bad)\n    except ToolValidationError as error:\n"
        "        print(error.message)\n"
        "try:\n    tools.attack.bag(items=[], when='yesterday')\nexcept ToolValidationError as error:\n"
        "    print(error.message)")
    assert result.ok, result.error
    lines = result.stdout.splitlines()
    assert lines[0] == "{'count': 20000}" and hostile.bag_sizes == [20_000]
    assert lines[1] == "invalid arguments: items: has non-unique elements (item 2 repeats an earlier one)"
    assert lines[2] == "invalid arguments: items: has non-unique elements (item 1 repeats an earlier one)"
    assert lines[3] == "invalid arguments: when: 'yesterday' is not a 'date'", "cheap formats are still checked"


async def test_many_calls_at_once_are_capped_per_source(session: Session, hostile: Hostile) -> None:
    result = await session.execute(
        "import asyncio\n"
        f"answers = await asyncio.gather(*(tools.attack.slow.aio() for _ in range({SLOW_CALLS})))\n"
        "print(len(answers), all(a == {'ok': True} for a in answers))")
    assert result.ok, result.error
    assert result.stdout == f"{SLOW_CALLS} True\n"
    assert hostile.most_in_flight == 8, "at most max_concurrent requests of one source were in flight"


async def test_the_recording_holds_no_echoed_credential(session: Session) -> None:
    notebook = session.notebook
    assert notebook is not None
    await session.close()
    text = notebook.read_text()
    assert "attack.echo" in text and "[redacted]" in text
    assert_no_secret(text)


SAMPLES: list[Any] = [1, 1.0, True, False, 0, 0.0, None, "1", "a", [], {}, [1], [1.0], [True], {"a": 1},
                      {"a": 1.0}, {"a": True}, {"b": 1}, [[1, {"a": [1]}]], [[1.0, {"a": [1.0]}]], [[True]]]


@pytest.mark.parametrize("size", [2, 3])
async def test_unique_items_agrees_with_jsonschema_equality(size: int) -> None:
    # The oracle is jsonschema's equality over every pair (its own uniq() sorts first and then compares
    # neighbours only, so it misses [1] == [1.0] when [True] sorts between them).
    bounded = with_linear_unique_items(Draft202012Validator)({"uniqueItems": True})
    for items in itertools.permutations(SAMPLES, size):
        unique = not any(equal(a, b) for a, b in itertools.combinations(items, 2))
        assert bounded.is_valid(list(items)) == unique, items


async def test_a_secret_pasted_into_an_option_is_not_repeated_in_errors(tmp_path: Path) -> None:
    # base64's '=' padding makes a pasted secret read as NAME=VALUE: the NAME is most of the secret.
    (tmp_path / "one.json").write_text(json.dumps(spec()))
    (tmp_path / "two.json").write_text(json.dumps(spec()))
    one, two = str(tmp_path / "one.json"), str(tmp_path / "two.json")
    pasted = base64.b64encode(secrets.token_bytes(16)).decode()
    assert pasted.endswith("=")
    stem = pasted.rstrip("=")
    attempts = [([one], [pasted]), ([one], [f"{stem[:10]}={stem[10:]}"]), ([one, two], [pasted]),
                ([one, two], [f"{stem[:10]}={stem[10:]}"])]
    for documents, auth in attempts:
        with pytest.raises(SessionOptionError) as caught:
            sources_from_options(documents, [], auth)
        message = str(caught.value)
        assert stem[:10] not in message and stem[10:] not in message, message
    with pytest.raises(SessionOptionError, match="the document declares: bearer, key"):
        sources_from_options([one], [], [f"{stem[:10]}={stem[10:]}"])
    made = sources_from_options([f"{one}@http://127.0.0.1:9"], [], ["bearer=env:T"], environ={"T": TOKEN})
    assert len(made) == 1 and not made[0].started


async def test_each_session_gets_its_own_source_built_once_per_process(tmp_path: Path, hostile: Hostile) -> None:
    # kernel-agent mcp makes the tools for every client session on the loop all clients share: a large
    # document must not be planned again each time, and the sessions must not share an HTTP client.
    (tmp_path / "api.json").write_text(json.dumps(spec()))
    option = f"{tmp_path / 'api.json'}@{hostile.url}/v1"
    [first] = sources_from_options([option], [], ["bearer=env:T", "key=env:K"], environ={"T": TOKEN, "K": API_KEY})
    [second] = sources_from_options([option], [], ["bearer=env:T", "key=env:K"], environ={"T": TOKEN, "K": API_KEY})
    assert first is not second and [t.input_schema for t in first.tools] == [t.input_schema for t in second.tools]
    assert all(a.validate is b.validate for a, b in zip(first.tools, second.tools, strict=True)), "shared"
    echo = {tool.name: tool for tool in second.tools}["echo"]
    async with first:
        assert first.started and not second.started
    async with second:
        answer = await echo.invoke({"q": "after the other closed"})
    assert answer["query"] == "q=after+the+other+closed&api_key=[redacted]"
    [other] = sources_from_options([option], [], ["bearer=env:T"], environ={"T": "another-token-value"})
    assert other.tools[0].validate is not first.tools[0].validate, "other credentials: built anew"


async def test_the_http_clients_log_line_holds_no_credential(hostile: Hostile,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    # httpx2 logs each request's full URL at INFO: with the key in the query, a host logging at INFO wrote it.
    async with OpenApiSource(spec(), base_url=hostile.url + "/v1", auth={"bearer": TOKEN, "key": API_KEY}) as api:
        with caplog.at_level(logging.INFO, logger="httpx2"):
            await {tool.name: tool for tool in api.tools}["echo"].invoke({"q": "logged"})
    assert "/v1/echo?q=logged&api_key=[redacted]" in caplog.text
    assert_no_secret(caplog.text)


@pytest.mark.parametrize("template", ["/%2e%2e/admin", "/%2E%2E/%2e%2e/etc", "/.%2e/x", "/../v1x/pets"])
async def test_a_document_path_cannot_climb_out_of_the_base_path(hostile: Hostile, template: str) -> None:
    document = {"openapi": "3.1.0", "info": {"title": "t"},
                "paths": {template: {"get": {"operationId": "climb", "responses": {}}}}}
    async with OpenApiSource(document, base_url=hostile.url + "/v1", auth={}) as api:
        with pytest.raises(OpenApiCallError, match="would leave the API's base URL"):
            await api.tools[0].invoke({})
