"""OpenAPI tool source benchmarks: reading a large document, and what the OpenAPI layer adds to a call.

Each figure sits next to a baseline measured in the same run:

* building an ``OpenApiSource`` from a generated 2,500-operation document (5 parameters and a
  shared response schema each), against ``json.loads`` of the same document's text;
* one operation called on the host (``Tool.invoke``: validation, the request built from the
  plan, the answer read bounded and parsed), p50, against the same GET with a bare httpx2 client;
* a kernel cell calling the operation through the SDK, p50, against a cell calling a plain Python
  tool that makes the same GET on the host.

The API is a starlette app served by uvicorn on 127.0.0.1 in a thread. Timings are printed, never
asserted. Run: ``python bench/bench_openapi.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx2  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from _benchlib import Row, bench_main, make_row, median  # noqa: E402
from kernel_agent import OpenApiSource, Session, tool  # noqa: E402

BENCHMARK = "openapi"
OPERATIONS = 2500


def generated_document(operations: int) -> dict[str, Any]:
    """``operations`` GET operations in 50 tags, each with a path and four query parameters."""
    item = {"$ref": "#/components/schemas/Item"}
    paths = {}
    for i in range(operations):
        parameters = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
        parameters += [{"name": f"q{k}", "in": "query", "description": f"Filter {k}.",
                        "schema": {"type": "integer", "minimum": 0}} for k in range(4)]
        paths[f"/r{i}/{{id}}"] = {"get": {
            "operationId": f"getResource{i}", "tags": [f"area{i % 50}"], "summary": f"Get resource {i}.",
            "parameters": parameters,
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": item}}}}}}
    return {"openapi": "3.0.3", "info": {"title": "Generated"}, "servers": [{"url": "http://127.0.0.1:9"}],
            "tags": [{"name": f"area{t}", "description": f"Area {t}."} for t in range(50)], "paths": paths,
            "components": {"schemas": {"Item": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}, "size": {"type": "integer"}}}}}}


ITEM_DOCUMENT = {
    "openapi": "3.0.3", "info": {"title": "Items"},
    "paths": {"/items/{id}": {"get": {"operationId": "getItem", "tags": ["items"], "parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {
            "type": "object"}}}}}}}}}


@contextmanager
def serve() -> Iterator[str]:
    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["id"], "name": "item", "size": 3})

    sock = socket.socket()
    # Accepted connections inherit it: without, the answer's second segment waits out the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/items/{id}", item)]), log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def build_times(rounds: int) -> tuple[float, float]:
    document = generated_document(OPERATIONS)
    text = json.dumps(document)
    parse, build = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        json.loads(text)
        parse.append(time.perf_counter() - start)
        start = time.perf_counter()
        source = OpenApiSource(document)
        build.append(time.perf_counter() - start)
        assert len(source.tools) == OPERATIONS
    return median(build), median(parse)


async def host_calls(url: str, rounds: int) -> tuple[float, float]:
    async with OpenApiSource(ITEM_DOCUMENT, base_url=url) as source, httpx2.AsyncClient() as client:
        (get_item,) = source.tools
        through, bare = [], []
        for i in range(rounds):
            start = time.perf_counter()
            await get_item.invoke({"id": str(i)})
            through.append(time.perf_counter() - start)
            start = time.perf_counter()
            (await client.get(f"{url}/items/{i}")).json()
            bare.append(time.perf_counter() - start)
    return median(through), median(bare)


async def kernel_calls(url: str, rounds: int) -> tuple[float, float]:
    client = httpx2.Client()

    @tool(namespace="plain")
    def get_item(id: str) -> dict[str, Any]:
        """The same GET, made by a plain Python tool."""
        return dict(client.get(f"{url}/items/{id}").json())

    through, plain = [], []
    with tempfile.TemporaryDirectory() as workspace:
        source = OpenApiSource(ITEM_DOCUMENT, base_url=url)
        async with Session(workspace, tools=[source, get_item]) as session:
            for i in range(rounds):
                start = time.perf_counter()
                await session.execute(f"tools.items.get_item('{i}')")
                through.append(time.perf_counter() - start)
                start = time.perf_counter()
                await session.execute(f"tools.plain.get_item('{i}')")
                plain.append(time.perf_counter() - start)
    client.close()
    return median(through), median(plain)


def run(quick: bool) -> list[Row]:
    rounds = 20 if quick else 100
    build, parse = build_times(2 if quick else 5)
    with serve() as url:
        host, bare = asyncio.run(host_calls(url, rounds))
        cell, plain = asyncio.run(kernel_calls(url, rounds // 2))
    ms = 1000.0
    return [
        make_row(BENCHMARK, f"OpenApiSource of a {OPERATIONS}-operation document", build * ms, "ms",
                 baseline=parse * ms, baseline_name="json.loads of the document's text",
                 note="read, checked, schemas converted, one Tool per operation (validators made at first call)"),
        make_row(BENCHMARK, "one operation called on the host (Tool.invoke) p50", host * ms, "ms",
                 baseline=bare * ms, baseline_name="the same GET with a bare httpx2 client p50"),
        make_row(BENCHMARK, "a cell calling the operation through the SDK p50", cell * ms, "ms",
                 baseline=plain * ms, baseline_name="a cell calling a plain Python tool making the same GET p50"),
    ]


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "fewer rounds")
