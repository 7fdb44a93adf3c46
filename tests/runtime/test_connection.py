"""The host's kernel connection under hostile or heavy output: oversized messages, big messages, floods.

Real sandboxed kernels. The kernel is untrusted, so several tests skip
ipykernel's output path and push signed messages straight onto its iopub
socket, as hostile code in a cell can.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernel_agent import CellStatus, Session
from kernel_agent.kernel.agent_kernel import STREAM_FLUSH_CHARS
from kernel_agent.runtime.connection import MAX_IOPUB_MESSAGE_BYTES, KernelConnection
from kernel_agent.runtime.outputs import OutputCollector
from kernel_agent.runtime.results import OUTPUT_LOST
from kernel_agent.tools.tool import tool, tool_from_function

from ..conftest import PeakRss

MiB = 1024**2
# Session waits this long for a cell's iopub idle status when it is missing (session._IOPUB_SETTLE_SECONDS).
SETTLE_SECONDS = 2.0

RAW_MESSAGES = """
kernel = get_ipython().kernel
message = kernel.session.msg({msg_type!r}, {content}, parent=kernel.get_parent())
frames = kernel.session.serialize(message)
for _ in range({count}):
    kernel.iopub_socket.send_multipart(frames)
"""


def raw_messages(msg_type: str, content: str, count: int) -> str:
    """Cell code that sends one signed iopub message ``count`` times, bypassing ipykernel's output path."""
    return RAW_MESSAGES.format(msg_type=msg_type, content=content, count=count)


def connection_of(session: Session) -> KernelConnection:
    kernel = session._kernel
    assert kernel is not None and kernel.connection is not None
    return kernel.connection


# --------------------------------------------------------------------------
# The collector's side (no kernel)
# --------------------------------------------------------------------------


def _stream(text: str) -> dict[str, object]:
    return {"header": {"msg_type": "stream"}, "content": {"name": "stdout", "text": text}}


def test_the_collector_refuses_what_it_cannot_keep_before_it_is_parsed() -> None:
    """Messages within the room are wanted, a stream up to one cap past it is cut, anything larger is counted."""
    collector = OutputCollector(max_bytes=10_000)
    assert collector.wants_content(6_000)
    collector.add(_stream("a" * 6_000))
    assert collector.wants_content(12_000)  # 4,000 left: parsed to keep the first part
    assert not collector.wants_content(14_001)  # more than one cap past the room: dropped unparsed
    assert collector.dropped_bytes == 14_001
    collector.add(_stream("b" * 5_000))
    assert collector.kept_bytes == 10_000 and collector.dropped_bytes == 14_001 + 1_000
    assert not collector.wants_content(5_000)
    assert collector.wants_content(100)  # small messages are parsed and counted by add
    assert collector.finish()[0]["text"] == "a" * 6_000 + "b" * 4_000


def test_lost_output_is_counted_and_marked() -> None:
    """A note from the connection that output was lost shows up as a marker and in dropped_bytes."""
    collector = OutputCollector(max_bytes=1_000)
    collector.add(_stream("kept\n"))
    collector.add({"header": {"msg_type": OUTPUT_LOST}, "msg_type": OUTPUT_LOST,
                   "content": {"min_bytes": MAX_IOPUB_MESSAGE_BYTES + 1}})
    outputs = collector.finish()
    assert collector.output_lost == 1 and collector.dropped_bytes == MAX_IOPUB_MESSAGE_BYTES + 1
    assert outputs[0]["text"] == "kept\n"
    assert outputs[-1]["name"] == "stderr" and "output lost" in outputs[-1]["text"]
    assert f"{MAX_IOPUB_MESSAGE_BYTES + 1:,} bytes dropped" in outputs[-1]["text"]


# --------------------------------------------------------------------------
# Oversized messages: the connection is restored and the loss reported
# --------------------------------------------------------------------------


async def test_an_oversized_message_is_reported_and_later_cells_keep_their_output(session: Session) -> None:
    """One 70 MB message (over every socket's cap) cuts iopub; it is reconnected and the loss is counted."""
    connection = connection_of(session)
    cell = await session.execute(
        "from IPython.display import display\ndisplay({'text/plain': 'x' * 70_000_000}, raw=True)", timeout=60
    )
    assert cell.status is CellStatus.OK
    assert cell.dropped_output_bytes > MAX_IOPUB_MESSAGE_BYTES
    assert "output lost" in cell.stderr
    assert connection.iopub_reconnects == 1
    for i in range(3):
        later = await session.execute(f"print('after {i}')\n6 * 7")
        assert later.status is CellStatus.OK
        assert later.stdout == f"after {i}\n" and later.result == "42"
        assert later.dropped_output_bytes == 0 and later.stderr == ""
    assert connection.iopub_reconnects == 1
    assert not connection._requests  # the probe sent after the loss was answered and forgotten


async def test_raw_oversized_messages_each_count_and_the_session_recovers(session: Session) -> None:
    """Signed 45 MB stream messages (over the iopub cap, under shell's) pushed straight onto iopub."""
    cell = await session.execute(
        raw_messages("stream", "{'name': 'stdout', 'text': 'x' * 45_000_000}", 3) + "print('done')", timeout=60
    )
    assert cell.status is CellStatus.OK
    assert cell.dropped_output_bytes > MAX_IOPUB_MESSAGE_BYTES
    assert "output lost" in cell.stderr
    later = await session.execute("print('still here')")
    assert later.stdout == "still here\n"


async def test_a_kernel_death_is_not_reported_as_lost_output(session: Session) -> None:
    """A dying kernel also disconnects iopub, but libzmq reconnects by itself then: no loss is claimed."""
    cell = await session.execute("print('before', flush=True)\nimport os\nos._exit(3)")
    assert cell.status is CellStatus.KERNEL_DIED
    assert "output lost" not in cell.stderr and cell.dropped_output_bytes == 0
    assert (await session.execute("print('fresh')")).stdout == "fresh\n"
    assert connection_of(session).iopub_reconnects == 0


# --------------------------------------------------------------------------
# Large messages do not stall the host's event loop or fill its memory
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "content"),
    [
        ("stream", "{'name': 'stdout', 'text': 'x' * 35_000_000}"),
        ("display_data", "{'data': {'text/plain': 'x' * 35_000_000}, 'metadata': {}}"),
    ],
    ids=["stream", "display_data"],
)
@pytest.mark.serial  # host RSS is measured (tests/run_suite.py)
async def test_large_output_messages_do_not_stall_the_host(session: Session, msg_type: str, content: str) -> None:
    """Four signed 35 MB output messages (under the iopub cap): dropped by their length, never parsed."""
    with PeakRss() as rss:  # the loop's stall during such floods is a bench figure (bench/bench_scale.py)
        cell = await session.execute(raw_messages(msg_type, content, 4), timeout=30)
    assert cell.status is CellStatus.OK
    assert cell.dropped_output_bytes >= 4 * 35_000_000
    assert "output truncated" in cell.stderr
    assert rss.growth < 300 * MiB, f"host RSS grew by {rss.growth / MiB:.0f} MiB"
    assert connection_of(session).iopub_reconnects == 0
    assert (await session.execute("1 + 1")).result == "2"


@pytest.mark.serial  # parsing 4 x 35 MB loads the host; the next cell's result was late at a load of 9
async def test_large_comm_messages_hold_the_loop_one_at_a_time(session: Session) -> None:
    """Comm messages are always verified and parsed (the bridge needs them); the loop runs between 35 MB ones."""
    comm = "{'comm_id': 'not-the-bridge', 'data': {'type': 'call', 'padding': 'x' * 35_000_000}}"
    cell = await session.execute(raw_messages("comm_msg", comm, 4), timeout=60)
    assert cell.status is CellStatus.OK
    assert session.bridge.rejected_messages == 0  # parsed, seen to be for no bridge comm, ignored: not malformed
    assert (await session.execute("1 + 1")).result == "2"


async def test_another_session_keeps_running_during_a_large_message_burst(workspace: Path) -> None:
    """Cells of a second session in the same process finish while the first one is flooded.

    The flood cell waits (in a tool) until the other session has run three
    cells, then floods again: the other session must make progress during
    the flood, or the flood cell times out. How fast its cells are then is a
    figure in bench/bench_scale.py, not an assertion here.
    """
    neighbour_ran = asyncio.Event()

    async def wait_for_neighbour() -> None:
        """Return once the other session has run its cells."""
        await neighbour_ran.wait()

    flood_messages = raw_messages("stream", "{'name': 'stdout', 'text': 'x' * 35_000_000}", 10)
    flood_code = f"{flood_messages}\ntools.wait_for_neighbour()\n{flood_messages}"
    (workspace / "flooded").mkdir()
    (workspace / "other").mkdir()
    async with Session(workspace / "flooded", tools=[tool_from_function(wait_for_neighbour)]) as flooded, \
            Session(workspace / "other") as other:
        flood = asyncio.create_task(flooded.execute(flood_code, timeout=60))
        ran = 0
        while not flood.done():
            assert (await other.execute("1 + 1")).result == "2"
            ran += 1
            if ran == 3:
                neighbour_ran.set()
        cell = await flood
    # Not all 20 need be counted: the session stops waiting for output 2 s after the execute reply.
    assert cell.status is CellStatus.OK and cell.dropped_output_bytes > 0, cell.error
    assert ran >= 3 and len(cell.tool_calls) == 1


# --------------------------------------------------------------------------
# Output floods: bounded messages from the kernel, counted and interruptible
# --------------------------------------------------------------------------


async def test_a_print_flood_is_counted_interrupted_and_keeps_state(session: Session) -> None:
    """`while True: print('x' * 10**6)` with a timeout: output kept to the cap, the rest counted, state kept."""
    await session.execute("kept = 7")
    cell = await session.execute("while True:\n    print('x' * 10**6)", timeout=3)
    assert cell.status is CellStatus.TIMEOUT and cell.timed_out
    assert not cell.state_lost and not cell.kernel_restarted
    assert cell.error is not None and cell.error.ename == "KeyboardInterrupt"
    assert len(cell.stdout) == session.max_output_bytes
    assert cell.dropped_output_bytes > 0
    assert f"{cell.dropped_output_bytes:,} bytes dropped" in cell.stderr
    assert (await session.execute("kept")).result == "7"


async def test_stream_output_leaves_the_kernel_in_bounded_messages(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One 5 MB print reaches the host whole, in messages of at most STREAM_FLUSH_CHARS characters."""
    sizes: list[int] = []
    add = OutputCollector.add

    def recording_add(self: OutputCollector, message: dict[str, object]) -> None:
        if message["header"]["msg_type"] == "stream":  # type: ignore[index]
            sizes.append(len(message["content"]["text"]))  # type: ignore[index]
        add(self, message)

    monkeypatch.setattr(OutputCollector, "add", recording_add)
    async with Session(workspace, max_output_bytes=16 * MiB) as session:
        cell = await session.execute("import sys\nprint(type(sys.stdout).__name__)\nprint('y' * 5_000_000)")
    assert cell.stdout == "CappedOutStream\n" + "y" * 5_000_000 + "\n"
    assert cell.dropped_output_bytes == 0
    assert len(sizes) >= 5 and max(sizes) <= STREAM_FLUSH_CHARS


@tool(read_only=True)
def add_one(a: int) -> int:
    """Add one."""
    return a + 1


async def test_a_burst_of_gathered_tool_calls_completes(workspace: Path) -> None:
    """5000 gathered calls (256 in flight, batched) get through the small iopub queue."""
    async with Session(workspace, tools=[add_one]) as session:
        cell = await session.execute(
            "import asyncio\nsum(await asyncio.gather(*(tools.add_one.aio(i) for i in range(5000))))", timeout=120
        )
    assert cell.status is CellStatus.OK, cell.error
    assert cell.result == str(sum(range(1, 5001)))
    assert len(cell.tool_calls) == 5000


async def test_overdue_replies_nudge_the_kernel(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell still running after 2 s gets a kernel_info nudge (against missed wake-ups, ipykernel #1554)."""
    connection = session._kernel.connection  # type: ignore[union-attr]
    sent: list[str] = []
    original = connection.send

    def spy(socket: object, msg_type: str, content: dict[str, object], **options: object) -> object:
        sent.append(msg_type)
        return original(socket, msg_type, content, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(connection, "send", spy)
    result = await session.execute("import time\ntime.sleep(2.6)\n'done'")
    assert result.result == "'done'"
    assert sent[0] == "execute_request" and "kernel_info_request" in sent[1:]
