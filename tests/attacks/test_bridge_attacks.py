"""Attacks on the tool bridge, from inside a real kernel or fed to it directly, checked on the host afterwards
(issue 10, 6-9).

No test sleeps or asserts a duration: the kernel's own code waits for the
events it needs (a thread's progress), and the host checks what ran, what
was recorded, and what was refused.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import math
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Session
from kernel_agent.protocol import wire
from kernel_agent.tools.bridge import (
    MAX_BATCH_CALLS,
    TARGET_NAME,
    THREAD_DECODE_BYTES,
    ToolBridge,
)
from kernel_agent.tools.calls import CallStatus
from kernel_agent.tools.cell_log import (
    UNMEASURABLE_BYTES,
    CellLog,
    json_size,
    wire_size,
)
from tests.conftest import LoopStallMonitor


class HostCounter:
    """Tools whose host side counts every run, so nothing can run unseen."""

    def __init__(self) -> None:
        self.runs = 0
        self.block_started = asyncio.Event()

    def tools(self) -> list[Any]:
        def count() -> int:
            """Count one run on the host."""
            self.runs += 1
            return self.runs

        async def block() -> None:
            """Never returns (until cancelled)."""
            self.runs += 1
            self.block_started.set()
            await asyncio.Event().wait()

        async def block_started() -> bool:
            """Returns once block() runs on the host."""
            await self.block_started.wait()
            return True

        def echo(value: Any) -> Any:
            """Return the value as the host received it, with its type names."""
            self.runs += 1
            return {"value": value, "types": [type(v).__name__ for v in value] if isinstance(value, list) else None}

        def add(a: int, b: int = 1) -> int:
            """Add two integers."""
            self.runs += 1
            return a + b

        return [count, block, block_started, echo, add]


@pytest.fixture
async def counted(workspace: Path) -> AsyncIterator[tuple[Session, HostCounter]]:
    counter = HostCounter()
    async with Session(workspace, default_timeout=60, notebook=False, tools=counter.tools()) as session:
        yield session, counter


LEFTOVER_THREAD = """
import threading, time
state = {"ok": 0, "errors": []}
def keep_calling():
    while True:
        try:
            tools.count()
            state["ok"] += 1
        except ToolError as exc:
            state["errors"].append(str(exc))
            if len(state["errors"]) > 10_000:
                return
        time.sleep(0.002)
threading.Thread(target=keep_calling, daemon=True).start()
while state["ok"] < 3:  # some calls are made while this cell runs: they are its own
    time.sleep(0.001)
"""

WAIT_FOR_REFUSALS = """
seen = len(state["errors"])
while len(state["errors"]) < seen + 3:  # the leftover thread keeps calling while this cell runs
    time.sleep(0.001)
"""


async def _wait_until(predicate: Any) -> None:
    """Wait for a host-side condition, without assuming how long it takes (the test's own timeout bounds it)."""
    while not predicate():
        await asyncio.sleep(0.01)


async def test_a_thread_left_by_a_cell_never_runs_tools_for_later_cells(
    counted: tuple[Session, HostCounter],
) -> None:
    session, counter = counted
    results = [await session.execute(LEFTOVER_THREAD)]
    assert results[0].ok, results[0].error
    # Between cells no cell runs: the thread's calls are refused, and the tool does not run.
    runs_after_cell = counter.runs
    refused = session.bridge.refused_outside_cells
    await asyncio.wait_for(_wait_until(lambda: session.bridge.refused_outside_cells >= refused + 3), 60)
    assert counter.runs == runs_after_cell
    for _ in range(3):
        result = await session.execute(WAIT_FOR_REFUSALS)
        assert result.ok, result.error
        results.append(result)
    stop = await session.execute("stale = [e for e in state['errors'] if 'arrived after that cell ended' in e]\n"
                                 "idle = [e for e in state['errors'] if 'no cell of this session is running' in e]\n"
                                 "bool(stale), bool(idle)")
    results.append(stop)
    # Every run of the tool is recorded exactly once, all in the cell that started the thread.
    recorded = [call for result in results for call in result.tool_calls if call.status is CallStatus.OK]
    assert len(recorded) == counter.runs
    assert len({call.id for call in recorded}) == len(recorded)
    assert all(call.cell == results[0].tool_calls[0].cell for call in recorded)
    assert all(not result.tool_calls for result in results[1:])
    assert stop.result == "(True, True)"
    assert any("threads of earlier cells were refused" in r.stderr for r in results[1:])


async def test_a_call_running_when_its_cell_ends_is_cancelled_and_recorded(
    counted: tuple[Session, HostCounter],
) -> None:
    session, counter = counted
    result = await session.execute(
        "import threading\n"
        "outcome = []\n"
        "def run():\n"
        "    try:\n"
        "        tools.block()\n"
        "    except ToolError as exc:\n"
        "        outcome.append((exc.kind, str(exc)))\n"
        "worker = threading.Thread(target=run)\n"
        "worker.start()\n"
        "tools.block_started()\n")
    assert result.ok, result.error
    (blocked,) = [call for call in result.tool_calls if call.tool == "block"]
    assert blocked.status is CallStatus.CANCELLED
    assert "ended before the call finished" in (blocked.error.message if blocked.error else "")
    after = await session.execute("worker.join(); outcome")
    assert "cancelled" in (after.result or "") and not after.tool_calls
    assert counter.runs == 1


async def test_non_finite_floats_cross_the_bridge_as_floats(counted: tuple[Session, HostCounter]) -> None:
    session, _ = counted
    result = await session.execute(
        "import math\n"
        "back = tools.echo([float('nan'), float('inf'), -float('inf'), 1.5])\n"
        "progress('numbers', nan=float('nan'), inf=float('inf'))\n"
        "final_answer({'nan': float('nan'), 'ninf': -math.inf})\n"
        "v = back['value']\n"
        "(back['types'], math.isnan(v[0]), v[1] == math.inf, v[2] == -math.inf, type(v[0]).__name__)\n")
    assert result.ok, result.error
    assert result.result == "(['float', 'float', 'float', 'float'], True, True, True, 'float')"
    (event,) = result.progress
    from kernel_agent.protocol import wire

    fields = wire.decode(event.fields)
    assert math.isnan(fields["nan"]) and fields["inf"] == math.inf
    assert math.isnan(result.final_answer["nan"]) and result.final_answer["ninf"] == -math.inf
    # What is recorded is valid JSON: the non-finite numbers are tagged.
    import json

    json.dumps([call.model_dump(mode="json") for call in result.tool_calls], allow_nan=False)
    json.dumps(event.fields, allow_nan=False)


@pytest.mark.parametrize("notebook", [False, True], ids=["unrecorded", "recorded"])
async def test_nan_in_a_display_and_the_final_answer_does_not_erase_the_cell(
    workspace: Path, notebook: bool
) -> None:
    async with Session(workspace, default_timeout=60, notebook=None if notebook else False) as session:
        result = await session.execute(
            "from IPython.display import display\n"
            "display({'application/json': {'x': float('nan'), 'y': float('inf')}}, raw=True)\n"
            "final_answer(float('nan'))\n")
    assert result.ok, result.error
    assert result.has_final_answer and math.isnan(result.final_answer)


async def test_a_huge_decimal_for_an_int_is_refused_before_validation(counted: tuple[Session, HostCounter]) -> None:
    session, counter = counted
    async with LoopStallMonitor() as monitor:
        result = await session.execute(
            "from decimal import Decimal\n"
            "from kernel_agent.kernel.sdk import ToolValidationError\n"
            "try:\n"
            "    tools.add(Decimal('1e10000000'))\n"
            "except ToolValidationError as exc:\n"
            "    caught = str(exc)\n"
            "caught\n")
    print(f"largest event-loop stall: {monitor.max_gap * 1000:.1f} ms")
    assert result.ok, result.error
    assert "exponent" in (result.result or "") and counter.runs == 0
    (call,) = result.tool_calls
    assert call.status is CallStatus.INVALID
    assert decimal.Decimal("1e10000") == decimal.Decimal(10) ** 10000  # the bound still lets ordinary decimals in


async def test_multi_megabyte_final_answer_and_progress_are_capped_and_named(
    counted: tuple[Session, HostCounter],
) -> None:
    session, _ = counted
    async with LoopStallMonitor() as monitor:
        result = await session.execute(
            "progress('big', blob='x' * 5_000_000)\n"
            "progress('small', rows=1)\n"
            "final_answer(['y' * 1000] * 8000)\n")
    print(f"largest event-loop stall: {monitor.max_gap * 1000:.1f} ms")
    assert result.ok, result.error
    assert [event.message for event in result.progress] == ["small"]
    assert result.has_final_answer and "the final answer was not kept" in result.final_answer
    assert "progress message(s) over the" in result.stderr
    assert "final answer message(s) over the" in result.stderr


# -- batches of calls ('calls' messages): bounded per message, each call charged its own size --------------

FLAT_BATCH = """
import comm
c = comm.create_comm(target_name='kernel_agent.tools', data={'protocol': 1})
c.send({'type': 'calls', 'calls': [{'id': f'{i}', 'tool': 'x'} for i in range(50_000)]})
print('sent')
"""


async def test_one_batch_message_is_served_in_one_loop_turn(workspace: Path) -> None:
    """ToolBridge._on_comm_message handled every entry of a 'calls' batch synchronously, with no bound on
    their number: one 30 MB message of 1,000,000 tiny calls held the shared event loop for 22.9 s
    (measured: each is accepted or refused, replied to and cached on the loop). Here 50,000 entries; the
    bridge must bound a batch (refuse it past the kernel's own _MAX_IN_FLIGHT, or yield between chunks)."""
    async with Session(workspace, default_timeout=60, notebook=False) as session:
        bridge = session.bridge
        real_accept, real_on_comm = bridge._accept_call, bridge.on_comm_message
        per_message: list[int] = []

        def counting_accept(*args, **kwargs):  # type: ignore[no-untyped-def]
            per_message[-1] += 1
            return real_accept(*args, **kwargs)

        def counting_on_comm(message):  # type: ignore[no-untyped-def]
            per_message.append(0)
            return real_on_comm(message)

        bridge._accept_call = counting_accept  # type: ignore[method-assign]
        bridge.on_comm_message = counting_on_comm  # type: ignore[method-assign]
        session._kernel.connection.on_comm = counting_on_comm  # type: ignore[union-attr]
        rejected = bridge.rejected_messages
        cell = await session.execute(FLAT_BATCH)
        assert cell.ok and cell.stdout == "sent\n", cell
        assert per_message and max(per_message) <= 4096, f"one message ran {max(per_message):,} calls in one turn"
        assert bridge.rejected_messages == rejected + 1 and not cell.tool_calls


BATCH_SHARE = """
import comm
c = comm.create_comm(target_name='kernel_agent.tools', data={'protocol': 1})
pad = 'x' * (1024 * 1024)
for i in range(12):
    # one real call among many tiny ones: the host used to charge each call size // len(calls)
    c.send({'type': 'calls', 'calls': [{'id': f'batch-{i}', 'tool': 'no_such_tool', 'args': {'pad': pad}}]
            + FILLER(i)})
print('sent')
"""


@pytest.mark.parametrize("filler", ["[0] * 100_000", "[{'id': f'f{i}-{j}', 'tool': 'x'} for j in range(255)]"],
                         ids=["non-calls", "tiny-calls"])
async def test_a_batch_with_filler_entries_bypasses_the_cell_record_cap(workspace: Path, filler: str) -> None:
    """ToolBridge split a 'calls' batch's size evenly over len(calls), fillers included: a 1 MiB call in a
    batch padded with 100,000 integers was charged ~12 bytes, so its 1 MiB of arguments was kept (host
    memory, notebook) far past max_cell_record_bytes. Now a batch of anything but calls, or of more calls
    than the kernel ever has in flight, is refused whole, and each call of a batch is charged its own size."""
    async with Session(workspace, default_timeout=60, notebook=False) as session:
        cap = 4 * 1024**2
        session.bridge.max_cell_record_bytes = cap
        sent: list[dict[str, Any]] = []
        real_send = session.bridge.replies.send
        assert real_send is not None

        def spy(comm_id: str, data: dict[str, Any], buffers: list[bytes]) -> None:
            sent.extend(data["replies"] if data.get("type") == "replies" else [data])
            real_send(comm_id, data, buffers)

        session.bridge.replies.send = spy
        rejected = session.bridge.rejected_messages
        cell = await session.execute(BATCH_SHARE.replace("FILLER(i)", filler))
        assert cell.ok and cell.stdout == "sent\n", cell
        kept = sum(len(json.dumps(call.arguments)) for call in cell.tool_calls)
        assert kept <= cap, f"{len(cell.tool_calls)} calls keep {kept:,} bytes of arguments; the cap is {cap:,}"
        answered = {reply["id"]: reply for reply in sent}
        assert all(f"batch-{i}" in answered for i in range(12))  # every caller gets an answer
        if filler.startswith("[0]"):
            # Refused whole: nothing ran or was kept, and each id was told why.
            assert not cell.tool_calls and session.bridge.rejected_messages == rejected + 12
            assert all("refused" in answered[f"batch-{i}"]["error"]["message"] for i in range(12))
        else:
            # Served: the big calls count their own megabyte each, so the cap stops them after a few.
            big = [call for call in cell.tool_calls if call.id.startswith("batch-")]
            assert 0 < len(big) < 12
            assert "the cell's record cap was reached" in cell.stderr


async def test_each_call_of_a_batch_is_charged_its_own_size(workspace: Path) -> None:
    """The size a batched call is charged (request cap, record budget, off-loop decoding) is its own."""
    async with Session(workspace, default_timeout=60, notebook=False) as session:
        session.bridge.max_request_bytes = 512 * 1024
        cell = await session.execute(
            "import comm\n"
            "c = comm.create_comm(target_name='kernel_agent.tools', data={'protocol': 1})\n"
            "c.send({'type': 'calls', 'calls': [{'id': 'big', 'tool': 'no_such_tool', 'args': {'pad': 'x' * 2**20}}]\n"
            "        + [{'id': f's{j}', 'tool': 'no_such_tool', 'args': {}} for j in range(255)]})\n")
        assert cell.ok, cell.error
        (big,) = [call for call in cell.tool_calls if call.id == "big"]
        assert big.status is CallStatus.INVALID and big.arguments is None
        assert big.error is not None and "the limit is 524,288" in big.error.message
        assert {call.status for call in cell.tool_calls if call.id != "big"} == {CallStatus.UNKNOWN_TOOL}


# -- the same, without a kernel: the bridge fed comm messages directly ----------------------------------

def _bridge_with_cell() -> tuple[ToolBridge, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    def send(comm_id: str, data: dict[str, Any], buffers: list[bytes]) -> None:
        sent.extend(data["replies"] if data.get("type") == "replies" else [data])

    bridge = ToolBridge(lambda name: None)
    bridge.bind(send)
    bridge.begin_cell(1, "cell-1")
    bridge.on_comm_message({"msg_type": "comm_open", "content": {"comm_id": "c", "target_name": TARGET_NAME}})
    return bridge, sent


def _comm_msg(data: Any, size: int) -> dict[str, Any]:
    return {"msg_type": "comm_msg", "content": {"comm_id": "c", "data": data}, "buffers": [], "size": size}


@pytest.mark.parametrize("message_size", [4_000, 4 * 1024**2], ids=["measured-on-loop", "measured-in-thread"])
async def test_batched_calls_are_measured_one_by_one(message_size: int) -> None:
    bridge, _ = _bridge_with_cell()
    charged: dict[str, int] = {}
    real_accept = bridge._accept_call

    def accept(comm_id: str, data: dict[str, Any], buffers: list[bytes], size: int, log: CellLog | None = None) -> None:
        charged[data["id"]] = size
        real_accept(comm_id, data, buffers, size, log)

    bridge._accept_call = accept  # type: ignore[method-assign]
    calls = [{"id": "big", "tool": "t", "args": {"pad": "x" * 300_000, "deep": [[[[1.5]]]] * 10}},
             {"id": "small", "tool": "t", "args": {"a": 1}}, {"id": "wide", "tool": "t", "args": {"é": "ü" * 1000}}]
    bridge.on_comm_message(_comm_msg({"type": "calls", "calls": calls}, message_size))
    log = await bridge.end_cell()
    assert charged["big"] > 300_000 and charged["small"] < 100 and 2000 < charged["wide"] < 2100  # UTF-8 bytes
    assert {call.id for call in log.calls} == {"big", "small", "wide"}


async def test_a_malformed_batch_is_refused_whole_and_every_id_answered() -> None:
    bridge, sent = _bridge_with_cell()
    too_many = [{"id": f"m{i}", "tool": "t", "args": {}} for i in range(MAX_BATCH_CALLS + 1)]
    bridge.on_comm_message(_comm_msg({"type": "calls", "calls": too_many}, 10_000))
    bridge.on_comm_message(_comm_msg({"type": "calls", "calls": [{"id": "ok-shaped", "tool": "t"}, "junk"]}, 100))
    bridge.replies.flush("c")  # replies of one loop turn leave together (scheduled for the next turn)
    log = await bridge.end_cell()
    assert bridge.rejected_messages == 2 and not log.calls and bridge.calls_started == 0
    assert {reply["id"] for reply in sent} == {f"m{i}" for i in range(MAX_BATCH_CALLS)} | {"ok-shaped"}
    assert all(not reply["ok"] and reply["error"]["kind"] == "invalid" for reply in sent)


async def test_batches_waiting_to_be_measured_are_bounded_by_the_cell_budget() -> None:
    bridge, sent = _bridge_with_cell()
    bridge.max_cell_record_bytes = 5 * 1024**2 // 2
    bridge.begin_cell(2, "cell-2")
    big = [{"id": f"b{i}", "tool": "t", "args": {"pad": "x" * 300_000}} for i in range(3)]
    for message in range(5):  # 1 MiB each: the third does not fit in what the cell may still keep
        batch = [{**call, "id": f"{call['id']}-{message}"} for call in big]
        bridge.on_comm_message(_comm_msg({"type": "calls", "calls": batch}, 1024**2))
    log = await bridge.end_cell()
    bridge.replies.flush("c")
    assert log.kept_bytes <= log.max_bytes and log.measuring_bytes == 0
    assert {call.id for call in log.calls} == {f"b{i}-{m}" for i in range(3) for m in range(2)}
    refused = {reply["id"] for reply in sent if not reply["ok"] and reply["error"]["kind"] == "refused"}
    assert refused == {f"b{i}-{m}" for i in range(3) for m in range(2, 5)}


def test_measuring_is_bounded_whatever_the_shape() -> None:
    deep: Any = 0
    for _ in range(100_000):  # far deeper than any recursion limit
        deep = [deep]
    assert 2 * 100_000 < json_size(deep, 10**9) < 4 * 100_000  # no recursion: any depth is measured
    assert json_size([0] * 10_000_000, 1000) > 1000  # over its limit: stops without walking the items
    assert 1000 < json_size([[0]] * 400, 1000) < 1010  # stops in the middle of the walk, at its limit
    assert json_size({"k": "v", "n": None, "f": 1.5, "i": 10**30}, 10**6) > len('{"k":"v","n":null,"f":1.5}')


# -- decoding: dtypes, every failure a DecodeError, a waiting decoder that survives -----------------------

def test_array_dtypes_are_plain_scalars_only() -> None:
    for dtype in ["bool", "int8", "int64", "uint64", "float16", "float64", "complex128", "<i4", ">f8", "|b1",
                  "<U12", "|S5", "str", "object", "datetime64[ns]", "<M8[us]", "timedelta64[25s]", "<m8"]:
        assert wire.array_dtype(dtype) == dtype
    hostile: list[object] = ["(1000,1000,1000)f8", "10f8", "(2,)i4", "f8,i4", "[('a', '<i4')]", "V8", "U99999999",
                             "i4 ", "float64\n", "datetime64[1000000000ns]", 8, None, ["f8"]]
    for value in hostile:
        with pytest.raises(wire.DecodeError):
            wire.array_dtype(value)


class _FakeNumpy(types.ModuleType):
    """Stands in for numpy (not installed in the test environment): records what it was asked to build."""

    def __init__(self) -> None:
        super().__init__("numpy")
        self.built: list[tuple[Any, str]] = []

    def array(self, items: Any, dtype: str) -> Any:
        self.built.append((items, dtype))
        return ("array", items, dtype)


def test_an_ndarray_with_a_shaped_or_huge_dtype_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    numpy = _FakeNumpy()
    monkeypatch.setitem(sys.modules, "numpy", numpy)
    assert wire.decode({"__ka__": "ndarray", "dtype": "int64", "items": [1, 2]}) == ("array", [1, 2], "int64")
    for hostile in [{"__ka__": "ndarray", "dtype": "(1000,1000,1000)f8", "items": [1.0]},
                    {"__ka__": "ndarray", "dtype": "<U1", "items": ["a"] * 100_000 + ["b" * 1_000_000]},
                    {"__ka__": "ndarray", "dtype": "<U9999999", "items": ["a"] * 10}]:
        with pytest.raises(wire.DecodeError):
            wire.decode(hostile)
    assert len(numpy.built) == 1  # numpy never saw the hostile ones


def test_every_decoding_failure_is_a_decode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for hostile in [{"__ka__": "timedelta", "seconds": 1e300}, {"__ka__": "timedelta", "seconds": "nan"},
                    {"__ka__": "datetime", "value": "not a date"}, {"__ka__": "complex", "real": "x", "imag": 0},
                    {"__ka__": "decimal", "value": "1e99999999"}, {"__ka__": "dict", "items": [[{"a": 1}, 1]]}]:
        with pytest.raises(wire.DecodeError):
            wire.decode(hostile)

    class Exploding(_FakeNumpy):
        def array(self, items: Any, dtype: str) -> Any:
            raise MemoryError

    monkeypatch.setitem(sys.modules, "numpy", Exploding())
    with pytest.raises(wire.DecodeError):
        wire.decode({"__ka__": "ndarray", "dtype": "int64", "items": [1]})


@pytest.mark.parametrize("failure", ["overflow", "any-exception"])
async def test_the_waiting_decoder_survives_a_bad_value(monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    """Progress events decoded off the loop are taken in order by one task per cell; a value it cannot
    decode (a timedelta of 1e300 seconds raised OverflowError, not DecodeError) killed that task, and
    every later event of the cell was lost."""
    bridge, _ = _bridge_with_cell()
    bridge.max_progress_bytes = 10 * THREAD_DECODE_BYTES
    if failure == "any-exception":
        real_decode = wire.decode

        def decode(data: Any, buffers: list[bytes] | None = None) -> Any:
            if data.get("message") == "bad":
                raise RuntimeError("not a DecodeError")
            return real_decode(data, buffers)

        monkeypatch.setattr(wire, "decode", decode)
    big = 2 * THREAD_DECODE_BYTES  # decoded in a worker thread, by the waiting decoder
    bad = {"message": "bad", "fields": {"span": {"__ka__": "timedelta", "seconds": 1e300}}}
    for payload in [{"message": "first", "fields": {}}, bad, {"message": "after", "fields": {}}]:
        bridge.on_comm_message(_comm_msg({"type": "progress", "payload": payload}, big))
    log = await bridge.end_cell()
    assert [event.message for event in log.progress] == ["first", "after"]
    assert bridge.rejected_messages == 1


def test_a_value_too_deep_to_measure_is_over_every_budget() -> None:
    deep: Any = 0
    for _ in range(100_000):
        deep = [deep]
    assert wire_size(deep) >= UNMEASURABLE_BYTES
    log = CellLog(1)
    assert not log.reserve(wire_size(deep)) and log.kept_bytes == 0


def test_the_measures_fast_paths_count_as_the_general_path() -> None:
    """json_size counts a plain container's ASCII strings and ints in place: subclasses, non-ASCII strings and
    non-string keys go through the stack and must count the same; wire_size measures an int by its repr."""
    class Sub(dict):  # type: ignore[type-arg]
        pass

    plain = {"k": "v", "é": "ü" * 10, "n": [1, 10**30, True, None, 1.5, "x"], "d": {"a": []}}
    assert json_size(Sub(plain), 10**6) == json_size(plain, 10**6) == json_size(dict(plain), 10**6)
    assert json_size({1: "a"}, 10**6) == json_size({"a": 1}, 10**6)
    assert wire_size(-12) == 3 and wire_size(True) == 4 and wire_size(10**5000) == UNMEASURABLE_BYTES
