"""A Session garbage-collected without ``close()``: its kernel must not outlive it.

A :class:`Guard` holds what a session's close would stop (the kernel, the
tool bridge, the tool sources it started, its workspace) while the kernel
runs, but never the session itself, so that the session can become
unreachable; ``weakref.finalize`` calls :meth:`Guard.abandoned` when it
does. Whatever the guard holds must therefore reach the session only by
weak reference (the bridge's session facts, the package tools' directory):
a strong one would keep a dropped session, and its kernel, alive.

A finalizer runs inside the garbage collector, at any point of any thread
(in the middle of the event loop's own code, too), so it does only what is
safe there:

* it warns (``ResourceWarning``, as asyncio does for an unclosed transport or loop);
* it kills a kernel process this host launched, by a signal (synchronous, no waiting): the sandbox dies at
  once, whatever happens next;
* it hands the rest of close (the connection, the run directory, the uid lease, the cgroup, the MCP servers,
  a temporary workspace) to the session's event loop with ``call_soon_threadsafe``, the one loop method
  documented as safe from anywhere, if that loop still runs. If it does not (``asyncio.run`` returned), what
  is left on disk is this process's, and the stale-run reaper removes it once the process has exited.

The record is not sealed (sealing needs the session's totals): the notebook stays as a crashed host leaves it,
and ``kernel-agent recover`` rebuilds it from its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

# The cleanups under way, so that a task is not garbage-collected before it ends (asyncio keeps weak references).
_cleanups: set[asyncio.Task[None]] = set()


@runtime_checkable
class _KillableNow(Protocol):
    def kill_now(self) -> None: ...


class Guard:
    """What a session's close stops, for the finalizer of a session dropped without closing."""

    def __init__(self, session_id: str, *, shutdown: bool) -> None:
        self.session_id = session_id
        self.shutdown = shutdown  # False: a kernel the session attached to is someone's; it is only let go
        self.closers: list[Callable[[], Awaitable[Any]]] = []
        self.kernel: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def hold(self, kernel: Any, closers: list[Callable[[], Awaitable[Any]]]) -> None:
        """The session's kernel is now ``kernel``, run from the current event loop, and ``closers`` the rest of its
        close (the bridge's, the tools', the workspace's: bound methods, none of which may hold the session).

        With None (closed, or between two kernels) the guard holds nothing: what the tools hold (a user's tool
        may hold its session) cannot keep a closed session from being collected.
        """
        self.kernel = kernel
        self.closers = closers if kernel is not None else []
        if kernel is not None:
            with contextlib.suppress(RuntimeError):  # set outside a loop only by tests
                self.loop = asyncio.get_running_loop()

    def abandoned(self) -> None:
        """The session was collected: stop its kernel now, and the rest on its loop (never raises)."""
        kernel, self.kernel = self.kernel, None
        closers, self.closers = self.closers, []
        if kernel is None:  # closed, or never started: nothing runs
            return
        try:
            warnings.warn(f"Session {self.session_id} was garbage-collected without close(): its kernel is "
                          "stopped, its notebook left unsealed; use `async with Session(...)` or close()",
                          ResourceWarning, stacklevel=2)
        except Exception:  # noqa: BLE001 - warnings turned into errors must not stop the kill
            pass
        try:
            if self.shutdown and isinstance(kernel, _KillableNow):
                kernel.kill_now()
            loop = self.loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(_start_cleanup, kernel, self.shutdown, closers)
        except Exception:  # a loop closed meanwhile: a finalizer must not raise
            log.debug("kernel-agent: cleanup of an abandoned session could not be scheduled", exc_info=True)


def _start_cleanup(kernel: Any, shutdown: bool, closers: list[Callable[[], Awaitable[Any]]]) -> None:
    task = asyncio.get_running_loop().create_task(_cleanup(kernel, shutdown, closers))
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)


async def _cleanup(kernel: Any, shutdown: bool, closers: list[Callable[[], Awaitable[Any]]]) -> None:
    steps = [kernel.kill if shutdown else kernel.detach, *closers]
    for step in steps:
        try:
            await step()
        except Exception:  # each step runs whatever the one before did
            log.warning("kernel-agent: cleaning up an abandoned session failed", exc_info=True)


async def finished() -> None:
    """Wait for the cleanups of abandoned sessions started so far (for tests and orderly shutdowns)."""
    await asyncio.sleep(0)  # one turn of the loop: cleanups scheduled by a finalizer before this call start
    loop = asyncio.get_running_loop()
    while pending := [task for task in _cleanups if task.get_loop() is loop]:
        await asyncio.gather(*pending, return_exceptions=True)
