"""Resource exhaustion: processes, threads, memory, /tmp, /dev/shm, file size, the kernel log.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psutil
import pytest

from kernel_agent import CellStatus, Session

from ..conftest import PeakRss, sandbox_processes
from .support import (
    FILE_SIZE_LIMIT,
    MEMORY_LIMIT,
    PROCESS_LIMIT,
    TAG,
    TMP_LIMIT,
    HostBaseline,
    MiB,
    assert_host_healthy,
    assert_session_healthy,
    attack,
    cgroup_file,
    describe,
    provisioner_of,
    reported,
    sandbox_tree,
    wait_until_gone,
)

# serial: fork bombs and memory hogs load the machine, host RSS and the host's shared memory (all of it) are
# measured (tests/run_suite.py runs these alone).
pytestmark = pytest.mark.serial

# --------------------------------------------------------------------------
# Resource exhaustion
# --------------------------------------------------------------------------


async def test_fork_bomb_is_contained(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: a fork bomb. The pids cgroup caps it, the host stays responsive, the session answers, all reaped."""
    run_dir = provisioner_of(limited).run_dir
    pids_current = cgroup_file(limited, "pids.current")
    outcome = await attack(limited, """
        import time
        forked, error = 0, None
        try:
            while True:
                if os.fork() == 0:
                    try:
                        while True:
                            try:
                                os.fork()
                            except OSError:
                                time.sleep(0.2)
                    finally:
                        os._exit(0)
                forked += 1
        except OSError as exc:
            error = _errno.errorcode.get(exc.errno)
        report(forked=forked, error=error)
    """, timeout=30)
    data = reported(outcome)
    assert data["error"] == "EAGAIN" and data["forked"] < PROCESS_LIMIT
    if pids_current is not None:
        assert int(pids_current.read_text()) <= PROCESS_LIMIT
    assert len(sandbox_processes(run_dir)) <= PROCESS_LIMIT + 2
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)
    procs = sandbox_tree(limited)
    await limited.close()
    assert wait_until_gone(procs) == []


async def test_thread_bomb_is_contained(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: start threads until it fails. The pids cgroup caps it; the host and the session stay responsive."""
    pids_current = cgroup_file(limited, "pids.current")
    outcome = await attack(limited, """
        import threading
        release = threading.Event()
        started, error = 0, None
        try:
            while started < 100_000:
                threading.Thread(target=release.wait, daemon=True).start()
                started += 1
        except RuntimeError as exc:
            error = str(exc)
        report(started=started, error=error)
    """, timeout=30)
    data = reported(outcome)
    assert data["error"] is not None and data["started"] < PROCESS_LIMIT
    if pids_current is not None:
        assert int(pids_current.read_text()) <= PROCESS_LIMIT
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)


async def test_memory_bomb_kills_only_the_kernel(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: allocate without end. The kernel dies naming the memory limit; the host is fine; a fresh kernel runs."""
    await limited.execute("before_bomb = 1")
    with PeakRss() as rss:
        cell = await limited.execute("hog = []\nwhile True:\n    hog.append(b'\\x01' * (64 * 1024**2))", timeout=60)
    assert cell.status is CellStatus.KERNEL_DIED, describe(cell)
    assert cell.error is not None and "memory limit" in cell.error.evalue
    assert cell.kernel_restarted and cell.state_lost
    assert rss.growth < 100 * MiB
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)
    assert (await limited.execute("'before_bomb' in dir()")).result == "False"


async def test_filling_tmp_stops_at_the_tmpfs_size(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: fill /tmp. Writes stop with ENOSPC at tmp_size_bytes; nothing lands in the host's temp dir."""
    host_tmp = Path(tempfile.gettempdir())
    outcome = await attack(limited, """
        written, error = 0, None
        try:
            for i in range(16):
                with open(f"/tmp/fill-{P['tag']}-{i}", "wb") as f:
                    for _ in range(7):
                        f.write(b"\\1" * (1024 * 1024))
                        f.flush()
                        written += 1024 * 1024
        except OSError as exc:
            error = _errno.errorcode.get(exc.errno)
        report(written=written, error=error)
    """, tag=TAG)
    data = reported(outcome)
    assert data["error"] == "ENOSPC"
    assert data["written"] <= TMP_LIMIT
    assert list(host_tmp.glob(f"fill-{TAG}-*")) == []
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)


async def test_filling_dev_shm_is_bounded_by_the_memory_limit(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: fill the RAM-backed /dev and /dev/shm (not covered by the /tmp size). The memory cgroup bounds it."""
    shmem_before = psutil.virtual_memory().shared
    outcome = await attack(limited, """
        written, error = 0, None
        try:
            for i in range(160):  # 1.1 GiB in files below the per-file size limit
                for directory in ("/dev/shm", "/dev"):
                    with open(f"{directory}/fill-{i}", "wb") as f:
                        f.write(b"\\1" * (7 * 1024 * 1024))
                    written += 7 * 1024 * 1024
        except OSError as exc:
            error = _errno.errorcode.get(exc.errno)
        report(written=written, error=error)
    """)
    cell = outcome.cell
    if cell.status is CellStatus.KERNEL_DIED:
        assert cell.error is not None and "memory limit" in cell.error.evalue
    else:
        data = reported(outcome)
        assert data["error"] is not None and data["written"] <= MEMORY_LIMIT
    await assert_session_healthy(limited)
    held = psutil.virtual_memory().shared - shmem_before
    assert held < 256 * MiB, f"host RAM still held by the sandbox's tmpfs after the attack: {held / MiB:.0f} MiB"
    assert_host_healthy(host_baseline)


async def test_workspace_file_size_is_capped(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: write, truncate and fallocate huge workspace files. Each stops at file_size_bytes on the host disk."""
    outcome = await attack(limited, """
        results = {}
        def write_big():
            with open("big.bin", "wb") as f:
                for _ in range(32):
                    f.write(b"\\1" * (1024 * 1024))
        results["write"] = attempt(write_big)
        open("sparse.bin", "wb").close()
        results["truncate"] = attempt(os.truncate, "sparse.bin", 1 << 40)
        fd = os.open("alloc.bin", os.O_WRONLY | os.O_CREAT)
        results["fallocate"] = attempt(os.posix_fallocate, fd, 0, 1 << 30)
        os.close(fd)
        report(results=results)
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    assert data["results"]["write"]["errno"] == "EFBIG"
    for name in ("big.bin", "sparse.bin", "alloc.bin"):
        assert (limited.workspace / name).stat().st_size <= FILE_SIZE_LIMIT
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)


async def test_kernel_log_flood_is_capped(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: write straight to fd 1/2, which end in the host-side kernel log. The log stops at file_size_bytes."""
    log_path = provisioner_of(limited).log_path
    assert log_path is not None
    cell = await limited.execute(
        "import os\nchunk = b'y' * (1024 * 1024)\nfor i in range(32):\n    os.write(1 + i % 2, chunk)", timeout=3
    )
    assert cell.status in (CellStatus.OK, CellStatus.ERROR, CellStatus.TIMEOUT), describe(cell)
    assert log_path.stat().st_size <= FILE_SIZE_LIMIT
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)
