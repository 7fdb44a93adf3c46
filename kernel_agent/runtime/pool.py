"""WarmPool: sandboxed kernels started ahead of time, so that a new session is ready in milliseconds.

A cold start costs most of a second (bwrap, the interpreter, ipykernel), so
the pool keeps ``size`` kernels running and waiting. Each one is launched
with the pool's :class:`SandboxPolicy` and a workspace the pool made for it
(the workspace is bind-mounted when the sandbox starts, so it cannot be
chosen later), and warmed with a silent cell so that installing a session's
tool SDK is quick. A kernel serves **one** session: when that session
closes, the kernel is killed and its workspace removed, never handed out
again, so nothing of one session can reach the next.

Acquisition never waits for a refill when a spare is ready; refills run in
the background, at most ``max_concurrent_launches`` at a time. When no
spare is ready, the acquisition asks for one more launch and takes
whichever kernel is ready first (that launch or one already in flight). A
launch that fails (no sandbox on this machine, say) fails the acquisition
that was waiting with the real exception, and refilling backs off.

With ``server`` (a :class:`~kernel_agent.runtime.remote.JupyterServer`) the
kernels are started ahead on Jupyter Server or a gateway instead, under the
server's kernelspec, and have no workspace on this host.

With ``idle_timeout`` the pool also closes the holders of its kernels that
were idle that long (:meth:`KernelLease.close_if_idle`; a session finalises
its notebook, and its next ``execute`` raises SessionClosedError saying why).

The pool deals in kernels and leases, never in sessions: it is a
:class:`~kernel_agent.runtime.source.KernelSource`. The public
:class:`~kernel_agent.session.pool.KernelPool` adds ``session()`` on top.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kernel_agent.errors import KernelStartError, PoolError
from kernel_agent.runtime.execute import run_silently
from kernel_agent.runtime.kernel import Kernel
from kernel_agent.runtime.process import KernelProcess
from kernel_agent.runtime.source import KernelLease
from kernel_agent.sandbox.hostlocks import make_held_dir, remove_held_dir
from kernel_agent.sandbox.policy import SandboxPolicy
from kernel_agent.sandbox.provisioner import RUN_DIR_PREFIX

if TYPE_CHECKING:
    from kernel_agent.runtime.remote import JupyterServer

logger = logging.getLogger(__name__)

# Run silently in every spare kernel: imports the bridge's modules (tens of ms on a
# fresh interpreter) and runs IPython's first cell, so that a session's SDK install
# is a few milliseconds. __import__ binds no name in the user's namespace.
_WARM_UP_CODE = "__import__('comm'); __import__('typing'); __import__('kernel_agent.kernel.bridge')"
# Refilling after a failed launch waits this long, doubling up to the maximum.
_FIRST_BACKOFF_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 60.0
# The refill after an acquisition starts this much later: launching a kernel costs the
# host's event loop a few milliseconds of work (and a core), which would otherwise land
# in the middle of the acquiring session's SDK install (measured: 11 -> 20 ms).
_REFILL_DELAY_SECONDS = 0.05


class WarmPool:
    """Pre-started sandboxed kernels, each leased to one holder, then destroyed (a :class:`KernelSource`).

    Use it as an async context manager (``async with WarmPool(size=4) as
    pool``) and take kernels with :meth:`acquire`. ``size`` spare
    kernels are kept ready; ``policy`` confines every one of them;
    ``workspace_root`` is where their workspaces are made (default: the
    temporary directory, where a dead host's leftovers are reaped);
    ``idle_timeout`` (seconds) closes holders that were idle for that long.
    """

    def __init__(
        self,
        size: int = 4,
        *,
        policy: SandboxPolicy | None = None,
        workspace_root: str | os.PathLike[str] | None = None,
        idle_timeout: float | None = None,
        max_concurrent_launches: int | None = None,
        startup_timeout: float = 30.0,
        server: JupyterServer | None = None,
    ) -> None:
        if size < 0:
            raise ValueError("size must be 0 or more")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive (or None: never cull)")
        self.size = size
        self.policy = policy or SandboxPolicy()
        self.workspace_root = Path(workspace_root).resolve() if workspace_root is not None else None
        self.idle_timeout = idle_timeout
        # Launching is CPU-bound (an interpreter and ipykernel start-up each): more at once than
        # there are cores only slows every launch and the sessions already running.
        self.max_concurrent_launches = max_concurrent_launches or max(1, os.cpu_count() or 1)
        self.startup_timeout = startup_timeout
        #: Where the kernels are started: a Jupyter Server or gateway (None: launched on this host).
        self.server = server
        if server is not None and workspace_root is not None:
            raise PoolError("a pool of server kernels has no workspaces on this host: leave out workspace_root")
        self._spares: collections.deque[Kernel] = collections.deque()
        self._launches: set[asyncio.Task[None]] = set()
        self._waiters: collections.deque[asyncio.Future[Kernel]] = collections.deque()
        self._holders: set[KernelLease] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._launch_slots: asyncio.Semaphore | None = None
        self._changed: asyncio.Event | None = None
        self._cull_task: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._backoff = 0.0
        self._retry_at = 0.0
        self._started = False
        self._closed = False
        #: Counters, for monitoring: kernels launched, launches that failed, spares found dead
        #: and discarded, holders (sessions) closed for idleness.
        self.launched = 0
        self.launch_failures = 0
        self.discarded = 0
        self.culled = 0
        #: The exception of the most recent failed launch (None once a launch succeeds again).
        self.last_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, wait: bool = True) -> WarmPool:
        """Begin filling the pool; with ``wait``, return once it is full (or raise why it cannot fill)."""
        if self._closed:
            raise PoolError("this pool was closed; create a new KernelPool")
        if not self._started:
            self._started = True
            self._loop = asyncio.get_running_loop()
            self._launch_slots = asyncio.Semaphore(self.max_concurrent_launches)
            self._changed = asyncio.Event()
            if self.workspace_root is not None and not self.workspace_root.is_dir():
                raise PoolError(f"the pool's workspace_root {self.workspace_root} is not an existing directory; "
                                "create it first")
            if self.idle_timeout is not None:
                self._cull_task = asyncio.create_task(self._cull_forever(self.idle_timeout))
            self._refill()
        if wait:
            try:
                await self.wait_until_full()
            except BaseException:
                await self.close()
                raise
        return self

    async def wait_until_full(self) -> None:
        """Wait until ``size`` spare kernels are ready; raise the exception of a launch that fails meanwhile."""
        self._require_started()
        assert self._changed is not None
        failures = self.launch_failures
        while len(self._spares) < self.size:
            if self._closed:
                raise PoolError("the pool was closed while filling")
            if self.launch_failures > failures and self.last_error is not None:
                raise self.last_error
            self._changed.clear()
            await self._changed.wait()

    async def close(self, *, close_sessions: bool = True) -> None:
        """Kill every spare kernel; with ``close_sessions``, also close its kernels' live holders (idempotent)."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._cull_task is not None:
            self._cull_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cull_task
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolError("the pool was closed before a kernel was ready"))
        self._waiters.clear()
        if self._changed is not None:
            self._changed.set()
        # Launches in flight finish (a half-started sandbox is never abandoned) and, seeing the
        # pool closed, destroy their kernel; launches still queued for a slot do nothing.
        await asyncio.gather(*self._launches, return_exceptions=True)
        spares = list(self._spares)
        self._spares.clear()
        await asyncio.gather(*(self._destroy(kernel) for kernel in spares))
        if close_sessions:
            await asyncio.gather(*(holder.close() for holder in list(self._holders)), return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)

    async def __aenter__(self) -> WarmPool:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pool was started on, which serves its sessions (None before :meth:`start`).

        Synchronous callers in other threads (smolagents' executor) hand their coroutines to it.
        """
        return self._loop

    @property
    def spare_count(self) -> int:
        """Kernels ready to serve a session right now."""
        return len(self._spares)

    @property
    def launching_count(self) -> int:
        """Kernels being launched (refills, and launches for waiting acquisitions)."""
        return len(self._launches)

    @property
    def leases(self) -> tuple[KernelLease, ...]:
        """The live holders of kernels this pool handed out (released ones are forgotten)."""
        return tuple(self._holders)

    def check_options(
        self, workspace: str | os.PathLike[str] | None, policy: SandboxPolicy | None, keep_workspace: bool
    ) -> None:
        """Raise PoolError for options a pooled kernel cannot honour (it was launched with its workspace and policy).

        Said rather than cold-starting silently.
        """
        if workspace is not None:
            raise PoolError(
                f"a pooled kernel comes with its own workspace, mounted into its sandbox when it was launched, so a "
                f"session given the workspace {workspace} cannot use it. Leave out the workspace (session.workspace "
                "says where it is; keep_workspace=True keeps it, KernelPool(workspace_root=...) says where they are "
                "made), or start the session without the pool.")
        if policy is not None and policy != self.policy:
            raise PoolError("the pool's kernels run under the pool's SandboxPolicy, and this session asks for a "
                            "different one: use a pool made with that policy, or start the session without the pool")
        if self.server is not None and keep_workspace:
            raise PoolError("a server's kernel works in the server's directory: keep_workspace= is for kernels "
                            "launched on this host")
        if keep_workspace and self.workspace_root is None:
            raise PoolError("keep_workspace=True needs KernelPool(workspace_root=DIR): the pool's default workspaces "
                            "live in the temporary directory, where they are reaped once the host process ends")

    # -- acquisition -------------------------------------------------------------------

    async def acquire(self, holder: KernelLease) -> Kernel:
        """A ready, unused kernel for ``holder`` (on a workspace of its own); the pool tracks the holder."""
        self._require_started()
        if self._closed:
            raise PoolError("this pool is closed; create a new KernelPool")
        kernel = self._pop_live_spare()
        if kernel is None:
            kernel = await self._wait_for_kernel()
            if self._closed:  # handed over just before the pool closed: it would outlive the pool
                await self._destroy(kernel)
                raise PoolError("the pool was closed before the session could start")
        self._holders.add(holder)
        asyncio.get_running_loop().call_later(_REFILL_DELAY_SECONDS, self._refill)
        return kernel

    def release(self, holder: KernelLease) -> None:
        """Forget a holder (closed, or failed to start); its kernel was destroyed, never reused."""
        self._holders.discard(holder)

    def _pop_live_spare(self) -> Kernel | None:
        """The oldest spare that is still alive; dead ones are discarded (and cleaned up in the background)."""
        while self._spares:
            kernel = self._spares.popleft()
            if kernel.alive() and kernel.connection is not None:
                return kernel
            self.discarded += 1
            logger.warning("discarding a spare kernel that died while waiting: %s", kernel.death_reason())
            self._spawn(self._destroy(kernel))
        return None

    async def _wait_for_kernel(self) -> Kernel:
        """No spare is ready: ask for one more launch and take the first kernel that is ready."""
        waiter: asyncio.Future[Kernel] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._refill()
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled just after a kernel was handed over: it is still unused, so it goes back.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                if self._closed:
                    self._spawn(self._destroy(waiter.result()))
                else:
                    self._spares.appendleft(waiter.result())
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    # -- refilling -----------------------------------------------------------------------

    def _refill(self) -> None:
        """Start launches until spares + launches cover the pool's size and every waiting acquisition.

        After a failed launch, only waiting acquisitions get a launch until the
        backoff has passed (a broken sandbox is not hammered in the background).
        """
        if self._closed or not self._started:
            return
        waiting = sum(not waiter.done() for waiter in self._waiters)
        wanted = waiting + (self.size if time.monotonic() >= self._retry_at else 0)
        for _ in range(wanted - len(self._spares) - len(self._launches)):
            task = asyncio.create_task(self._launch())
            self._launches.add(task)
            task.add_done_callback(self._launches.discard)

    async def _launch(self) -> None:
        assert self._launch_slots is not None
        async with self._launch_slots:
            if self._closed:
                return
            try:
                kernel = await self._start_kernel()
            except Exception as exc:  # noqa: BLE001 - any launch failure is the waiting acquisition's exception
                self._launch_failed(exc)
                return
        self._launches.discard(asyncio.current_task())
        if self._closed:
            await self._destroy(kernel)
            return
        self.launched += 1
        self._backoff, self._retry_at, self.last_error = 0.0, 0.0, None
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(kernel)
        else:
            self._spares.append(kernel)
        self._notify()
        self._refill()

    async def _start_kernel(self) -> Kernel:
        """Launch one kernel on a fresh workspace (or start one on the server), warm it up; nothing survives failure."""
        if self.server is not None:
            remote = await self.server.start_kernel(timeout=self.startup_timeout)
            try:
                await _warm_up(remote, self.startup_timeout)
            except BaseException:
                await self._destroy(remote)
                raise
            return remote
        if self.workspace_root is None:
            # Like a Session's own temporary workspace: locked while this host lives, reaped after.
            workspace = make_held_dir(f"{RUN_DIR_PREFIX}{os.getpid()}-workspace-")
        else:
            workspace = Path(tempfile.mkdtemp(prefix="workspace-", dir=self.workspace_root))
        kernel = KernelProcess(self.policy, workspace)
        try:
            await kernel.start(self.startup_timeout)
            await _warm_up(kernel, self.startup_timeout)
        except BaseException:
            await self._destroy(kernel)
            raise
        return kernel

    def _launch_failed(self, exc: Exception) -> None:
        self._launches.discard(asyncio.current_task())
        self.launch_failures += 1
        self.last_error = exc
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF_SECONDS) if self._backoff else _FIRST_BACKOFF_SECONDS
        self._retry_at = time.monotonic() + self._backoff
        if self._retry is not None:
            self._retry.cancel()
        self._retry = asyncio.get_running_loop().call_later(self._backoff, self._refill)
        logger.warning("a pool kernel failed to launch (retrying in %.0f s): %s", self._backoff, exc)
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_exception(exc)
        self._notify()
        self._refill()

    def _next_waiter(self) -> asyncio.Future[Kernel] | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _destroy(self, kernel: Kernel) -> None:
        """Kill a kernel that will never serve a session, and remove its workspace (a server's kernel has none here)."""
        with contextlib.suppress(Exception):
            await kernel.kill()
        if kernel.workspace is not None:
            await asyncio.to_thread(remove_held_dir, kernel.workspace)  # kernel-shaped: off the shared loop

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _require_started(self) -> None:
        if not self._started:
            raise PoolError("the pool has not been started: use `async with KernelPool(...)` or `await pool.start()`")
        if asyncio.get_running_loop() is not self._loop:
            # Its kernels' connections and tasks belong to that loop (a SyncSession runs its own).
            raise PoolError("a KernelPool serves sessions on the event loop it was started on, not another one")

    # -- idle culling ----------------------------------------------------------------------

    async def _cull_forever(self, idle_timeout: float) -> None:
        """Close the holders idle for ``idle_timeout`` seconds, checking a few times per timeout."""
        interval = min(max(idle_timeout / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            idle = [holder for holder in self._holders if now - holder.last_activity >= idle_timeout]
            # Shielded: closing the pool cancels this task, and must not interrupt a holder half closed.
            outcomes = await asyncio.shield(asyncio.gather(*(h.close_if_idle(idle_timeout) for h in idle),
                                                           return_exceptions=True))
            for holder, outcome in zip(idle, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    # The holder is closed as far as it could be; one failure must not stop culling.
                    logger.error("closing idle session %s failed: %r", holder.id[:8], outcome)
                    self.release(holder)
                elif outcome:
                    self.culled += 1


async def _warm_up(kernel: Kernel, timeout: float) -> None:
    """Run the warm-up cell silently; raise KernelStartError if the kernel dies or does not answer."""
    run = await run_silently(kernel, _WARM_UP_CODE, timeout)
    if run.outcome == "died":
        raise KernelStartError(f"the kernel died while warming up: {kernel.death_reason()}")
    if run.outcome == "timeout":
        raise KernelStartError(f"the kernel did not finish warming up in {timeout} s")
    if not run.ok:
        raise KernelStartError(f"the kernel could not warm up: {run.content.get('ename')}: {run.content.get('evalue')}")
