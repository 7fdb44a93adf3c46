"""OpenAPI tools called from a real sandboxed kernel against a real HTTP server on 127.0.0.1.

The kernel gets the typed SDK; the host makes the requests with credentials the kernel cannot
find (attacked from inside: its memory, environment, SDK source, help, error texts) and the
recording does not hold; the recording audits and replays without a single HTTP request.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from kernel_agent import Session
from kernel_agent.tools.calls import CallStatus
from kernel_agent.tools.openapi import OpenApiSource
from kernel_agent.verify.audit import audit_notebook
from kernel_agent.verify.replay import replay
from tests.tools.openapi_fixtures.server import ApiServer, serve, spec

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "tok-" + secrets.token_hex(16)
API_KEY = "key-" + secrets.token_hex(16)
FIXED_HEADER = "hdr-" + secrets.token_hex(16)

# Scans the kernel's whole memory, environment, SDK sources and help for anything shaped like the
# secrets (the kernel cannot know them: it looks for their shape), and writes what it found to a file.
HUNT = r"""
import contextlib, inspect, io, json, os, re, sys
shape = re.compile(rb"(?:tok|key|hdr)-[0-9a-f]{32}")
found, seen_text = set(), []
with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', buffering=0) as mem:
    for line in maps:
        span, perms = line.split()[:2]
        if not perms.startswith('r'):
            continue
        start, end = (int(x, 16) for x in span.split('-'))
        try:
            mem.seek(start)
            found.update(m.decode() for m in shape.findall(mem.read(end - start)))
        except (OSError, ValueError, OverflowError):
            pass
help_text = io.StringIO()
with contextlib.redirect_stdout(help_text):
    help(tools.pets.list_pets); help(tools.misc); help(tools)
seen_text.append(help_text.getvalue())
seen_text += [inspect.getsource(m) for n, m in list(sys.modules.items()) if n.startswith('kernel_agent_tools')]
seen_text.append(json.dumps(dict(os.environ)))
seen_text.append(open('/proc/self/environ', 'rb').read().decode('latin-1'))
for call in (tools.misc.redirect, tools.misc.fail, lambda: tools.pets.get_pet('x', Authorization='y')):
    try:
        call()
    except Exception as error:
        seen_text.append(repr(error) + repr(getattr(error, 'details', None)))
for text in seen_text:
    found.update(m.decode() for m in shape.findall(text.encode()))
with open('hunt.json', 'w') as out:
    json.dump({"found": sorted(found), "seen": len(''.join(seen_text)),
               "sdk": any('def list_pets' in t for t in seen_text)}, out)
print('hunted')
"""


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    with serve(token=TOKEN, api_key=API_KEY) as server:
        yield server


def source(api: ApiServer) -> OpenApiSource:
    return OpenApiSource(spec(), base_url=api.url + "/v1", headers={"X-Fixed": FIXED_HEADER},
                         auth={"bearerAuth": TOKEN, "key": API_KEY, "session": "s1"}, max_response_bytes=1_000_000)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recorded(api: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Session, Path]]:
    """One session for the module; the notebook is checked after it closes (last test)."""
    workspace = tmp_path_factory.mktemp("openapi-workspace")
    async with Session(workspace, tools=[source(api)], default_timeout=120) as session:
        yield session, workspace


async def test_the_kernel_calls_typed_operations_and_the_host_sends_them(
        recorded: tuple[Session, Path], api: ApiServer) -> None:
    session, _ = recorded
    result = await session.execute(
        "pets = tools.pets.list_pets(limit=2, kind=['dog'])\n"
        "made = tools.pets.create_pet(name='Rex', kind='dog')\n"
        "one = tools.pets.get_pet('../admin', X_Trace='t1')\n"
        "print(pets, made, one, tools.pets.delete_pet('7'), tools.misc.get_text(name='k'))")
    assert result.ok, result.error
    assert result.stdout.strip() == (
        "[{'id': 0, 'name': 'pet0', 'kind': 'dog'}, {'id': 1, 'name': 'pet1', 'kind': 'dog'}] "
        "{'id': 7, 'name': 'Rex', 'kind': 'dog'} {'petId': '../admin', 'trace': 't1'} None hello k")
    assert [call.tool for call in result.tool_calls] == [
        "pets.listPets", "pets.createPet", "pets.getPet", "pets.deletePet", "misc.get /text"]
    sent = api.log[-5:]
    assert [entry["raw_path"] for entry in sent] == ["/v1/pets", "/v1/pets", "/v1/pets/..%2Fadmin", "/v1/pets/7",
                                                     "/v1/text"]
    assert all(entry["headers"]["x-fixed"] == FIXED_HEADER for entry in sent)
    assert sent[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(sent[1]["body"]) == {"kind": "dog", "name": "Rex"}
    assert "/v1/admin" not in api.paths()


async def test_the_sdk_is_typed_from_the_document(recorded: tuple[Session, Path]) -> None:
    session, _ = recorded
    result = await session.execute(
        "import inspect\nprint(inspect.signature(tools.pets.list_pets))\n"
        "print(inspect.signature(tools.pets.create_pet))\nprint(tools.pets.list_pets.__doc__.splitlines()[0])")
    assert result.ok, result.error
    assert result.stdout.splitlines() == [
        "(limit: int = 2, kind: Optional[list[str]] = None) -> list[kernel_agent_tools.pets.Pet]",
        "(name: str, id: Optional[int] = None, kind: Optional[Literal['cat', 'dog']] = None, "
        "tag: Optional[str] = None) -> kernel_agent_tools.pets.Pet",
        "List the pets."]


async def test_http_errors_are_tool_errors_the_model_can_read(recorded: tuple[Session, Path]) -> None:
    session, _ = recorded
    result = await session.execute(
        "for call in (tools.misc.fail, tools.misc.redirect, tools.misc.huge, lambda: tools.pets.list_pets(limit=0)):\n"
        "    try:\n        call()\n    except ToolError as error:\n"
        "        print(type(error).__name__, error.message.splitlines()[0][:90])")
    assert result.ok, result.error
    lines = result.stdout.splitlines()
    assert lines[0] == "ToolError OpenApiCallError: GET /fail: HTTP 503 Service Unavailable: the database is down"
    assert lines[1].startswith("ToolError OpenApiCallError: GET /redirect: HTTP 302 Found: a redirect to")
    assert lines[2].startswith("ToolError OpenApiCallError: GET /huge: the answer is larger than 1000000 bytes")
    assert lines[3] == "ToolValidationError invalid arguments: limit: 0 is less than the minimum of 1"
    assert [c.status for c in result.tool_calls] == [CallStatus.ERROR] * 3 + [CallStatus.INVALID]


async def test_the_kernel_cannot_find_the_credentials(recorded: tuple[Session, Path]) -> None:
    session, workspace = recorded
    result = await session.execute(HUNT)
    assert result.ok, result.error
    report = json.loads((workspace / "hunt.json").read_text())
    assert report["sdk"] and report["seen"] > 5_000, "the hunt saw the SDK source and help"
    assert TOKEN not in report["found"] and API_KEY not in report["found"] and FIXED_HEADER not in report["found"]
    assert report["found"] == [], report["found"]


async def test_the_recording_holds_no_credentials_audits_and_replays_without_http(
        recorded: tuple[Session, Path], api: ApiServer) -> None:
    session, _ = recorded
    result = await session.execute("print(len(tools.pets.list_pets(limit=3)))")
    assert result.stdout == "3\n"
    notebook = session.notebook
    assert notebook is not None
    await session.close()
    text = notebook.read_text()
    assert "pets.listPets" in text
    for secret in (TOKEN, API_KEY, FIXED_HEADER, "s1\""):
        assert secret not in text
    assert audit_notebook(notebook).verdict == "intact"
    requests_before = len(api.log)
    report = await replay(notebook)
    assert report.faithful, report.first_divergence
    assert report.warnings == [], "the regenerated SDK is the recorded one (namespace lines from the tags included)"
    assert report.tool_calls_served >= 9
    assert len(api.log) == requests_before, "replay answered every call from the recording"
