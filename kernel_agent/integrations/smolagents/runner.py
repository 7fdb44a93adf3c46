"""The executor's session on an event loop, driven from smolagents' synchronous calls, and closed exactly once.

smolagents is synchronous and a session lives on an event loop: either one the executor owns, in a thread
of its own (that thread starts and stops the kernel, so the sandbox's parent-death signal follows it), or
the running loop of a :class:`~kernel_agent.KernelPool`. This holds the loop and the session but not the
executor, so that a finalizer of the executor can close them: an executor dropped without ``cleanup()``
(a CodeAgent made per request and forgotten) must not leave its kernel running and its notebook unsealed
until the process ends, nor its loop thread forever.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from kernel_agent.errors import SessionClosedError, SessionOptionError
from kernel_agent.session.pool import KernelPool
from kernel_agent.session.session import Session

T = TypeVar("T")
_log = logging.getLogger("kernel_agent.integrations.smolagents")
#: How long closing waits for an interrupted step and for the session's close (kernel stopped, notebook sealed).
CLOSE_TIMEOUT_SECONDS = 60.0
#: Closes started from the loop's own thread (a finalizer the collector ran there): kept until they end.
_closing: set[asyncio.Task[None]] = set()
#: Runners whose executor is alive, closed at interpreter exit (the executor's finalizer holds each one).
_open: weakref.WeakSet[SessionRunner] = weakref.WeakSet()
_exit_hook = threading.Lock()
_exit_hooked = False


def _close_all_at_exit() -> None:
    for runner in list(_open):
        runner.close()


def _hook_exit() -> None:
    """Close the live runners at interpreter exit, while worker threads can still run (closing needs them).

    ``atexit`` (and ``weakref.finalize``'s own exit hook) runs after concurrent.futures has shut its worker
    threads down, when the session's close can no longer seal the notebook; ``threading``'s exit hooks run
    before, in reverse order of registration (concurrent.futures registered its own on import, earlier).
    """
    global _exit_hooked
    with _exit_hook:
        if _exit_hooked:
            return
        _exit_hooked = True
    register = getattr(threading, "_register_atexit", None)  # the hook concurrent.futures itself uses
    (register if callable(register) else atexit.register)(_close_all_at_exit)


class SessionRunner:
    """Runs the executor's coroutines on its loop and closes its session once: on ``cleanup()``, when the
    executor is garbage-collected, or at interpreter exit, whichever comes first."""

    def __init__(self, pool: KernelPool | None) -> None:
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()  # what runs on the loop for the executor (a step, a start)
        self._thread: threading.Thread | None = None
        self.session: Session | None = None
        self.closed = False
        if pool is None:
            self.loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=_serve, args=(self.loop,), name="kernel-agent-smolagents",
                                            daemon=True)
            self._thread.start()
        else:
            self.loop = _running_loop_of(pool)
        _hook_exit()
        _open.add(self)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for it; Ctrl-C in the caller cancels it (the cell is interrupted)."""
        if _current_loop() is self.loop:
            coroutine.close()
            raise SessionOptionError("the executor was called on its pool's own event loop, which it would block: "
                                     "run the agent in another thread (asyncio.to_thread(agent.run, ...))")
        with self._lock:
            if self.closed:
                coroutine.close()
                raise SessionClosedError("this executor was cleaned up; make a new one")
            future = asyncio.run_coroutine_threadsafe(self._tracked(coroutine), self.loop)
        try:
            return future.result()
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            if self.closed:
                raise SessionClosedError("the executor was cleaned up while this step ran: its cell was "
                                         "interrupted and recorded, and the session closed") from None
            raise
        except BaseException:
            # KeyboardInterrupt in the agent's thread: without this the cell would run on, unseen, and the
            # next step would wait for it. Cancelling interrupts the cell and records it as cancelled.
            future.cancel()
            raise

    async def _tracked(self, coroutine: Coroutine[Any, Any, T]) -> T:
        task = asyncio.current_task()
        assert task is not None  # run_coroutine_threadsafe runs it as a task
        self._tasks.add(task)
        try:
            return await coroutine
        finally:
            self._tasks.discard(task)

    def close(self) -> None:
        """Interrupt what runs (a step), close the session, stop the executor's own loop; once, from any thread.

        Called by ``cleanup()``, or by the finalizer (garbage collection, interpreter exit): it must not wait for
        the loop from the loop's own thread, nor forever on a loop that no longer runs.
        """
        with self._lock:
            if self.closed:
                return
            self.closed = True
            session, self.session = self.session, None
        if self.loop.is_closed() or not self.loop.is_running():
            if session is not None:  # a pool's loop stopped before the executor was closed: the pool's close owns it
                _log.warning("kernel-agent smolagents executor: its pool's event loop no longer runs; session %s "
                             "was not closed by the executor", session.id[:8])
            return
        if _current_loop() is self.loop:
            task = self.loop.create_task(self._shut_down(session))
            _closing.add(task)
            task.add_done_callback(_closing.discard)
            if self._thread is not None:
                task.add_done_callback(lambda _: self.loop.stop())
            return
        future = asyncio.run_coroutine_threadsafe(self._shut_down(session), self.loop)
        try:
            future.result(timeout=CLOSE_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            _log.warning("kernel-agent smolagents executor: closing its session took over %s s; left to finish",
                         CLOSE_TIMEOUT_SECONDS)
            return
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=CLOSE_TIMEOUT_SECONDS)

    async def _shut_down(self, session: Session | None) -> None:
        running = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in running:
            task.cancel()
        if running:  # a cancelled step interrupts its cell and records it before the session closes
            await asyncio.wait(running, timeout=CLOSE_TIMEOUT_SECONDS)
        if session is not None:
            await session.close()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The executor's own loop thread: runs the loop until the runner stops it, then closes it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        with contextlib.suppress(RuntimeError):  # stopped at interpreter exit with work in flight
            loop.close()


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _running_loop_of(pool: KernelPool) -> asyncio.AbstractEventLoop:
    """The event loop a started pool serves sessions on, which must be running (in another thread)."""
    loop = pool.loop
    if loop is None or not loop.is_running():
        raise SessionOptionError("the pool is not started, or its event loop does not run: start the pool on a "
                                 "loop that keeps running in another thread")
    return loop
