"""Tool calls from real sandboxed kernels to the host, over the comm bridge."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
import threading
from pathlib import Path
from typing import Literal

import ipykernel
import pytest
from ipykernel.kernelbase import Kernel
from pydantic import BaseModel

from kernel_agent import Session
from kernel_agent.kernel.agent_kernel import AgentKernel
from kernel_agent.tools.calls import CallStatus
from kernel_agent.tools.policy import CallRequest, Decision, ask_for_destructive
from kernel_agent.tools.tool import tool, tool_from_schema


class Point(BaseModel):
    """A point."""

    x: float
    y: float


@dataclasses.dataclass
class Reading:
    sensor: str
    taken: dt.datetime
    value: decimal.Decimal


@tool(read_only=True)
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@tool(namespace="geo")
def midpoint(p: Point, q: Point) -> Point:
    """The point halfway between p and q."""
    return Point(x=(p.x + q.x) / 2, y=(p.y + q.y) / 2)


async def slow_echo(text: str, delay: float = 0.2) -> str:
    """Echo ``text`` after ``delay`` seconds (async, so calls overlap on the host)."""
    await asyncio.sleep(delay)
    return text


def fail(message: str) -> None:
    """Always raises."""
    raise ValueError(message)


def big(megabytes: int, kind: Literal["text", "bytes", "rows"] = "text") -> object:
    """A large result."""
    if kind == "bytes":
        return bytes(range(256)) * (megabytes * 4096)
    if kind == "rows":
        return [{"id": i, "name": f"row {i}", "score": i * 0.5} for i in range(megabytes * 20_000)]
    return "x" * (megabytes * 1024**2)


def odd_values() -> dict[str, object]:
    """Values JSON cannot carry natively."""
    return {
        "when": dt.datetime(2026, 11, 22, 15, 30, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 1, 2),
        "span": dt.timedelta(minutes=90),
        "amount": decimal.Decimal("12.34"),
        "tags": {"a", "b"},
        "pair": (1, 2),
        "blob": b"\x00\xffbinary",
        "keys": {1: "one", (2, 3): "pair"},
        "reading": Reading("t1", dt.datetime(2026, 1, 1, 12, 0), decimal.Decimal("0.5")),
        "point": Point(x=1, y=2),
        "path": Path("/data/file.csv"),
    }


def describe(value: object) -> str:
    """Names the type of each argument as the host received it."""
    if isinstance(value, dict):
        return ",".join(f"{k}:{type(v).__name__}" for k, v in sorted(value.items()))
    return type(value).__name__


@tool(destructive=True)
def delete_everything(confirm: bool) -> str:
    """A destructive tool."""
    return "deleted"


OPENAI_DEFINITION = {"type": "function", "function": {
    "name": "search-docs", "description": "Search the docs.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "default": 3}},
                   "required": ["query"]}}}
ANTHROPIC_DEFINITION = {"name": "get_stock", "description": "Stock level of an item.",
                        "input_schema": {"type": "object", "properties": {"sku": {"type": "string", "enum": ["A1", "B2"]}},
                                         "required": ["sku"]}}
BARE_DEFINITION = {"name": "ping", "description": "Ping.", "input_schema": {"type": "object", "properties": {}}}

ALL_TOOLS = [
    add, midpoint, slow_echo, fail, big, odd_values, describe,
    tool_from_schema(OPENAI_DEFINITION, lambda query, limit=3: [f"{query} {i}" for i in range(limit)]),
    tool_from_schema(ANTHROPIC_DEFINITION, lambda sku: {"A1": 5, "B2": 0}[sku], namespace="shop"),
    tool_from_schema(BARE_DEFINITION, lambda: "pong"),
]


@pytest.fixture
async def tooled(workspace: Path) -> Session:
    async with Session(workspace, tools=ALL_TOOLS, tool_timeout=5) as session:
        yield session  # type: ignore[misc]


async def test_every_kind_of_tool_is_callable_from_a_cell(tooled: Session) -> None:
    """Plain, decorated, async, pydantic-typed and JSON-schema (OpenAI, Anthropic, bare) tools all work."""
    code = ("print(tools.add(2, b=40), tools.slow_echo('hi', delay=0), tools.search_docs('q', limit=2),"
            " tools.shop.get_stock('A1'), tools.ping())\n"
            "m = tools.geo.midpoint({'x': 0, 'y': 0}, {'x': 2, 'y': 4})\nprint(m.x, m.y, type(m).__name__, m)")
    result = await tooled.execute(code)
    assert result.ok, result.error
    assert result.stdout.splitlines() == ["42 hi ['q 0', 'q 1'] 5 pong", "1.0 2.0 Record Point(x=1.0, y=2.0)"]
    assert [call.tool for call in result.tool_calls] == [
        "add", "slow_echo", "search-docs", "shop.get_stock", "ping", "geo.midpoint"]
    assert all(call.status is CallStatus.OK for call in result.tool_calls)


async def test_calls_from_sync_async_and_threads(tooled: Session) -> None:
    """The same tool works from plain code, from await/gather, and from threads the cell starts."""
    code = """
import asyncio, threading
sync_value = tools.add(1)
async_value = await tools.add.aio(2)
gathered = await asyncio.gather(*(tools.add.aio(i) for i in range(50)))
from_threads = []
threads = [threading.Thread(target=lambda i=i: from_threads.append(tools.add(i, b=100))) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(sync_value, async_value, sum(gathered), sorted(from_threads) == [100 + i for i in range(8)])
"""
    result = await tooled.execute(code)
    assert result.ok, result.error
    assert result.stdout.strip() == f"2 3 {sum(i + 1 for i in range(50))} True"
    assert len(result.tool_calls) == 60


async def test_gathered_calls_run_concurrently_on_the_host(workspace: Path) -> None:
    """asyncio.gather over an async host tool overlaps the calls on the host."""
    running, most = 0, 0

    async def tracked(i: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return i

    async with Session(workspace, tools=[tracked]) as session:
        result = await session.execute("import asyncio\nsum(await asyncio.gather(*(tools.tracked.aio(i) for i in range(40))))")
    assert result.result == str(sum(range(40)))
    assert most > 10


async def test_five_thousand_gathered_calls_in_one_cell(tooled: Session) -> None:
    """Gathered calls leave in batches of at most 256 (the kernel's in-flight limit), which the host takes whole;
    batches with larger arguments (measured off the loop) are served and recorded in the cell too."""
    code = ("import asyncio\n"
            "small = await asyncio.gather(*(tools.add.aio(i) for i in range(5000)))\n"
            "texts = await asyncio.gather(*(tools.slow_echo.aio('x' * 2000, delay=0) for _ in range(300)))\n"
            "sum(small), {len(t) for t in texts}")
    rejected = tooled.bridge.rejected_messages
    result = await tooled.execute(code)
    assert result.ok, result.error
    assert result.result == f"({sum(i + 1 for i in range(5000))}, {{2000}})"
    assert len(result.tool_calls) == 5300 and {c.status for c in result.tool_calls} == {CallStatus.OK}
    assert tooled.bridge.rejected_messages == rejected


async def test_a_thousand_calls_in_a_loop(tooled: Session) -> None:
    """1,000 synchronous calls in a loop all succeed and are all recorded, in order."""
    result = await tooled.execute("total = 0\nfor i in range(1000):\n    total += tools.add(i)\ntotal")
    assert result.result == str(sum(i + 1 for i in range(1000)))
    assert len(result.tool_calls) == 1000
    assert [c.result for c in result.tool_calls[:3]] == [1, 2, 3]


async def test_tool_exceptions_arrive_as_tool_errors(tooled: Session) -> None:
    """A host exception becomes ToolError naming the tool and carrying the message; the kernel goes on."""
    result = await tooled.execute("try:\n    tools.fail('disk is full')\nexcept ToolError as e:\n"
                                  "    print(type(e).__name__, e.tool, e.message)")
    assert result.stdout.strip() == "ToolError fail ValueError: disk is full"
    assert result.tool_calls[0].status is CallStatus.ERROR
    assert "disk is full" in result.tool_calls[0].error.message  # type: ignore[union-attr]


async def test_validation_errors_name_the_field_and_type(tooled: Session) -> None:
    """Wrong argument types raise ToolValidationError naming the field and what was expected."""
    result = await tooled.execute("try:\n    tools.add('seven')\nexcept ToolValidationError as e:\n"
                                  "    print(e.message)\n    print(e.details)")
    message, details = result.stdout.splitlines()
    assert "a:" in message and "integer" in message
    assert "'field': 'a'" in details
    schema = await tooled.execute("tools.shop.get_stock('Z9')")
    assert schema.error is not None and schema.error.ename == "ToolValidationError"
    assert "'Z9' is not one of ['A1', 'B2']" in schema.error.evalue
    missing = await tooled.execute("tools.add()")
    assert missing.error is not None and missing.error.ename == "TypeError"  # caught by the real signature


async def test_large_results(tooled: Session) -> None:
    """Results of 10 MB and more arrive intact: text, bytes (as buffers) and many records."""
    result = await tooled.execute(
        "t = tools.big(12)\nb = tools.big(12, kind='bytes')\nr = tools.big(2, kind='rows')\n"
        "print(len(t), len(b), b[:3], len(r), r[-1])")
    assert result.ok, result.error
    assert result.stdout.strip() == (f"{12 * 1024**2} {12 * 1024**2} b'\\x00\\x01\\x02' 40000 "
                                     "{'id': 39999, 'name': 'row 39999', 'score': 19999.5}")


async def test_values_that_are_not_json_native(tooled: Session) -> None:
    """datetimes, decimals, sets, tuples, bytes, non-string keys, dataclasses and models keep their types."""
    result = await tooled.execute(
        "v = tools.odd_values()\n"
        "print({k: type(x).__name__ for k, x in sorted(v.items())})\n"
        "print(v['when'].isoformat(), v['amount'] + 1, sorted(v['tags']), v['keys'][(2, 3)], v['reading'].value)\n"
        "import datetime, decimal\n"
        "print(tools.describe({'d': datetime.date(2026, 1, 1), 'n': decimal.Decimal('1.5'), 'b': b'x', 's': {1}}))")
    assert result.ok, result.error
    types_line, values_line, args_line = result.stdout.splitlines()
    assert types_line == ("{'amount': 'Decimal', 'blob': 'bytes', 'day': 'date', 'keys': 'dict', 'pair': 'tuple', "
                          "'path': 'PurePosixPath', 'point': 'Record', 'reading': 'Record', 'span': 'timedelta', "
                          "'tags': 'set', 'when': 'datetime'}")
    assert values_line == "2026-11-22T15:30:00+00:00 13.34 ['a', 'b'] pair 0.5"
    assert args_line == "b:bytes,d:date,n:Decimal,s:set"


async def test_tool_timeout(workspace: Path) -> None:
    """A tool slower than the session's tool timeout raises ToolTimeoutError; the session carries on."""
    async with Session(workspace, tools=[slow_echo], tool_timeout=0.5) as session:
        result = await session.execute("try:\n    tools.slow_echo('x', delay=3)\nexcept ToolTimeoutError as e:\n"
                                        "    print('timed out:', e.message)")
        assert result.stdout.startswith("timed out: the tool did not finish within 0.5 s")
        assert result.tool_calls[0].status is CallStatus.TIMEOUT
        assert (await session.execute("tools.slow_echo('fast', delay=0)")).result == "'fast'"


async def test_policy_denies_and_approver_decides(workspace: Path) -> None:
    """deny raises ToolDenied; ask goes to the approver, whose yes or no is honoured and recorded."""
    asked: list[str] = []

    def approver(request: CallRequest) -> bool:
        asked.append(request.tool.qualified_name)
        return bool(request.arguments.get("confirm"))

    def policy(request: CallRequest) -> Decision | tuple[Decision, str]:
        if request.tool.name == "add" and request.arguments.get("a") == 13:
            return Decision.DENY, "13 is unlucky"
        return ask_for_destructive(request)

    async with Session(workspace, tools=[add, delete_everything], tool_policy=policy, approver=approver) as session:
        denied = await session.execute("tools.add(13)")
        assert denied.error is not None and denied.error.ename == "ToolDenied" and "13 is unlucky" in denied.error.evalue
        assert (await session.execute("tools.add(12)")).result == "13"
        refused = await session.execute("tools.delete_everything(confirm=False)")
        assert refused.error is not None and refused.error.ename == "ToolDenied"
        approved = await session.execute("tools.delete_everything(confirm=True)")
        assert approved.result == "'deleted'"
        assert asked == ["delete_everything", "delete_everything"]
        assert [c.status for c in denied.tool_calls + refused.tool_calls] == [CallStatus.DENIED, CallStatus.DENIED]


async def test_ask_without_an_approver_is_denied(workspace: Path) -> None:
    """A call that needs approval when no approver is configured is refused, saying so."""
    async with Session(workspace, tools=[delete_everything], tool_policy=ask_for_destructive) as session:
        result = await session.execute("tools.delete_everything(confirm=True)")
        assert result.error is not None and "no approver is configured" in result.error.evalue


async def test_call_budget(workspace: Path) -> None:
    """max_tool_calls caps the session's calls; the next raises ToolBudgetExceeded."""
    async with Session(workspace, tools=[add], max_tool_calls=3) as session:
        result = await session.execute("for i in range(3):\n    tools.add(i)\ntools.add(99)")
        assert result.error is not None and result.error.ename == "ToolBudgetExceeded"
        assert [c.status for c in result.tool_calls] == [CallStatus.OK] * 3 + [CallStatus.BUDGET]


async def test_progress_and_final_answer(workspace: Path) -> None:
    """progress() reaches the host callback while the cell runs; final_answer() lands in the result."""
    seen: list[tuple[str, dict[str, object]]] = []
    async with Session(workspace, on_progress=lambda e: seen.append((e.message, e.fields))) as session:
        result = await session.execute("progress('loading', rows=10)\nprogress('done')\n"
                                        "import datetime\nfinal_answer({'rows': 10, 'when': datetime.date(2026, 1, 1)})")
    assert seen == [("loading", {"rows": 10}), ("done", {})]
    assert [e.message for e in result.progress] == ["loading", "done"]
    assert result.has_final_answer and result.final_answer == {"rows": 10, "when": dt.date(2026, 1, 1)}


async def test_call_records(tooled: Session) -> None:
    """Each call is recorded with tool, arguments, result, timings and the cell it came from."""
    await tooled.execute("x = 1")
    result = await tooled.execute("tools.add(5, b=6)")
    (call,) = result.tool_calls
    assert (call.tool, call.arguments, call.result, call.status) == ("add", {"a": 5, "b": 6}, 11, CallStatus.OK)
    assert call.cell == 1 and call.started_at <= call.ended_at


async def test_forged_and_malformed_bridge_messages(workspace: Path) -> None:
    """Garbage, forged and flooding comm messages from the cell neither crash the host nor reach other tools."""
    calls_in_other_session: list[int] = []

    def other_secret() -> str:
        calls_in_other_session.append(1)
        return "secret"

    async with Session(workspace, tools=[add]) as session, Session(tools=[other_secret]) as other:
        forge = """
import comm, uuid
c = comm.create_comm(target_name="kernel_agent.tools")
garbage = [None, 1, "text", [], {"type": "call"}, {"type": "call", "id": 5, "tool": "add"},
           {"type": "call", "id": "x" * 10000, "tool": "add", "args": {}},
           {"type": "call", "id": "a1", "tool": "add", "args": {"__ka__": "bytes", "buffer": 99}},
           {"type": "call", "id": "a2", "tool": "add", "args": {"__ka__": "no-such-tag"}},
           {"type": "call", "id": "a3", "tool": "add", "args": [1, 2]},
           {"type": "call", "id": "a4", "tool": "other_secret", "args": {}},
           {"type": "call", "id": "a5", "tool": "../../etc/passwd", "args": {}},
           {"type": "calls", "calls": "not a list"}, {"type": "calls", "calls": [None, 7]},
           {"type": "progress", "payload": "not an object"}, {"type": "reply", "id": "zz", "ok": True}]
for item in garbage:
    c.send(item)
for i in range(3000):
    c.send({"type": "call", "id": uuid.uuid4().hex, "tool": "add", "args": {"a": "flood"}})
c.close()
"""
        assert (await session.execute(forge)).ok
        result = await session.execute("tools.add(20, b=22)")
        assert result.result == "42"  # the host and the bridge still serve
        assert calls_in_other_session == []
        assert (await other.execute("tools.other_secret()")).result == "'secret'"
        assert calls_in_other_session == [1]
        assert session.bridge.rejected_messages >= 2


def test_the_bridge_relies_on_a_supported_ipykernel() -> None:
    """Pin: replies are taken off ipykernel 7.4's shell-channel thread; a release that changes that must fail here."""
    major, minor = (int(p) for p in ipykernel.__version__.split(".")[:2])
    assert (major, minor) == (7, 4), (
        f"ipykernel {ipykernel.__version__} is outside the supported 7.4 range: check that "
        "Kernel.shell_channel_thread_main still sees every shell message before subshell routing, "
        "then widen the pin in pyproject.toml")
    assert "shell_channel_thread_main" in vars(Kernel), "ipykernel no longer routes shell messages there"
    assert AgentKernel.shell_channel_thread_main is not Kernel.shell_channel_thread_main


async def test_a_blocked_main_thread_gets_its_reply(workspace: Path) -> None:
    """The deadlock this design avoids: a cell blocked in a sync call, with a busy kernel thread, still gets the reply."""
    async with Session(workspace, tools=[slow_echo], tool_timeout=10) as session:
        result = await session.execute("import time\nresults = [tools.slow_echo(str(i), delay=0.05) for i in range(20)]\n"
                                        "''.join(results)", timeout=30)
        assert result.result == "'" + "".join(str(i) for i in range(20)) + "'"


async def test_each_kernel_gets_the_sdk_again_after_a_restart(workspace: Path) -> None:
    """When the kernel dies, the fresh kernel has the tools too."""
    async with Session(workspace, tools=[add]) as session:
        died = await session.execute("import os\nos._exit(1)")
        assert died.kernel_restarted
        assert (await session.execute("tools.add(1)")).result == "2"


def test_threads_of_the_host_do_not_leak(workspace: Path) -> None:
    """Sync tools run in worker threads; closing the session leaves no bridge thread waiting."""
    from kernel_agent import SyncSession

    before = threading.active_count()
    with SyncSession(workspace, tools=[add]) as session:
        assert session.execute("tools.add(1)").result == "2"
    assert threading.active_count() <= before + 6  # asyncio's default executor may keep idle workers


async def test_a_real_mcp_server_end_to_end(workspace: Path) -> None:
    """An MCP server from PyPI becomes tools.<namespace>; a cell calls it through the bridge, errors included."""
    import sys

    from kernel_agent import McpServer

    server = McpServer.stdio([sys.executable, "-m", "mcp_server_time"], namespace="clock")
    async with Session(workspace, tools=[add, server]) as session:
        result = await session.execute(
            "now = tools.clock.get_current_time(timezone='Asia/Tokyo')\n"
            "print(now['timezone'], type(now).__name__)\n"
            "print(tools.search('convert'))\n"
            "try:\n    tools.clock.get_current_time(timezone='Not/AZone')\nexcept ToolError as e:\n"
            "    print(type(e).__name__, 'Invalid timezone' in e.message)")
        assert result.ok, result.error
        lines = result.stdout.splitlines()
        assert lines[0] == "Asia/Tokyo dict"
        assert "tools.clock.convert_time(" in lines[1]
        assert lines[2] == "ToolError True"
        assert [c.tool for c in result.tool_calls] == ["clock.get_current_time"] * 2
        assert server.started
        assert "tools.clock.get_current_time(timezone)" in session.manifest
        assert "tools.add(a, b=1)" in session.manifest
    assert not server.started  # the session started it, so the session stopped it
