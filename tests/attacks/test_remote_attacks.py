"""Attacks on server kernels (issue 12): from inside a kernel on a real Jupyter Server, from a hostile server, from
crafted records handed to ``Session.attach`` and ``kernel-agent sessions``, from crafted connection files, and from
a kernel behind the Enterprise Gateway relay.

Each test attacks, then checks what must hold on the host afterwards: host memory bounded by an explicit
(generous) cap, other sessions still working, the record telling the truth, the token never shown, nothing
followed or written where the kernel or a crafted file pointed. A test that fails shows an open weakness (its
docstring says what must hold); none is marked xfail.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import secrets
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from jupyter_client.connect import write_connection_file
from jupyter_client.session import Session as ProtocolSession
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request as HTTPRequest
from websockets.http11 import Response as HTTPResponse
from websockets.typing import Subprotocol

from kernel_agent import CellStatus, KernelStartError, RecordingError, Session, tool_from_function
from kernel_agent.cli.sessions import detached_records
from kernel_agent.record import format as fmt
from kernel_agent.runtime.attached import read_connection_file
from kernel_agent.runtime.remote import (
    JupyterServer,
    JupyterServerError,
    ServerHTTPError,
    ServerUnreachableError,
    WebSocketChannels,
)
from kernel_agent.runtime.remote.rest import Rest
from kernel_agent.verify.audit import audit_notebook

from ..conftest import PeakRss
from ..remote.conftest import RunningServer, running_server

MiB = 1024**2
REPO = Path(__file__).resolve().parents[2]


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


TOOLS = [tool_from_function(add)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real Jupyter Server for the module (the kernel-agent kernelspec installed, token auth)."""
    with running_server("jupyter-server", tmp_path_factory.mktemp("remote-attacks-server")) as running:
        yield running


class PeakMemory(PeakRss):
    """PeakRss, and Linux's own high-water mark of this process's RSS (reset on entry).

    A json.loads in a worker thread holds the GIL for its whole run, so a sampling thread may never see the peak
    of what it allocates: /proc/self/status VmHWM (reset by writing 5 to /proc/self/clear_refs) does.
    """

    def __enter__(self) -> PeakMemory:
        super().__enter__()
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        with contextlib.suppress(OSError, IndexError, ValueError):
            status = Path("/proc/self/status").read_text()
            self.peak = max(self.peak, int(status.split("VmHWM:")[1].split()[0]) * 1024)


def client(server: RunningServer, **options: Any) -> JupyterServer:
    return JupyterServer(server.url, token=server.token, **options)


def cell(code: str) -> str:
    return textwrap.dedent(code).strip() + "\n"


# The kernel's own raw sends: any message type, any parent, content bytes passed through unparsed.
RAW_SEND = cell("""
    _k = get_ipython().kernel
    def raw_iopub(msg_type, content, parent=None):
        _k.session.send(_k.iopub_socket, msg_type, content=content,
                        parent=_k.get_parent("shell") if parent is None else parent)
    def raw_reply(msg_type, content):
        _k.session.send(_k.shell_stream, msg_type, content, parent=_k.get_parent("shell"),
                        ident=_k._parent_ident["shell"])
""")


# ======================================================================================================
# From inside a kernel on a real Jupyter Server
# ======================================================================================================


@pytest.mark.serial  # host RSS is measured (tests/run_suite.py)
async def test_a_comm_message_of_tiny_containers_stays_within_a_host_memory_cap(server: RunningServer) -> None:
    """Attack: one 39 MB comm_msg whose content is 13 million empty JSON objects. Comm messages are always parsed
    (the bridge's own caps apply only after), and json.loads turns 3 bytes into a 64-byte dict: the host must
    stay within 512 MiB (websocket.py documents about 0.25 GiB as its worst case), and another session on the
    same server must keep working."""
    async with Session(server=client(server), tools=TOOLS, notebook=False) as victim, \
            Session(server=client(server), tools=TOOLS, notebook=False) as attacker:
        await attacker.execute(RAW_SEND)
        gc.collect()
        with PeakMemory() as rss:
            flood = await attacker.execute(cell("""
                payload = b'{"comm_id": "x", "data": {"type": "call", "junk": [' + b'{},' * 13_000_000 + b'{}]}}'
                raw_iopub("comm_msg", payload)
                del payload
            """), timeout=120)
            health = await victim.execute("print(tools.add(20, 22))")
        assert health.stdout == "42\n", health
        assert flood.status is CellStatus.OK, flood
        assert rss.growth < 512 * MiB, f"one comm message raised the host's RSS by {rss.growth / MiB:.0f} MiB"


async def test_a_death_notice_forged_by_the_kernel_is_not_taken_for_the_servers(server: RunningServer) -> None:
    """Attack: the kernel publishes the server's 'restarting' notice itself (an iopub status with no parent, as
    Jupyter Server sends it; its header carries the websocket's session id, which every request shows the
    kernel). The host must not record a death and a fresh kernel that did not happen: if it says the state is
    lost, the state must really be gone."""
    async with Session(server=client(server), tools=TOOLS, notebook=False) as session:
        await session.execute(RAW_SEND + "secret_state = 42")
        forged = await session.execute(cell("""
            import time
            raw_iopub("status", {"execution_state": "restarting"}, parent={})
            time.sleep(1)
        """))
        after = await session.execute("print(secret_state)")
        assert not (forged.state_lost and after.stdout == "42\n"), (
            f"the host reported '{forged.error.evalue if forged.error else ''}' and counted a kernel restart "
            f"({session.kernel_restarts}), yet the kernel kept its variables: it never restarted")


async def test_a_forged_execute_reply_with_ill_typed_fields_ends_in_a_cell_result(server: RunningServer) -> None:
    """Attack: the kernel answers its own execute_request first, with an execute_reply whose fields have the wrong
    types (execution_count a string, ename an object). A cell's problems never raise (Session's contract):
    the host must give a CellResult and stay usable."""
    async with Session(server=client(server), tools=TOOLS, notebook=False) as session:
        await session.execute(RAW_SEND)
        try:
            result = await session.execute(cell("""
                import time
                raw_reply("execute_reply", {"status": "error", "execution_count": "seven", "ename": {"a": 1},
                                            "evalue": ["x"], "traceback": "not a list"})
                time.sleep(1)
            """))
        except Exception as exc:  # noqa: BLE001 - what the attack is about
            pytest.fail(f"Session.execute raised {type(exc).__module__}.{type(exc).__name__} on a reply the kernel "
                        f"forged: {str(exc).splitlines()[0]}")
        assert result.status in (CellStatus.OK, CellStatus.ERROR)
        assert (await session.execute("print('still here')")).stdout == "still here\n"


@pytest.mark.serial  # host RSS is measured (tests/run_suite.py)
async def test_an_output_flood_over_the_websocket_keeps_host_memory_bounded(server: RunningServer) -> None:
    """Attack: re-send one signed 30 MB stream message 24 times, far faster than the host reads (720 MB in flight).
    Output the cell will not keep is dropped by its length: the host stays well within 400 MiB, and another
    session on the server works throughout."""
    async with Session(server=client(server), tools=TOOLS, notebook=False) as victim, \
            Session(server=client(server), tools=TOOLS, notebook=False, max_output_bytes=1 * MiB) as attacker:
        gc.collect()
        with PeakMemory() as rss:
            flood_task = asyncio.ensure_future(attacker.execute(cell("""
                _k = get_ipython().kernel
                # display_data: Jupyter Server's data-rate limit counts only stream bytes
                _m = _k.session.msg("display_data", {"data": {"text/plain": "x" * 30_000_000}, "metadata": {}},
                                    parent=_k.get_parent())
                _frames = _k.session.serialize(_m)
                for _ in range(24):
                    _k.iopub_socket.send_multipart(_frames, copy=False)
            """), timeout=60))
            health = await victim.execute("print(tools.add(1, 1))")
            flood = await flood_task
        assert health.stdout == "2\n", health
        assert flood.status is CellStatus.OK and flood.dropped_output_bytes > 0, flood
        assert rss.growth < 400 * MiB, f"host RSS peaked {rss.growth / MiB:.0f} MiB up"


async def test_tool_calls_from_a_thread_that_outlives_a_detach_are_refused_after_attach(
        server: RunningServer, tmp_path: Path) -> None:
    """Attack: a cell leaves a thread that calls a host tool in a loop; the session detaches, and another attaches.
    Calls of the old cell (made while detached, or after the attach, during a new cell), and a call sent on the
    old bridge's comm stamped with the new cell, never run on the attaching host; the record stays intact."""
    notebook = tmp_path / "threaded.ipynb"
    ran: list[tuple[int, int]] = []

    def counted_add(a: int, b: int) -> int:
        """Add two integers."""
        ran.append((a, b))
        return a + b

    tools = [tool_from_function(counted_add, name="add")]
    session = await Session(server=client(server), tools=tools, notebook=notebook, tool_timeout=2).start()
    started = await session.execute(cell("""
        import threading, time
        outcomes = []
        def caller():
            for i in range(1000):
                try:
                    outcomes.append(("ok", tools.add(i, 1000)))
                except Exception as exc:
                    outcomes.append(("refused", type(exc).__name__))
                time.sleep(0.02)
        caller_thread = threading.Thread(target=caller, daemon=True)
        caller_thread.start()
        old_comm_id = get_ipython().kernel.bridge.comm_id
        time.sleep(0.3)
    """))
    assert started.ok, started
    ran_in_cell = len(ran)
    assert ran_in_cell > 0, "the thread's calls never reached the host while its cell ran"
    detached = await session.detach()
    await asyncio.sleep(1)
    async with await Session.attach(detached.kernel_id, server=client(server), notebook=notebook, tools=tools,
                                    tool_timeout=2) as attached:
        during = await attached.execute(cell("""
            import time
            from kernel_agent.kernel.bridge import current_cell
            from kernel_agent.protocol import wire
            # A call on the comm of the detached session's bridge, stamped with this very cell.
            args, _ = wire.encode({"a": 7, "b": 7})
            _k = get_ipython().kernel
            _k.session.send(_k.iopub_socket, "comm_msg", {"comm_id": old_comm_id, "data": {
                "type": "call", "id": "old-comm-call", "tool": "add", "args": args, "cell": current_cell()}},
                parent=_k.get_parent("shell"))
            time.sleep(1.5)
        """))
        assert during.ok and during.tool_calls == [], during
        still = await attached.execute("print(caller_thread.is_alive(), len(outcomes))")
        assert still.stdout.startswith("True "), still  # the thread is still calling
        assert len(ran) == ran_in_cell, "a call of the detached session's cell ran on the attaching host"
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline


async def test_a_restart_does_not_use_what_the_kernel_planted_in_its_socket_directory(
        server: RunningServer, tmp_path: Path) -> None:
    """Attack: before a REST restart (which reuses the run directory), the kernel replaces its connection file with
    a link to a host file, plants links and a FIFO at other socket-like names and a deep tree. The restarted
    kernel gets a fresh socket directory at the same path: the host file is untouched, nothing planted is
    there, and the kernel answers."""
    sentinel = tmp_path / "host-sentinel.txt"
    sentinel.write_text("host-only")
    before = (sentinel.stat().st_mode, sentinel.stat().st_uid, sentinel.read_text())
    async with Session(server=client(server), tools=TOOLS, notebook=False) as session:
        planted = await session.execute(cell(f"""
            import os, json
            from ipykernel.connect import get_connection_file
            cf = get_connection_file()
            d = os.path.dirname(cf)
            os.unlink(cf)
            os.symlink({str(sentinel)!r}, cf)
            os.unlink(os.path.join(d, "kernel-5"))  # a socket the restarted kernel binds again at this path
            for name in ("kernel-5", "kernel-6", "kernel-65535", "connection.json.tmp", "links"):
                os.symlink({str(sentinel)!r}, os.path.join(d, name))
            os.mkfifo(os.path.join(d, "kernel-7"))
            p = d
            for _ in range(100):
                p = os.path.join(p, "deep")
                os.mkdir(p)
            print(json.dumps({{"dir": d, "entries": sorted(os.listdir(d))}}))
        """))
        assert planted.ok, planted.error
        socket_dir = json.loads(planted.stdout)["dir"]
        await session.restart()
        after = await session.execute(cell("""
            import os, json, stat
            from ipykernel.connect import get_connection_file
            cf = get_connection_file()
            d = os.path.dirname(cf)
            print(json.dumps({"dir": d, "entries": sorted(os.listdir(d)), "link": os.path.islink(cf),
                              "socket": stat.S_ISSOCK(os.lstat(os.path.join(d, "kernel-5")).st_mode)}))
        """))
        assert after.ok, after
        seen = json.loads(after.stdout)
    assert seen["dir"] == socket_dir, "the restart kept the endpoints' directory"
    planted_names = {"kernel-6", "kernel-7", "kernel-65535", "deep", "links"}
    assert seen["socket"] and not seen["link"] and not planted_names & set(seen["entries"]), seen
    assert (sentinel.stat().st_mode, sentinel.stat().st_uid, sentinel.read_text()) == before


async def test_output_nested_just_below_the_parsers_limit_is_recorded_without_breaking_the_session(
        server: RunningServer, tmp_path: Path) -> None:
    """Attack: a display whose JSON is nested 900 deep (json.loads accepts it; much code that recurses later does
    not) and one nested past the parser's limit. The cell still gives a CellResult, is recorded, and the
    record audits intact."""
    notebook = tmp_path / "deep.ipynb"
    async with Session(server=client(server), tools=TOOLS, notebook=notebook) as session:
        await session.execute(RAW_SEND)
        result = await session.execute(cell("""
            deep = b'[' * 900 + b']' * 900
            raw_iopub("display_data",
                      b'{"data": {"application/json": ' + deep + b', "text/plain": "d"}, "metadata": {}}')
            deeper = b'[' * 5000 + b']' * 5000
            raw_iopub("display_data", b'{"data": {"text/plain": ' + deeper + b'}, "metadata": {}}')
            print("sent")
        """))
        assert result.stdout == "sent\n", result
        assert (await session.execute("print(1)")).stdout == "1\n"
    assert audit_notebook(notebook).verdict == "intact"


# ======================================================================================================
# Crafted records handed to Session.attach
# ======================================================================================================


async def detach_a_session(server: RunningServer, notebook: Path, **options: Any) -> str:
    """A session on the server that ran a cell (a tool call), then detached; the kernel id."""
    session = await Session(server=client(server), tools=TOOLS, notebook=notebook, **options).start()
    await session.execute("state = 'kept'\nprint(tools.add(1, 2))")
    return (await session.detach()).kernel_id


def rechain(notebook: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a record, then recompute its hash chain, as anyone without the keys can."""
    document = json.loads(notebook.read_text())
    edit(document)
    ours = document["metadata"][fmt.METADATA_KEY]
    head = fmt.genesis_hash(ours["session"])
    for entry in document["cells"]:
        head = fmt.cell_hash(head, entry)
        entry["metadata"][fmt.METADATA_KEY]["hash"] = head
    ours["chain"]["head"] = head
    if isinstance(ours.get("end"), dict):
        ours["end"]["head"] = head
        ours["chain"]["seal"] = fmt.seal_hash(head, ours["end"])
    notebook.write_text(json.dumps(document))


@pytest.fixture(scope="module")
def detached(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One detached session's kernel id and record (copied by the tests that craft from it; never changed)."""
    notebook = tmp_path_factory.mktemp("detached") / "template.ipynb"
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(detach_a_session(server, notebook))))
    worker.start()
    worker.join(120)
    assert result, "the template session did not detach"
    return result[0], notebook


def copy_record(detached: tuple[str, Path], directory: Path, name: str = "record.ipynb") -> Path:
    target = directory / name
    target.write_bytes(detached[1].read_bytes())
    return target


async def test_two_concurrent_attaches_to_one_detached_record_let_only_one_continue_it(
        server: RunningServer, tmp_path: Path) -> None:
    """Attack: two processes attach to the same detached kernel and record at once (both read the record while it
    still ends with the detach). At most one may continue the record: two would both drive the kernel (each
    replacing the other's bridge) and both append to one notebook, each from its own chain head."""
    notebook = tmp_path / "contended.ipynb"
    kernel_id = await detach_a_session(server, notebook)
    outcomes = await asyncio.gather(*(Session.attach(kernel_id, server=client(server), notebook=notebook, tools=TOOLS)
                                      for _ in range(2)), return_exceptions=True)
    sessions = [o for o in outcomes if isinstance(o, Session)]
    try:
        for session in sessions:
            await session.execute("print(state)")
    finally:
        for session in sessions:
            with contextlib.suppress(Exception):
                await session.close()
    kinds = [c["metadata"][fmt.METADATA_KEY].get("kind") for c in json.loads(notebook.read_text())["cells"]]
    assert len(sessions) == 1, (f"both attaches continued the record; it now reads {kinds} "
                                f"(audit: {audit_notebook(notebook).headline})")


async def test_a_crafted_detach_time_is_a_named_error_not_a_traceback(
        server: RunningServer, detached: tuple[str, Path], tmp_path: Path) -> None:
    """Attack: the detach note's 'at' is a timestamp without a timezone (chain recomputed: the record has no keys).
    A crafted record ends in a named error (or is accepted), never in a bare TypeError."""
    kernel_id = detached[0]
    notebook = copy_record(detached, tmp_path)
    rechain(notebook, lambda d: d["cells"][-1]["metadata"][fmt.METADATA_KEY].update(at="2020-01-01T00:00:00"))
    try:
        session = await Session.attach(kernel_id, server=client(server), notebook=notebook, tools=TOOLS)
    except RecordingError:
        return
    except Exception as exc:  # noqa: BLE001 - what the attack is about
        pytest.fail(f"a crafted record made Session.attach raise {type(exc).__name__}: {exc}")
    await session.detach()


async def test_attach_with_a_signing_key_refuses_a_rewritten_record_stripped_of_its_signature(
        server: RunningServer, tmp_path: Path) -> None:
    """Attack: a record signed with the host's Ed25519 key is rewritten (a cell's code changed, chain recomputed) and
    its signature deleted. Attaching with the key re-signs the record, so it must refuse one the key did not
    sign as it is (as it refuses a wrong signature, and a missing HMAC): otherwise the forgery comes out
    'intact, signature valid'."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    notebook = tmp_path / "signed.ipynb"
    kernel_id = await detach_a_session(server, notebook, signing_key=key)

    def forge(document: dict[str, Any]) -> None:
        code = next(c for c in document["cells"] if "state = 'kept'" in "".join(c["source"]))
        code["source"] = "state = 'kept'  # and nothing else happened here, says the forger"
        del document["metadata"][fmt.METADATA_KEY]["chain"]["signature"]

    rechain(notebook, forge)
    try:
        session = await Session.attach(kernel_id, server=client(server), notebook=notebook, tools=TOOLS,
                                       signing_key=key)
    except RecordingError:
        return
    await session.close()
    report = audit_notebook(notebook, None, key.public_key())
    pytest.fail(f"the rewritten record was continued and signed: audit says {report.headline}")


@pytest.mark.parametrize("craft", ["symlink", "fifo", "huge", "not-chained", "sealed-then-detached",
                                   "ends-with-a-code-cell", "other-kernel", "deep-json", "directory"])
async def test_attach_refuses_crafted_records_before_touching_any_server(
        detached: tuple[str, Path], tmp_path: Path, craft: str) -> None:
    """Attack: records that must not be continued. Each is refused with a RecordingError before anything is sent:
    the server given is a closed port, so reaching for it would raise ServerUnreachableError instead."""
    kernel_id, template = detached
    notebook = tmp_path / "crafted.ipynb"
    if craft == "symlink":
        notebook.symlink_to(copy_record(detached, tmp_path, "real.ipynb"))
    elif craft == "fifo":
        os.mkfifo(notebook)
    elif craft == "huge":
        with notebook.open("wb") as f:
            f.truncate(300 * MiB)  # sparse: over the reader's 256 MiB cap
    elif craft == "directory":
        notebook.mkdir()
    elif craft == "deep-json":
        notebook.write_text("[" * 100_000 + "]" * 100_000)
    else:
        copy_record(detached, tmp_path, notebook.name)
        if craft == "not-chained":
            document = json.loads(notebook.read_text())
            document["cells"][1]["source"] = "print('not what ran')"
            notebook.write_text(json.dumps(document))
        elif craft == "sealed-then-detached":
            def seal(document: dict[str, Any]) -> None:
                note = document["cells"].pop()
                document["metadata"][fmt.METADATA_KEY]["end"] = {"reason": "closed", "head": ""}
                document["cells"].append(note)
            rechain(notebook, seal)
        elif craft == "ends-with-a-code-cell":
            rechain(notebook, lambda d: d["cells"].append(json.loads(json.dumps(d["cells"][1]))))
        elif craft == "other-kernel":
            rechain(notebook, lambda d: d["cells"][-1]["metadata"][fmt.METADATA_KEY]["kernel"].update(
                kernel_id="another", url="file:///etc"))
    closed = JupyterServer("http://127.0.0.1:9", token="t" * 32, request_timeout=5)
    with pytest.raises(RecordingError):
        await asyncio.wait_for(Session.attach(kernel_id, server=closed, notebook=notebook, tools=TOOLS), 30)
    assert template.is_file()


# ======================================================================================================
# `kernel-agent sessions list`: scanning a record directory
# ======================================================================================================


def test_listing_detached_records_skips_links_fifos_huge_and_hostile_files(
        detached: tuple[str, Path], tmp_path: Path) -> None:
    """Attack: the record directory holds, next to one genuine detached record, links (to a record elsewhere, to
    /dev/zero, to a FIFO), a FIFO, a sparse 100 MiB file, deep JSON, a directory named like a record, a
    notebook whose last cell is not an object, and a record with hostile kernel fields. The scan finishes,
    never follows a link or blocks, and maps only the genuine record."""
    kernel_id, _ = detached
    records = tmp_path / "records"
    records.mkdir()
    genuine = copy_record(detached, records, "genuine.ipynb")
    elsewhere = copy_record(detached, tmp_path, "elsewhere.ipynb")
    document = json.loads(genuine.read_text())
    (records / "a-link.ipynb").symlink_to(elsewhere)
    (records / "b-zero.ipynb").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    (records / "c-link-to-fifo.ipynb").symlink_to(tmp_path / "fifo")
    os.mkfifo(records / "d-fifo.ipynb")
    with (records / "e-huge.ipynb").open("wb") as f:
        f.truncate(100 * MiB)
    (records / "f-deep.ipynb").write_text("[" * 200_000 + "]" * 200_000)
    (records / "g-dir.ipynb").mkdir()
    (records / "h-cells.ipynb").write_text(json.dumps({"cells": [1, "x", None], "metadata": {}}))
    (records / "i-metadata.ipynb").write_text(json.dumps({"cells": [{"metadata": []}], "metadata": {}}))
    hostile = json.loads(json.dumps(document))
    hostile["cells"][-1]["metadata"][fmt.METADATA_KEY]["kernel"] = {"kernel_id": {"not": "a string"}}
    (records / "j-hostile.ipynb").write_text(json.dumps(hostile))
    found: list[dict[str, Path]] = []
    scan = threading.Thread(target=lambda: found.append(detached_records(records)), daemon=True)
    scan.start()
    scan.join(30)
    assert found, "the scan did not finish (blocked on a FIFO, or crashed)"
    assert found[0] == {kernel_id: genuine}


# ======================================================================================================
# Connection files (Session(connection_file=...))
# ======================================================================================================


@contextlib.contextmanager
def zmq_context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)


def test_crafted_connection_files_are_refused_without_blocking(tmp_path: Path) -> None:
    """Attack: a connection file that is a link, a FIFO, huge, deep JSON, or names ipc endpoints that are links to a
    socket elsewhere, or plain files. Each is refused with a KernelStartError, at once."""
    good = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "ip": "127.0.0.1",
            "key": "k", "transport": "tcp", "signature_scheme": "hmac-sha256"}
    real = tmp_path / "real.json"
    real.write_text(json.dumps(good))
    cases: dict[str, Path] = {}
    cases["link"] = tmp_path / "link.json"
    cases["link"].symlink_to(real)
    cases["fifo"] = tmp_path / "fifo.json"
    os.mkfifo(cases["fifo"])
    cases["huge"] = tmp_path / "huge.json"
    cases["huge"].write_text(json.dumps({**good, "pad": "x" * 200_000}))
    cases["deep"] = tmp_path / "deep.json"
    cases["deep"].write_text("[" * 50_000 + "]" * 50_000)
    cases["nan"] = tmp_path / "nan.json"
    cases["nan"].write_text(json.dumps(good).replace('"hb_port": 5', '"hb_port": NaN'))
    # ipc endpoints: <ip>-<port>. One planted as a link to a real socket elsewhere, one as a regular file.
    other = tmp_path / "elsewhere"
    other.mkdir()
    with zmq_context() as context, contextlib.closing(context.socket(zmq.ROUTER)) as real_socket:
        real_socket.setsockopt(zmq.LINGER, 0)
        real_socket.bind(f"ipc://{other}/kernel-1")
        ipc = tmp_path / "ipc"
        ipc.mkdir()
        for port in range(1, 6):
            (ipc / f"kernel-{port}").symlink_to(other / "kernel-1")
        cases["ipc-links"] = tmp_path / "ipc-links.json"
        cases["ipc-links"].write_text(json.dumps({**good, "transport": "ipc", "ip": str(ipc / "kernel")}))
        files = tmp_path / "files"
        files.mkdir()
        for port in range(1, 6):
            (files / f"kernel-{port}").write_text("")
        cases["ipc-files"] = tmp_path / "ipc-files.json"
        cases["ipc-files"].write_text(json.dumps({**good, "transport": "ipc", "ip": str(files / "kernel")}))
        for name, path in cases.items():
            outcome: list[BaseException | dict[str, Any]] = []

            def read(path: Path = path, outcome: list[BaseException | dict[str, Any]] = outcome) -> None:
                try:
                    outcome.append(read_connection_file(path))
                except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                    outcome.append(exc)

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            reader.join(10)
            assert outcome, f"{name}: reading the connection file blocked"
            assert isinstance(outcome[0], KernelStartError), f"{name}: {outcome[0]!r}"
        assert read_connection_file(real)["shell_port"] == 1


# ======================================================================================================
# A hostile server (a scripted websocket / HTTP endpoint on 127.0.0.1)
# ======================================================================================================

TOKEN = "tok-" + secrets.token_hex(16)
V1 = Subprotocol("v1.kernel.websocket.jupyter.org")


@contextlib.asynccontextmanager
async def websocket_endpoint(handler: Callable[[ServerConnection], Awaitable[None]], *, host: str = "127.0.0.1",
                             refuse: Callable[[HTTPRequest], HTTPResponse | None] | None = None,
                             seen: list[HTTPRequest] | None = None) -> AsyncIterator[str]:
    """A websocket endpoint running ``handler`` per connection (v1 subprotocol); its http:// base URL."""

    def check(connection: ServerConnection, request: HTTPRequest) -> HTTPResponse | None:
        if seen is not None:
            seen.append(request)
        return refuse(request) if refuse is not None else None

    async with serve(handler, host, 0, select_subprotocol=lambda c, offered: V1 if V1 in offered else None,
                     process_request=check, compression=None, max_size=None) as endpoint:
        port = next(iter(endpoint.sockets)).getsockname()[1]
        yield f"http://{host}:{port}/"


Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def http_endpoint(respond: Respond) -> AsyncIterator[str]:
    """A bare HTTP endpoint on 127.0.0.1 answering every connection with ``respond``; its URL. On exit every
    handler still running is cancelled and its connection closed."""
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await respond(reader, writer)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.ensure_future(handle(reader, writer)))

    endpoint = await asyncio.start_server(track, "127.0.0.1", 0)
    try:
        async with endpoint:
            yield f"http://127.0.0.1:{endpoint.sockets[0].getsockname()[1]}"
    finally:
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def _idle(connection: ServerConnection) -> None:
    await connection.wait_closed()


async def test_a_websocket_redirect_to_another_host_never_carries_the_token() -> None:
    """Attack: the server answers the websocket handshake with a redirect to another host (127.0.0.2), and its REST
    API with a redirect too. The other host never sees the token; REST does not follow at all."""
    seen: list[HTTPRequest] = []
    async with websocket_endpoint(_idle, host="127.0.0.2", seen=seen) as elsewhere:
        target = elsewhere.replace("http://", "ws://") + "api/kernels/k/channels"

        def redirect(request: HTTPRequest) -> HTTPResponse:
            return HTTPResponse(302, "Found", Headers({"Location": target, "Content-Length": "0"}), b"")

        async with websocket_endpoint(_idle, refuse=redirect) as url:
            channels = WebSocketChannels(Rest(url, TOKEN, timeout=10, verify=True), "k", open_timeout=10)
            with contextlib.suppress(JupyterServerError, KernelStartError):
                await channels.open()
            await channels.close()
            async with JupyterServer(url, token=TOKEN, request_timeout=10) as jupyter:
                with pytest.raises(JupyterServerError) as raised:
                    await jupyter.kernel("k")
            assert TOKEN not in str(raised.value)
    assert all(TOKEN not in str(request.headers) for request in seen), "the token followed the redirect"


async def test_errors_from_a_hostile_server_never_show_the_token() -> None:
    """Attack: the server echoes the token back everywhere it can: in 401, 403 and 500 bodies (plain, in HTML
    attributes and scripts, JSON-escaped, URL-encoded), in a websocket handshake refusal and in the close reason.
    No error message or repr holds it."""
    quoted = TOKEN.replace("-", "%2D")
    escaped = "".join(f"\\u{ord(ch):04x}" for ch in TOKEN)
    bodies = {
        401: f"<html><body data-token='{TOKEN}'><script>var t='{TOKEN}'</script>{TOKEN}</body></html>",
        403: json.dumps({"message": "refused"})[:-1] + f', "reason": "\\"{escaped}\\" {quoted}"}}',
        500: json.dumps({"message": f"bad token {TOKEN}", "traceback": f"Traceback\nValueError: {TOKEN}"}),
        502: "x" * 290 + TOKEN,  # the token straddles the excerpt's cut
    }
    messages: list[str] = []
    for status, body in bodies.items():
        def refuse(request: HTTPRequest, status: int = status, body: str = body) -> HTTPResponse:
            return HTTPResponse(status, "No", Headers({"Content-Type": "text/html", "Content-Length": str(len(body))}),
                                body.encode())

        async with websocket_endpoint(_idle, refuse=refuse) as url, \
                JupyterServer(url, token=TOKEN, request_timeout=10) as jupyter:
            for call in (jupyter.kernel_specs(), jupyter.kernel("k"), jupyter.start_kernel(timeout=10)):
                with pytest.raises(JupyterServerError) as raised:
                    await call
                messages += [str(raised.value), repr(raised.value)]
            channels = WebSocketChannels(jupyter.rest, "k", open_timeout=10)
            with pytest.raises((JupyterServerError, KernelStartError)) as raised_ws:
                await channels.open()
            messages += [str(raised_ws.value), repr(jupyter)]

    async def close_with_the_token(connection: ServerConnection) -> None:
        await connection.close(1011, f"kernel {TOKEN} gone")

    async with websocket_endpoint(close_with_the_token) as url:
        channels = WebSocketChannels(Rest(url, TOKEN, timeout=10, verify=True), "k", open_timeout=10)
        await channels.open()
        await asyncio.wait_for(channels.ended.wait(), 10)
        messages.append(str(channels.end_reason))
        await channels.close()
    assert messages and not [m for m in messages if TOKEN in m or quoted in m]


@pytest.mark.serial  # host RSS is measured (tests/run_suite.py)
async def test_a_compressed_rest_answer_is_capped_by_what_it_inflates_to() -> None:
    """Attack: a 250 kB gzip body that inflates to 256 MiB, sent though the host asked for no compression. The cap
    counts inflated bytes: the request fails with a named error and the host's RSS barely moves."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (16 * MiB)
    body = b"".join(packer.compress(zeros) for _ in range(16)) + packer.flush()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    async with http_endpoint(respond) as url, JupyterServer(url, token=TOKEN, request_timeout=20) as jupyter:
        gc.collect()
        with PeakMemory() as rss, pytest.raises(ServerHTTPError, match="more than 8 MiB"):
            await jupyter.kernel_specs()
    assert rss.growth < 128 * MiB, f"host RSS peaked {rss.growth / MiB:.0f} MiB up"


async def test_a_server_that_drips_its_answers_is_given_up_within_the_timeouts() -> None:
    """Attack: the server answers REST with headers then one body byte every 0.2 s forever, and the websocket
    handshake one byte every 0.2 s. Both end in named errors within their timeouts (no hang)."""
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if b"Upgrade: websocket" in request:
            for byte in b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n":
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            while True:
                writer.write(b"1\r\n \r\n")
                await writer.drain()
                await asyncio.sleep(0.2)

    async with http_endpoint(drip) as url, JupyterServer(url, token=TOKEN, request_timeout=2) as jupyter:
        with pytest.raises(ServerUnreachableError, match="within 2 s"):
            await asyncio.wait_for(jupyter.kernel_specs(), 20)
        channels = WebSocketChannels(jupyter.rest, "k", open_timeout=2)
        with pytest.raises((KernelStartError, JupyterServerError)):
            await asyncio.wait_for(channels.open(), 20)
        await channels.close()


async def test_hostile_kernel_models_never_reach_a_url_path() -> None:
    """Attack: the server lists kernels whose ids are paths, URLs or huge; each is refused as a malformed model,
    and no request goes anywhere but the server's own API."""
    listed = [{"id": "../../../etc/passwd"}, {"id": "http://evil.example/"}, {"id": "a" * 10_000},
              {"id": {"nested": 1}}, {"id": "ok-id", "name": "x" * 100_000, "connections": True,
                                      "last_activity": "9" * 10_000}]
    paths: list[str] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ")[1]
        paths.append(path.decode())
        # By the path only: the random token in the headers may spell "bad" too.
        body = json.dumps(listed[:4] if path.startswith(b"/bad/") else listed[4:]).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    async with http_endpoint(respond) as base:
        async with JupyterServer(base + "/bad", token=TOKEN) as jupyter:
            with pytest.raises(ServerHTTPError, match="malformed kernel model"):
                await jupyter.list_kernels()
        async with JupyterServer(base + "/good", token=TOKEN) as jupyter:
            [kernel] = await jupyter.list_kernels()
    assert kernel.id == "ok-id" and len(kernel.name) <= 200 and kernel.connections == 0
    assert kernel.last_activity is None
    assert paths == ["/bad/api/kernels", "/good/api/kernels"]


@pytest.mark.serial  # host RSS is measured (tests/run_suite.py)
async def test_an_endless_stream_of_small_frames_keeps_host_memory_flat() -> None:
    """Attack: the server sends 30,000 small iopub messages that answer nobody, then garbage, as fast as it can.
    Each is dropped (or handed on) as it comes: host memory stays flat and the channels still route a reply."""
    from jupyter_server.services.kernels.connection.base import (
        deserialize_msg_from_ws_v1,
        serialize_msg_to_ws_v1,
    )

    def frame(msg_type: str, content: Any, parent: str | None = None) -> bytes:
        header = json.dumps({"msg_id": secrets.token_hex(8), "msg_type": msg_type, "session": "s"}).encode()
        parts = [header, json.dumps({"msg_id": parent} if parent else {}).encode(), b"{}", json.dumps(content).encode()]
        channel = "iopub" if msg_type != "kernel_info_reply" else "shell"
        return bytes(serialize_msg_to_ws_v1(parts, channel))  # type: ignore[no-untyped-call]

    status = frame("status", {"execution_state": "busy"})
    garbage = [b"\x00" * 8, b"\xff" * 64, frame("stream", {"text": float("nan")}), b"[" * 60_000]

    async def handler(connection: ServerConnection) -> None:
        _, parts = deserialize_msg_from_ws_v1(await connection.recv())  # type: ignore[no-untyped-call]
        request = json.loads(parts[0])["msg_id"]
        for i in range(30_000):
            await connection.send(status if i % 500 else garbage[(i // 500) % len(garbage)])
        await connection.send(frame("kernel_info_reply", {"status": "ok"}, request))
        await connection.wait_closed()

    async with websocket_endpoint(handler) as url:
        channels = WebSocketChannels(Rest(url, TOKEN, timeout=10, verify=True), "k", open_timeout=10)
        await channels.open()
        unrouted = 0

        def count(message: Any) -> None:
            nonlocal unrouted
            unrouted += 1

        channels.unrouted_iopub = count
        gc.collect()
        with PeakMemory() as rss:
            request = channels.send("shell", "kernel_info_request", {})
            reply = await asyncio.wait_for(request.reply, 60)
        await channels.close()
    assert reply["content"] == {"status": "ok"} and unrouted >= 29_000
    assert rss.growth < 64 * MiB, f"host RSS peaked {rss.growth / MiB:.0f} MiB up"


# ======================================================================================================
# The Enterprise Gateway relay (python -m kernel_agent.kernelspec.gateway)
# ======================================================================================================


@contextlib.contextmanager
def gateway_launcher(directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], ProtocolSession]]:
    """The launcher as a gateway runs it: a TCP connection file, the kernel confined behind the relay."""
    key = secrets.token_hex(16).encode()
    path, info = write_connection_file(str(directory / "gateway-kernel.json"), transport="tcp", ip="127.0.0.1",
                                       key=key)
    process = subprocess.Popen([sys.executable, "-m", "kernel_agent.kernelspec.gateway", "-f", path], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process, dict(info), ProtocolSession(key=key)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def test_the_gateway_relay_holds_a_bounded_backlog_of_kernel_output(tmp_path: Path) -> None:
    """Attack: the kernel re-sends one 39 MiB iopub message 100 times while the gateway side reads output slowly
    (a subscriber with a one-message queue). The relay runs on the host, outside the sandbox's memory limit:
    it may hold a few messages, as the host's own connection does (8 x 40 MiB), never the whole flood. Cap:
    1 GiB of launcher RSS growth."""
    with gateway_launcher(tmp_path) as (process, info, protocol), zmq_context() as context:
        shell = context.socket(zmq.DEALER)
        iopub = context.socket(zmq.SUB)
        try:
            for socket in (shell, iopub):
                socket.setsockopt(zmq.LINGER, 0)
            shell.connect(f"tcp://127.0.0.1:{info['shell_port']}")
            iopub.setsockopt(zmq.RCVHWM, 1)
            iopub.setsockopt(zmq.RCVBUF, 64 * 1024)
            iopub.setsockopt(zmq.SUBSCRIBE, b"")
            iopub.connect(f"tcp://127.0.0.1:{info['iopub_port']}")
            for _ in range(120):
                protocol.send(shell, "kernel_info_request", {})
                if shell.poll(1000):
                    protocol.recv(shell)
                    break
                assert process.poll() is None, "the launcher exited"
            else:
                pytest.fail("the kernel behind the relay never answered")
            launcher = psutil.Process(process.pid)
            with contextlib.suppress(OSError):  # reset the launcher's RSS high-water mark (VmHWM)
                Path(f"/proc/{process.pid}/clear_refs").write_text("5")
            start = peak = launcher.memory_info().rss
            protocol.send(shell, "execute_request", {"code": cell("""
                import time
                _k = get_ipython().kernel
                _m = _k.session.msg("stream", {"name": "stdout", "text": "x" * (39 * 1024**2)}, parent={})
                _frames = _k.session.serialize(_m)
                for _ in range(100):  # paced, so that the kernel's own PUB queue never drops any
                    _k.iopub_socket.send_multipart(_frames, copy=False)
                    time.sleep(0.02)
                time.sleep(2)
            """), "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False,
                "stop_on_error": True})
            replied = False
            for _ in range(1200):  # up to 60 s, sampling the launcher's RSS every 50 ms
                peak = max(peak, launcher.memory_info().rss)
                if shell.poll(50):
                    _, message = protocol.recv(shell)
                    replied = message is not None and message["msg_type"] == "execute_reply"
                    if replied:
                        break
            assert replied, "the flooding cell never finished"
            with contextlib.suppress(OSError, IndexError, ValueError):
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak = max(peak, int(status.split("VmHWM:")[1].split()[0]) * 1024)
        finally:
            shell.close(linger=0)
            iopub.close(linger=0)
    growth = peak - start
    assert growth < 1024 * MiB, f"the relay (a host process) held {growth / MiB:.0f} MiB of kernel output"
