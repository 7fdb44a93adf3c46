"""The executor's lifetime: a dropped executor closes its session, cleanup() from another thread interrupts a
running step, one step at a time (a second caller is refused, not left waiting), Ctrl-C interrupts the cell."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from smolagents import Tool

from kernel_agent import KernelPool, audit_notebook
from kernel_agent.errors import SessionClosedError
from kernel_agent.integrations.smolagents import ExecutorBusyError, KernelAgentExecutor


class StepStarted(Tool):  # type: ignore[misc]
    """A host tool the step calls once it runs, so a test can act while it does (no sleeps: an event)."""

    name = "step_started"
    description = "Says the step is running."
    inputs: dict[str, Any] = {}  # noqa: RUF012
    output_type = "boolean"

    def __init__(self, release: threading.Event | None = None) -> None:
        super().__init__()
        self.event = threading.Event()
        self.release = release

    def forward(self) -> bool:
        self.event.set()
        return self.release.wait(120) if self.release is not None else True


def _children() -> set[int]:
    """This process's live child processes (the sandboxes of its kernels)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.add(int(entry))
    return found


def test_an_executor_dropped_without_cleanup_closes_its_session(tmp_path: Path) -> None:
    """A CodeAgent made per request and forgotten: its kernel, loop thread and unsealed notebook must not stay."""
    before, threads = _children(), set(threading.enumerate())
    notebook = tmp_path / "dropped.ipynb"
    executor = KernelAgentExecutor(notebook=notebook, default_timeout=60)
    executor("x = 1")
    session = executor.session
    assert session is not None and session.started
    kernels = _children() - before
    assert kernels
    del executor
    gc.collect()
    assert not session.started
    assert not kernels & _children()
    assert set(threading.enumerate()) <= threads
    assert audit_notebook(notebook).verdict == "intact"


def test_an_executor_alive_at_interpreter_exit_seals_its_notebook(tmp_path: Path) -> None:
    notebook = tmp_path / "at-exit.ipynb"
    code = dedent(f"""
        from kernel_agent.integrations.smolagents import KernelAgentExecutor
        kept = KernelAgentExecutor(notebook={str(notebook)!r}, default_timeout=60)
        kept("x = 1")
        print(kept.session.started)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "True"
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.problems
    assert "kernel-agent: session" not in run.stderr


def test_cleanup_from_another_thread_interrupts_the_running_step(tmp_path: Path) -> None:
    """A watchdog closing the agent mid-step: the step ends with a named error, nothing hangs or stays behind."""
    started = StepStarted()
    before = _children()
    notebook = tmp_path / "interrupted.ipynb"
    executor = KernelAgentExecutor(notebook=notebook, default_timeout=600)
    executor.send_tools({"step_started": started})
    watchdog = threading.Thread(target=lambda: (started.event.wait(120), executor.cleanup()))
    watchdog.start()
    try:
        with pytest.raises(SessionClosedError, match="cleaned up while this step ran"):
            executor("import time\nstep_started()\nwhile True:\n    time.sleep(0.01)")
    finally:
        watchdog.join()
    assert executor.session is None and not _children() - before
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.problems
    with pytest.raises(SessionClosedError, match="cleaned up"):
        executor("1")


def test_a_second_caller_is_refused_while_a_step_runs() -> None:
    """Two agents sharing one executor (or two threads of one program): refused at once, the first step unharmed."""
    release = threading.Event()
    started = StepStarted(release)
    refused: list[BaseException] = []

    with KernelAgentExecutor(notebook=False, default_timeout=120) as executor:
        executor.send_tools({"step_started": started})

        def second_caller() -> None:
            started.event.wait(120)
            for call in (lambda: executor("1"), lambda: executor.send_variables({"v": 1}),
                         lambda: executor.send_tools({"step_started": started})):
                try:
                    call()
                except ExecutorBusyError as exc:
                    refused.append(exc)
            release.set()

        other = threading.Thread(target=second_caller)
        other.start()
        # The step's host tool waits (bounded) until the other thread was refused three times.
        output = executor("print(step_started() and 'running')")
        other.join()
        assert output.logs == "running\n"
        assert len(refused) == 3 and all("one step at a time" in str(exc) for exc in refused)
        assert executor("print('after')").logs == "after\n"


def test_ctrl_c_in_the_agent_s_thread_interrupts_the_cell() -> None:
    """KeyboardInterrupt while a step waits: the cell is interrupted (not left running), the kernel keeps its state."""

    class Interrupt(Tool):  # type: ignore[misc]
        name = "press_ctrl_c"
        description = "Sends SIGINT to the agent's (main) thread."
        inputs: dict[str, Any] = {}  # noqa: RUF012
        output_type = "boolean"

        def forward(self) -> bool:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            return True

    assert threading.current_thread() is threading.main_thread()
    with KernelAgentExecutor(notebook=False, default_timeout=600) as executor:
        executor.send_tools({"press_ctrl_c": Interrupt()})
        executor("kept = 'still here'")
        with pytest.raises(KeyboardInterrupt):
            executor("press_ctrl_c()\nwhile True:\n    pass")
        # Without the cancellation this step would wait for the endless cell's 600 s timeout.
        assert executor("print(kept)").logs == "still here\n"


def test_the_pool_s_event_loop_is_public() -> None:
    assert KernelPool(size=1).loop is None  # not started: the executor refuses it (see test_smolagents_executor)


def test_a_failing_step_after_cleanup_is_no_crash() -> None:
    executor = KernelAgentExecutor(notebook=False)
    executor.cleanup()
    executor.cleanup()  # idempotent
    with pytest.raises(SessionClosedError):
        executor("1")
    with pytest.raises(SessionClosedError):
        executor.send_tools({})


def test_an_executor_collected_on_its_pool_s_loop_closes_without_blocking_it() -> None:
    """The collector may run the finalizer on the pool's own loop thread: waiting there for the loop would
    freeze every session of the pool; the close is scheduled on the loop instead."""
    from kernel_agent.integrations.smolagents import runner

    from .smolagents_support import pool_in_thread

    with pool_in_thread(size=1) as pool:
        loop = pool.loop
        assert loop is not None
        holder = [KernelAgentExecutor(pool=pool, notebook=False, default_timeout=60)]
        holder[0]("x = 1")
        session = holder[0].session
        assert session is not None and session.started

        async def drop_on_the_loop() -> None:
            holder.clear()
            gc.collect()  # the finalizer runs here, on the loop's thread
            await asyncio.wait(list(runner._closing))

        asyncio.run_coroutine_threadsafe(drop_on_the_loop(), loop).result(timeout=120)
        assert not session.started and pool.sessions == ()
