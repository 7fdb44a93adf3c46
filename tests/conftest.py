"""Shared fixtures: real sandboxed kernels, one per test unless a test shares one."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from kernel_agent import Session

from .run_suite import COUNTS_ENV


@pytest.fixture(scope="session", autouse=True)
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where sessions record by default during the tests (KERNEL_AGENT_RECORD_DIR): never the user's own."""
    path = tmp_path_factory.mktemp("records")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERNEL_AGENT_RECORD_DIR", str(path))
        yield path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """For tests/run_suite.py: this run's outcome counts, so it can add up its two phases (xdist's controller)."""
    path = os.environ.get(COUNTS_ENV)
    if path and not hasattr(config, "workerinput"):
        outcomes = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
        counts = {outcome: len(terminalreporter.stats.get(outcome, [])) for outcome in outcomes}
        Path(path).write_text(json.dumps(counts))


# Under xdist (./dev.sh test's first phase) each worker takes one test file at a time, in collection order: the
# longest files (seconds in a run on 4 workers, most first) go first, so none is left running alone at the end.
LONGEST_FILES_FIRST = (
    "test_readme.py", "cli/test_run.py", "kernelspec/test_jupyter_reexecution.py", "remote/test_server_client.py",
    "remote/test_sessions.py", "cli/test_resume_run.py", "remote/test_sessions_cli.py", "packages/test_install.py",
    "session/test_session.py", "verify/test_replay.py", "packages/test_recorded_installs.py", "tools/test_bridge.py",
    "verify/test_audit.py", "attacks/test_crafted_notebooks.py", "cli/test_demo_analysis.py",
    "record/test_recording.py", "cli/test_commands.py", "remote/test_websocket_channels.py",
    "attacks/test_remote_attacks.py", "cli/test_run_live.py", "runtime/test_connection.py",
    "experiment/test_experiment.py", "skills/test_session_skills.py", "skills/test_session_cli.py",
    "cli/test_experiment_command.py", "skills/test_session_attacks.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers: the longest files first, each file's own order kept (a stable sort)."""
    if not hasattr(config, "workerinput"):
        return
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0].removeprefix("tests/"), len(rank)))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace directory for one test."""
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
async def session(workspace: Path) -> AsyncIterator[Session]:
    """A started session with the default (strict) sandbox policy."""
    async with Session(workspace, default_timeout=60) as started:
        yield started


def sandbox_processes(run_dir: Path | None = None) -> list[int]:
    """PIDs of host processes of kernel-agent sandboxes (only the one using ``run_dir`` if given)."""
    marker = str(run_dir).encode() if run_dir is not None else b"kernel_agent.kernel"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


class LoopStallMonitor:
    """The longest time the host's event loop could not run a task (beyond the tick's own sleep)."""

    def __init__(self, tick: float = 0.02) -> None:
        self.tick = tick
        self.max_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last - self.tick)
            last = now

    async def __aenter__(self) -> LoopStallMonitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class PeakRss:
    """This process's peak RSS growth, sampled from a thread (a stalled loop cannot stop it)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.start = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        """Bytes the peak RSS rose above the start."""
        return self.peak - self.start
