"""Sessions whose kernels live on a real Jupyter Server or Kernel Gateway on 127.0.0.1.

Tools run on this host (the kernel holds only the SDK); the record is this
host's; detach leaves the kernel and its state on the server, and a later
process attaches by kernel id and notebook, continuing one audited record.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kernel_agent import CellStatus, KernelPool, RecordingError, Session, tool_from_function
from kernel_agent.runtime.remote import JupyterServer
from kernel_agent.verify.audit import audit_notebook

from .conftest import RunningServer

SECRET = "host-only-secret-value"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def checksum(data: bytes) -> int:
    """The sum of the bytes (the secret never leaves the host)."""
    return sum(data) + len(SECRET) * 0


TOOLS = [tool_from_function(add), tool_from_function(checksum)]


@pytest.fixture(params=["jupyter_server", "kernel_gateway"])
def server(request: pytest.FixtureRequest) -> RunningServer:
    running: RunningServer = request.getfixturevalue(request.param)
    return running


def client(server: RunningServer, **options: object) -> JupyterServer:
    return JupyterServer(server.url, token=server.token, **options)  # type: ignore[arg-type]


async def test_a_session_on_a_server_runs_cells_and_host_tools_and_is_recorded(
        server: RunningServer, tmp_path: Path) -> None:
    notebook = tmp_path / "remote.ipynb"
    async with Session(server=client(server), tools=TOOLS, notebook=notebook) as session:
        backend = session.backend
        assert backend["kind"] == "jupyter-server" and backend["url"] == server.url
        assert server.token not in json.dumps(backend)
        first = await session.execute("x = tools.add(2, 3)\nprint(x)")
        assert first.stdout == "5\n", first
        # bytes cross as binary websocket buffers, both ways
        second = await session.execute("print(x, tools.checksum(bytes(range(256))))")
        assert second.stdout == f"5 {sum(range(256))}\n", second
        assert [c.status.value for c in second.tool_calls] == ["ok"]
        secret = await session.execute("import os\nprint(sorted(k for k in os.environ if 'SECRET' in k))")
        assert SECRET not in secret.stdout
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    assert report.summary.tool_calls == 2
    assert server.token not in notebook.read_text()


async def test_interrupt_timeout_and_restart_on_a_server(server: RunningServer) -> None:
    async with Session(server=client(server), notebook=False) as session:
        kernel_id = session.backend["kernel_id"]
        await session.execute("kept = 1")
        stuck = await session.execute("import time\nwhile True: time.sleep(0.05)", timeout=1)
        assert stuck.status is CellStatus.TIMEOUT and stuck.error is not None
        assert stuck.error.ename == "KeyboardInterrupt" and not stuck.state_lost
        assert (await session.execute("print(kept)")).stdout == "1\n"
        await session.restart()
        assert session.backend["kernel_id"] == kernel_id, "a server's kernel restarts under its id"
        lost = await session.execute("print(kept)")
        assert lost.status is CellStatus.ERROR and lost.error is not None and lost.error.ename == "NameError"


_DETACHING_PROCESS = textwrap.dedent("""
    import asyncio, json, os, sys
    from kernel_agent import Session, tool_from_function
    from kernel_agent.runtime.remote import JupyterServer
    from tests.remote.test_sessions import TOOLS

    async def main():
        server = JupyterServer(os.environ["URL"], token=os.environ["TOKEN"])
        session = await Session(server=server, tools=TOOLS, notebook=sys.argv[1]).start()
        result = await session.execute("data = [tools.add(i, i) for i in range(5)]\\nprint(sum(data))")
        assert result.stdout == "20\\n", result
        detached = await session.detach()
        print(json.dumps({"kernel_id": detached.kernel_id, "notebook": str(detached.notebook)}))

    asyncio.run(main())
""")


async def test_detach_in_one_process_attach_in_another_after_it_exited(
        jupyter_server: RunningServer, tmp_path: Path) -> None:
    notebook = tmp_path / "long.ipynb"
    env = {**os.environ, "URL": jupyter_server.url, "TOKEN": jupyter_server.token}
    finished = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _DETACHING_PROCESS, str(notebook)], env=env, capture_output=True,
        text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert finished.returncode == 0, finished.stderr
    detached = json.loads(finished.stdout.strip().splitlines()[-1])
    kernel_id = detached["kernel_id"]
    # The first host is gone; the kernel and its state are not.
    assert kernel_id in {k["id"] for k in jupyter_server.api("GET", "/api/kernels")}
    between = audit_notebook(notebook)
    assert between.verdict == "incomplete" and "detached from kernel" in between.problems[0].message

    async with await Session.attach(kernel_id, server=client(jupyter_server), notebook=notebook,
                                    tools=TOOLS) as session:
        result = await session.execute("print(sum(data), tools.add(sum(data), 1))")
        assert result.stdout == "20 21\n", result
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    assert report.summary.steps == 2 and report.summary.tool_calls == 6
    [gap] = report.summary.gaps
    assert gap.kernel_id == kernel_id and gap.attached_at is not None and gap.gap_seconds is not None
    assert gap.detached_by["pid"] != gap.attached_by["pid"]
    assert kernel_id not in {k["id"] for k in jupyter_server.api("GET", "/api/kernels")}, "close ends the kernel"


async def test_attach_refuses_other_tools_another_kernel_and_a_sealed_record(
        jupyter_server: RunningServer, tmp_path: Path) -> None:
    notebook = tmp_path / "refusals.ipynb"
    session = await Session(server=client(jupyter_server), tools=TOOLS, notebook=notebook).start()
    await session.execute("state = 'kept'")
    detached = await session.detach()
    with pytest.raises(RecordingError, match="not the ones"):
        await Session.attach(detached.kernel_id, server=client(jupyter_server), notebook=notebook,
                             tools=[tool_from_function(add)])
    with pytest.raises(RecordingError, match="detached from kernel"):
        await Session.attach("0" * 32, server=client(jupyter_server), notebook=notebook, tools=TOOLS)
    # Refused attaches touched nothing: the kernel still holds its state.
    async with await Session.attach(detached.kernel_id, server=client(jupyter_server), notebook=notebook,
                                    tools=TOOLS) as again:
        assert (await again.execute("print(state)")).stdout == "kept\n"
    with pytest.raises(RecordingError, match="sealed"):
        await Session.attach(detached.kernel_id, server=client(jupyter_server), notebook=notebook, tools=TOOLS)


async def test_twenty_concurrent_sessions_through_one_server(jupyter_server: RunningServer) -> None:
    async with KernelPool(size=4, server=client(jupyter_server)) as pool:
        sessions = await asyncio.gather(*(pool.session(tools=TOOLS, notebook=False) for _ in range(20)))
        try:
            results = await asyncio.gather(*(
                s.execute(f"mine = {n}\nprint(tools.add(mine, 1000))") for n, s in enumerate(sessions)))
            assert [r.stdout for r in results] == [f"{n + 1000}\n" for n in range(20)]
            again = await asyncio.gather(*(s.execute("print(mine)") for s in sessions))
            assert [r.stdout for r in again] == [f"{n}\n" for n in range(20)], "each session has its own kernel"
            assert len({s.backend["kernel_id"] for s in sessions}) == 20
        finally:
            await asyncio.gather(*(s.close() for s in sessions))


async def test_a_kernel_culled_by_the_server_is_named_and_the_record_sealed(tmp_path: Path) -> None:
    from .conftest import running_server

    culling = ["--MappingKernelManager.cull_idle_timeout=2", "--MappingKernelManager.cull_interval=1",
               "--MappingKernelManager.cull_connected=True"]
    notebook = tmp_path / "culled.ipynb"
    (tmp_path / "server").mkdir()
    with running_server("jupyter-server", tmp_path / "server", extra_args=culling) as server:
        session = await Session(server=client(server), notebook=notebook).start()
        kernel_id = session.backend["kernel_id"]
        await session.execute("x = 1")
        # The server culls the idle kernel: wait for that event (its listing no longer has it).
        while kernel_id in {k["id"] for k in await asyncio.to_thread(server.api, "GET", "/api/kernels")}:
            await asyncio.sleep(0.2)
        lost = await session.execute("print(x)")
        assert lost.status is CellStatus.KERNEL_DIED and lost.state_lost and lost.error is not None
        assert "culled" in lost.error.evalue or "shut down" in lost.error.evalue, lost.error.evalue
        # A kernel of the same kernelspec took its place (the culled id is gone for good).
        assert session.backend["kernel_id"] != kernel_id
        assert (await session.execute("print('fresh')")).stdout == "fresh\n"
        await session.close()
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline


async def test_bad_url_and_bad_token_are_named_without_the_token(jupyter_server: RunningServer) -> None:
    from kernel_agent import ServerAuthError, ServerUnreachableError

    wrong = "wrong-token-" + "y" * 20
    with pytest.raises(ServerAuthError) as refused:
        await Session(server=JupyterServer(jupyter_server.url, token=wrong), notebook=False).start()
    assert wrong not in str(refused.value)
    with pytest.raises(ServerUnreachableError, match="127.0.0.1:9"):
        await Session(server=JupyterServer("http://127.0.0.1:9", token=wrong, request_timeout=5),
                      notebook=False).start()
