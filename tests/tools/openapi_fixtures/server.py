"""A real HTTP API on 127.0.0.1 for the OpenAPI tests (starlette, served by uvicorn in a thread), and its spec.

Every request is logged (method, raw path, query, headers) so tests can see what reached the server.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

GZIP_BOMB = gzip.compress(b"0" * (64 * 1024 * 1024), compresslevel=9)


@dataclass
class ApiServer:
    """A running server: its base URL and the requests it received."""

    url: str
    log: list[dict[str, Any]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [entry["raw_path"] for entry in self.log]


def make_app(server: ApiServer, token: str, api_key: str, other_origin: str) -> Starlette:
    async def logged(request: Request) -> None:
        server.log.append({"method": request.method, "raw_path": request.scope["raw_path"].decode(),
                           "query": request.scope["query_string"].decode(), "headers": dict(request.headers),
                           "body": (await request.body()).decode("utf-8", "replace")})

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {token}"

    async def pets(request: Request) -> Response:
        await logged(request)
        if not authorised(request):
            return JSONResponse({"error": "bad or missing token"}, status_code=401)
        if request.method == "POST":
            return JSONResponse({"id": 7, **(await request.json())}, status_code=201)
        limit = int(request.query_params.get("limit", "2"))
        kinds = request.query_params.getlist("kind")
        return JSONResponse([{"id": i, "name": f"pet{i}", "kind": kinds[i % len(kinds)] if kinds else "cat"}
                             for i in range(limit)])

    async def pet(request: Request) -> Response:
        await logged(request)
        if not authorised(request):
            return JSONResponse({"error": "bad or missing token"}, status_code=401)
        if request.method == "DELETE":
            return Response(status_code=204)
        return JSONResponse({"petId": request.path_params["pet_id"], "trace": request.headers.get("x-trace")})

    async def admin(request: Request) -> Response:
        await logged(request)
        return JSONResponse({"admin": True})

    async def fail(request: Request) -> Response:
        await logged(request)
        return PlainTextResponse("the database is down\n" + "x" * 5000, status_code=503)

    async def text(request: Request) -> Response:
        await logged(request)
        return PlainTextResponse(f"hello {request.query_params.get('name', '')}")

    async def keyed(request: Request) -> Response:
        await logged(request)
        ok = request.query_params.get("api_key") == api_key and request.cookies.get("session") == "s1"
        return JSONResponse({"ok": ok, "session": request.cookies.get("session"),
                             "keys": request.query_params.getlist("api_key")})

    async def redirect(request: Request) -> Response:
        await logged(request)
        return RedirectResponse(f"{other_origin}/v1/pets", status_code=302)

    async def huge(request: Request) -> Response:
        await logged(request)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4096):  # 256 MB if nobody stops reading
                yield b"[" + b"1," * 32767 + b"1]"

        return StreamingResponse(chunks(), media_type="application/json")

    async def bomb(request: Request) -> Response:
        await logged(request)  # 64 MB of zeros in about 64 kB of gzip
        return Response(GZIP_BOMB, media_type="application/json", headers={"Content-Encoding": "gzip"})

    async def hang(request: Request) -> Response:
        await logged(request)
        await asyncio.Event().wait()  # never answers; the client gives up (its timeout) and disconnects
        return Response()

    return Starlette(routes=[
        Route("/v1/pets", pets, methods=["GET", "POST"]),
        Route("/v1/pets/{pet_id:path}", pet, methods=["GET", "DELETE"]),
        Route("/v1/admin", admin), Route("/v1/fail", fail), Route("/v1/text", text), Route("/v1/keyed", keyed),
        Route("/v1/redirect", redirect), Route("/v1/huge", huge), Route("/v1/hang", hang), Route("/v1/bomb", bomb),
    ])


@contextmanager
def serve(token: str = "", api_key: str = "", other_origin: str = "http://127.0.0.1:9") -> Iterator[ApiServer]:
    """Serve the app on a free port of 127.0.0.1 until the block ends.

    The socket listens before the thread starts, so requests made right away wait in its backlog.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without, the answer's second segment waits out the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = ApiServer(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = uvicorn.Config(make_app(server, token, api_key, other_origin), log_level="warning", lifespan="off")
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        runner.should_exit = runner.force_exit = True  # the hanging handler never ends by itself
        thread.join()
        sock.close()


def spec() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the app (servers left out: the tests give base_url)."""
    pet = {"$ref": "#/components/schemas/Pet"}
    ok_json = lambda schema: {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}  # noqa: E731
    return {
        "openapi": "3.0.3",
        "info": {"title": "Pet Store", "version": "1"},
        "tags": [{"name": "pets", "description": "Everything about your pets.\nSecond line."},
                 {"name": "misc", "description": "Odds and ends."}],
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"},
                                "key": {"type": "apiKey", "in": "query", "name": "api_key"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "session"}},
            "schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {
                "id": {"type": "integer"}, "name": {"type": "string", "description": "The pet's name."},
                "kind": {"type": "string", "enum": ["cat", "dog"]}, "tag": {"type": "string", "nullable": True}}}},
        },
        "paths": {
            "/pets": {
                "get": {"operationId": "listPets", "tags": ["pets"], "summary": "List the pets.",
                        "parameters": [
                            {"name": "limit", "in": "query", "description": "How many.",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 2}},
                            {"name": "kind", "in": "query", "schema": {"type": "array",
                                                                        "items": {"type": "string"}}}],
                        "responses": ok_json({"type": "array", "items": pet})},
                "post": {"operationId": "createPet", "tags": ["pets"], "summary": "Add a pet.",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": pet}}},
                         "responses": {"201": {"description": "made", "content": {"application/json":
                                                                                  {"schema": pet}}}}},
            },
            "/pets/{petId}": {
                "parameters": [{"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {"operationId": "getPet", "tags": ["pets"], "summary": "One pet.",
                        "parameters": [{"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                                       {"name": "Authorization", "in": "header", "schema": {"type": "string"}}],
                        "responses": ok_json({"type": "object"})},
                "delete": {"operationId": "deletePet", "tags": ["pets"], "summary": "Remove a pet.",
                           "responses": {"204": {"description": "gone"}}},
            },
            "/fail": {"get": {"operationId": "fail", "tags": ["misc"], "responses": {}}},
            "/text": {"get": {"tags": ["misc"], "parameters": [{"name": "name", "in": "query",
                                                                 "schema": {"type": "string"}}],
                              "responses": {"200": {"description": "text"}}}},
            "/keyed": {"get": {"operationId": "keyed", "tags": ["misc"], "security": [{"key": [], "session": []}],
                               "parameters": [{"name": "api_key", "in": "query", "schema": {"type": "string"}}],
                               "responses": {}}},
            "/redirect": {"get": {"operationId": "redirect", "tags": ["misc"], "responses": {}}},
            "/huge": {"get": {"operationId": "huge", "tags": ["misc"], "responses": {}}},
            "/hang": {"get": {"operationId": "hang", "tags": ["misc"], "responses": {}}},
            "/bomb": {"get": {"operationId": "bomb", "tags": ["misc"], "responses": {}}},
        },
    }
