"""Session: one sandboxed kernel with persistent state, running cells for an agent.

This module holds the session's lifecycle (start, close, restart, detach,
idle culling) and its public API. How a cell runs is :mod:`.cells`; the
tools and the SDK install, :mod:`.toolbox`; the recording glue,
:mod:`.recording`; the workspace, :mod:`.workspace`; which kernel (here, a
server, a connection file), :mod:`.backends`; restore_on_death,
:mod:`.restore`; resuming a recording, :mod:`.resume`; detaching and
attaching, :mod:`.attach`. Where a kernel comes from is a
:class:`~kernel_agent.runtime.source.KernelSource`.

Over 400 lines (about 620) because Session is the public surface: 24
documented options and the public methods and properties (each a few lines
delegating to the modules above; background cells, :mod:`.background`;
packages, :mod:`kernel_agent.packages`; seeds, :mod:`.seeds`) stay on one
class, where users look for them. The next split would move lifecycle
(start, close, detach, restart) to a kernel-holder class the session
composes, and the recording API (notebook, record_to, settings, sealing) to
one :mod:`.recording` owns; see the notes of issues 12 and 13.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
import uuid
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from kernel_agent.errors import (
    RecordingError,
    SessionClosedError,
    SessionOptionError,
    UnconfinedWarning,
)
from kernel_agent.packages.policy import PackagePolicy
from kernel_agent.packages.tool import SessionPackages, packages_dir
from kernel_agent.record.recorder import Recorder
from kernel_agent.record.signing import SigningKeySource
from kernel_agent.runtime.kernel import Kernel
from kernel_agent.runtime.pool import WarmPool
from kernel_agent.runtime.results import DEFAULT_MAX_OUTPUT_BYTES, CellResult
from kernel_agent.runtime.source import ColdLaunch, KernelSource
from kernel_agent.runtime.streaming import OutputCallback
from kernel_agent.sandbox.policy import SandboxPolicy
from kernel_agent.session import abandon, attach, call_facts, cells, recording, seeds
from kernel_agent.session.backends import KernelChoice
from kernel_agent.session.background import BackgroundCells, RunningCell
from kernel_agent.session.toolbox import SessionTools, install_sdk, tool_items
from kernel_agent.session.workspace import SessionWorkspace
from kernel_agent.tools.bridge import ToolBridge
from kernel_agent.tools.calls import ProgressEvent
from kernel_agent.tools.policy import Approver, Policy, allow_all
from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.sdkgen import sdk_hash

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kernel_agent.runtime.remote import JupyterServer


# What Session.execute records with a cell: a dict, or a callable given the result (it may be async).
RecordExtras = dict[str, Any] | Callable[[CellResult], dict[str, Any] | Awaitable[dict[str, Any]]] | None


class Session:
    """One restricted IPython kernel, its workspace, and the cells run in it.

    Use it as an async context manager, or call :meth:`start` and
    :meth:`close` yourself. Problems caused by a cell never raise: they are
    reported in the :class:`CellResult`. Host problems raise
    :class:`~kernel_agent.errors.KernelAgentError` subclasses.

    With ``package_policy=`` (a :class:`~kernel_agent.packages.PackagePolicy`)
    the kernel may ask for packages (``%pip install NAME``): the host
    installs the allowed wheels where the kernel reads them; see
    :mod:`kernel_agent.packages`.

    With ``pool=`` (a started :class:`~kernel_agent.session.pool.KernelPool`) the
    session takes a pre-started kernel and its workspace instead of
    launching one; ``keep_workspace=True`` keeps a workspace the session did
    not get from the caller (temporary or pooled) after close, and records
    the notebook in it by default. ``seed`` (default: a fresh one) seeds the
    kernel's ``random`` and NumPy's global generator; it is recorded, and
    replay and resume use it (see :mod:`kernel_agent.session.seeds`).
    """

    def __init__(
        self,
        workspace: str | os.PathLike[str] | None = None,
        *,
        policy: SandboxPolicy | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        default_timeout: float | None = 600.0,
        interrupt_grace: float = 3.0,
        startup_timeout: float = 30.0,
        tools: Iterable[Any] | Any = (),
        tool_policy: Policy = allow_all,
        approver: Approver | None = None,
        tool_timeout: float = 60.0,
        max_tool_calls: int | None = None,
        on_progress: Callable[[ProgressEvent], Any] | None = None,
        notebook: str | os.PathLike[str] | bool | None = None,
        audit_key: bytes | str | None = None,
        record_metadata: dict[str, Any] | None = None,
        restore_on_death: bool = False,
        pool: WarmPool | None = None,
        keep_workspace: bool = False,
        record_dir: str | os.PathLike[str] | None = None,
        allow_reachable_record: bool = False,
        signing_key: SigningKeySource | None = None,
        server: JupyterServer | None = None,
        connection_file: str | os.PathLike[str] | None = None,
        shutdown_on_close: bool | None = None,
        package_policy: PackagePolicy | None = None,
        seed: int | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        #: What the kernel's ``random`` and NumPy's global generator are seeded with (recorded; see :mod:`.seeds`).
        self.seed = seeds.session_seed(seed)
        self._choice = KernelChoice.from_options(server, connection_file, shutdown_on_close)
        self._choice.check(workspace=workspace, pool=pool, keep_workspace=keep_workspace,
                           restore_on_death=restore_on_death)
        if pool is not None:
            pool.check_options(workspace, policy, keep_workspace)
        self._pool = pool
        self.policy = policy or (pool.policy if pool is not None else SandboxPolicy())
        self.max_output_bytes = max_output_bytes
        self.default_timeout = default_timeout
        self.interrupt_grace = interrupt_grace
        self.startup_timeout = startup_timeout
        self._place = SessionWorkspace(workspace, keep=keep_workspace,
                                       elsewhere=self._choice.remote or (pool is not None and pool.server is not None))
        self._source: KernelSource | None = None
        self._lock = asyncio.Lock()
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._closing: asyncio.Future[None] | None = None  # the closing under way (close() is shielded)
        self._closed_because: str | None = None
        #: time.monotonic() of the session's last activity (start, a cell, a recorded message);
        #: a pool's idle culling reads it.
        self.last_activity = time.monotonic()
        self.kernel_restarts = 0
        self.started_at: float | None = None
        # The kernel asks for packages through a tool: see kernel_agent.packages.
        me = weakref.ref(self)  # what the guard holds reaches the session weakly (see .abandon)
        self._packages = SessionPackages(
            package_policy, lambda: None if (s := me()) is None else s.packages_dir) if package_policy else None
        if self._packages is not None:
            tools = [*tool_items(tools), *self._packages.tools()]
        self._tools = SessionTools(tools)
        self._record = recording.SessionRecord(notebook, session_id=self.id, audit_key=audit_key,
                                               record_dir=record_dir, signing_key=signing_key,
                                               metadata=record_metadata)
        self.allow_reachable_record = allow_reachable_record
        self._tool_policy_name = getattr(tool_policy, "__name__", type(tool_policy).__name__)
        self.resume_differences: list[str] = []
        # Off by default: restoring re-runs earlier cells (their workspace writes happen again),
        # takes as long as they did, and a memory-limit death would likely recur.
        self.restore_on_death = restore_on_death
        self.bridge = ToolBridge(
            self._tools.lookup, policy=tool_policy, approver=approver, call_timeout=tool_timeout,
            max_calls=max_tool_calls, on_progress=on_progress,
        )
        self.bridge.session_facts = lambda: {} if (s := me()) is None else call_facts.session_facts(s, record_metadata)
        self._cells = cells.CellRunner(self.bridge, self._tools, self._replace_kernel)
        self._background = BackgroundCells()
        # Dropped without close(), the session still stops its kernel (see .abandon); the guard holds the kernel.
        self._guard = abandon.Guard(self.id, shutdown=self._choice.shutdown_on_close)
        weakref.finalize(self, self._guard.abandoned).atexit = False  # at exit bwrap's --die-with-parent does it

    @property
    def _kernel(self) -> Kernel | None:
        return self._guard.kernel  # type: ignore[no-any-return]

    @_kernel.setter
    def _kernel(self, kernel: Kernel | None) -> None:
        self._guard.hold(kernel, [self.bridge.close, self._tools.close, self._place.remove])

    # -- lifecycle ---------------------------------------------------------

    @property
    def workspace(self) -> Path:
        """The directory the kernel works in (and may write to), on this host."""
        return self._place.require()

    @property
    def keep_workspace(self) -> bool:
        """Whether a workspace the session did not get from the caller (temporary or pooled) is kept after close."""
        return self._place.keep

    @keep_workspace.setter
    def keep_workspace(self, keep: bool) -> None:
        self._place.keep = keep

    @property
    def local_workspace(self) -> Path | None:
        """The workspace on this host, or None for a kernel that runs elsewhere."""
        return None if self._place.elsewhere else self.workspace

    @property
    def started(self) -> bool:
        """Whether a kernel is running for this session."""
        return self._kernel is not None

    async def start(self) -> Session:
        """Launch the sandboxed kernel; raise SandboxError/KernelStartError if it cannot run."""
        async with self._start_lock:  # two starts at once launched two kernels, and close stopped only one
            return await self._start()

    async def _start(self) -> Session:
        if self._closed:
            raise SessionClosedError("this session was closed; create a new Session")
        if self._kernel is not None:
            return self
        self._place.prepare(pooled=self._pool is not None)
        signing_key = self._record.signing_key()
        if self._place.path is not None or self._place.elsewhere:  # else a pooled kernel brings it: checked then
            self._check_record_location()
        try:
            await self._tools.prepare()
            self._refuse_if_closed_meanwhile()
            self._check_sdk_hash()
            self._source = self._pool if self._pool is not None else self._choose_source()
            self._kernel = await self._source.acquire(self)
            self._refuse_if_closed_meanwhile()
            self._place.path = self._kernel.workspace
            if self._pool is not None:
                self._check_record_location()
            self._tools.check_places(self.bridge.session_facts())  # now that the workspace is known
            self.started_at = time.time()
            # The SDK install mostly waits for the kernel: the recording (files, fsyncs) starts meanwhile,
            # in a worker thread, which also keeps it off the event loop other sessions share.
            outcomes = await asyncio.gather(self._install_sdk(self._kernel),
                                            asyncio.to_thread(self._start_recording, signing_key),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            self._refuse_if_closed_meanwhile()
        except BaseException:
            # Nothing half-started survives a failed start: kernel, MCP servers, temporary workspace;
            # a notebook already begun is finalised (with no cells) rather than left open.
            kernel, self._kernel = self._kernel, None
            if kernel is not None:
                # A kernel attached by id holds someone's state: a failed attach leaves it running.
                await (kernel.detach() if self._choice.attach_id is not None else kernel.kill())
            recorder = self._record.detach()
            if recorder is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._seal, recorder, "start_failed")
            await self._tools.close()
            if self._source is not None:
                self._source.release(self)
            await self._place.remove(failed_start=True)
            raise
        self.last_activity = time.monotonic()
        self._warn_if_unconfined()
        return self

    def _refuse_if_closed_meanwhile(self) -> None:
        # close() may run while start waits (the SDK is made in a worker thread, a kernel launches): it found no
        # kernel to stop, so without this the kernel launched next would run on for a closed session.
        if self._closed:
            raise SessionClosedError("the session was closed while it was starting")

    def _choose_source(self) -> KernelSource:
        """Where a kernel comes from without a pool: a server, a connection file, or launched on our workspace."""
        if self._choice.remote:
            return self._choice.source(self.policy, self.startup_timeout)
        return ColdLaunch(self.policy, self.workspace, self.startup_timeout)

    def _check_sdk_hash(self) -> None:
        """An attached kernel holds the recorded SDK: this session's tools must be the ones it calls."""
        expected = self._choice.expected_sdk_hash
        if expected is not None and self.sdk_hash != expected:
            raise RecordingError("the tools given to attach are not the ones the session was recorded with (their "
                                 "SDK differs, so the kernel's SDK would call tools that are not there); pass the "
                                 "same tools")

    @property
    def sdk_hash(self) -> str:
        """The hash of the tool SDK this session's tools generate (recorded in the header)."""
        return sdk_hash(self.sdk_modules)

    @property
    def packages_dir(self) -> Path | None:
        """Where the host installs packages the kernel asked for (read-only to it); None for a kernel elsewhere."""
        return packages_dir(self._kernel)

    @property
    def backend(self) -> dict[str, Any]:
        """Where the kernel runs and how it is reached (``{"kind": "local"}`` for a kernel launched here)."""
        return self._require_kernel().backend

    async def _launch(self, old: Kernel) -> Kernel:
        """A fresh kernel in ``old``'s place with the session's SDK installed (for restarts).

        Never the pool: a pooled kernel is bound to another directory, and
        the workspace's files outlive the kernel. A local kernel is launched
        again on the same workspace; a server's is restarted under its id.
        """
        kernel = await old.restarted(self.startup_timeout)
        try:
            await self._install_sdk(kernel)
            if self._packages is not None:  # a fresh kernel has an empty package directory
                await self._packages.reinstall(packages_dir(kernel))
        except BaseException:
            await kernel.kill()
            raise
        return kernel

    async def _install_sdk(self, kernel: Kernel) -> None:
        await install_sdk(kernel, self.bridge, self._tools.sdk_modules, self.startup_timeout, self.max_output_bytes)
        if self._choice.attach_id is None:  # a kernel attached by id keeps its state, its generators' too
            await seeds.seed_kernel(kernel, self.seed, self.startup_timeout)

    async def close(self) -> None:
        """Shut the kernel down, stop the MCP servers it started, remove its run directory (idempotent).

        Cancelling the caller does not cut the closing short (a kernel half-killed would run on with nothing
        holding it): the closing runs on in its own task, and a second call waits for that same task.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        await self._background.cancel_running()  # recorded as cancelled, while kernel and record are still here
        self._closed = True
        # The kernel is stopped before the record is sealed: a kernel thread that is still
        # running could otherwise act (or, with a reachable record, write) after the seal.
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            await (kernel.kill() if self._choice.shutdown_on_close else kernel.detach())
        await self.bridge.close()
        recorder = self._record.detach()
        if recorder is not None:
            await asyncio.to_thread(self._seal, recorder, "idle" if self._closed_because else "closed")
        await self._tools.close()
        if self._source is not None:
            self._source.release(self)
        await self._place.remove()

    async def close_if_idle(self, idle_timeout: float) -> bool:
        """Close the session if it has been idle for ``idle_timeout`` seconds (a running cell is not idle).

        Returns whether it closed. The notebook is finalised as by
        :meth:`close`; the next :meth:`execute` raises SessionClosedError
        saying the session was closed for idleness.
        """
        if self._closed or self._lock.locked() or time.monotonic() - self.last_activity < idle_timeout:
            return False
        async with self._lock:  # a cell that started meanwhile finishes first, and makes the session active
            idle = time.monotonic() - self.last_activity
            if self._closed or idle < idle_timeout:
                return False
            self._closed_because = (f"it was closed after {idle:.0f} s without activity (idle_timeout="
                                    f"{idle_timeout:g} s); its notebook was finalised. Start a new session")
            await self.close()
        return True

    async def detach(self) -> attach.DetachedSession:
        """Leave the kernel running on its server, with its state, and stop; :meth:`attach` continues it.

        The record gets a ``detached`` note and stays unsealed (the session
        is not over). Only a kernel on a server can outlive this host:
        SessionOptionError for a kernel launched here.
        """
        self._background.refuse_if_running("detach")
        async with self._lock:
            kernel = self._require_kernel()
            backend = kernel.backend
            if backend.get("kind") == "local":
                raise SessionOptionError("a kernel launched on this host cannot outlive it; run the session on a "
                                         "server (Session(server=JupyterServer(...))) to detach from it")
            self._closed = True
            self._closed_because = f"it was detached from kernel {backend.get('kernel_id')}; attach to continue"
            self._kernel = None
            await kernel.detach()
            await self.bridge.close()
            recorder = self._record.detach()
            if recorder is not None:
                await asyncio.to_thread(attach.record_detach, recorder, backend,
                                        {**self.totals, "kernel_restarts": self.kernel_restarts})
            await self._tools.close()
            if self._source is not None:
                self._source.release(self)
        return attach.DetachedSession(str(backend.get("kernel_id")), str(backend.get("url")),
                                      recorder.notebook if recorder is not None else None)

    def attach_to(self, kernel_id: str, *, sdk_hash: str | None) -> None:
        """Before start: attach to the server's kernel ``kernel_id`` instead of starting one (see :meth:`attach`)."""
        if self._choice.server is None:
            raise SessionOptionError("attaching to a kernel by id needs server=JupyterServer(...)")
        self._choice.attach_id, self._choice.expected_sdk_hash = kernel_id, sdk_hash

    @classmethod
    async def attach(cls, kernel_id: str, *, server: JupyterServer,
                     notebook: str | os.PathLike[str] | None = None, **options: Any) -> Session:
        """A started session on a server's kernel another session detached from, recording on into its notebook.

        ``tools=`` must be the recorded session's tools (checked against the
        record before the kernel is touched). The record must end with the
        detach of ``kernel_id`` and verify with this host's keys; the gap is
        recorded (when, by whom). See :mod:`kernel_agent.session.attach`.
        """
        return await attach.attach_session(cls, kernel_id, server=server, notebook=notebook, **options)

    async def restart(self) -> None:
        """Replace the kernel with a fresh one; all variables are lost."""
        self._background.refuse_if_running("restart the kernel")
        async with self._lock:
            await self._replace_kernel()

    async def _replace_kernel(self) -> Kernel:
        old = self._require_kernel()
        self._kernel = None
        self._kernel = kernel = await self._launch(old)
        self.kernel_restarts += 1
        return kernel

    @property
    def totals(self) -> dict[str, Any]:
        """What the session's cells did so far: cells, errors, timeouts, kernel deaths, tool calls, seconds."""
        return self._cells.totals

    async def __aenter__(self) -> Session:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _require_kernel(self) -> Kernel:
        if self._closed:
            because = f": {self._closed_because}" if self._closed_because else ""
            raise SessionClosedError(f"this session is closed{because}")
        if self._kernel is None:
            raise SessionClosedError("the session has not been started: use `async with Session()` or `await start()`")
        return self._kernel

    # -- tools -------------------------------------------------------------

    @property
    def registry(self) -> ToolRegistry | None:
        """The tools the kernel's calls are answered by (None before start)."""
        return self._tools.registry

    @property
    def sdk_modules(self) -> dict[str, str]:
        """The tool SDK's source the kernel was given, by module name."""
        return self._tools.sdk_modules

    @property
    def manifest(self) -> str:
        """The short tool manifest for a system prompt (names and one-line summaries; details via help())."""
        return self._tools.manifest

    async def replace_tools(self, tools: Iterable[Any] | Any, *, sdk_hash: str | None = None) -> None:
        """Answer the kernel's tool calls with ``tools`` from now on; the kernel keeps the SDK it has.

        With ``sdk_hash``, tools whose SDK has another hash raise
        RecordingError (resume passes the recorded one). Tool sources among
        ``tools`` are started now and closed with the session.
        """
        self._tools.check_places(self.bridge.session_facts(), tools)
        if not await self._tools.replace(tools, sdk_hash_required=sdk_hash):
            raise RecordingError("the tools given to resume are not the ones this session was recorded with "
                                 "(their SDK differs); pass the same tools")

    # -- recording ---------------------------------------------------------

    @property
    def notebook(self) -> Path | None:
        """Where this session is recorded (None: not recorded)."""
        return self._record.path(records_by_default=self._records_by_default)

    @property
    def _records_by_default(self) -> bool:
        return self._place.records_by_default

    @property
    def recorder(self) -> Recorder | None:
        """The recorder this session writes to (None: not recorded); given once, see :meth:`attach_recorder`."""
        return self._record.recorder

    @property
    def record_reachable(self) -> str | None:
        """Why the record is reachable from the sandbox (None: it is not); set at start."""
        return self._record.reachable

    def record_to(self, notebook: str | os.PathLike[str]) -> None:
        """Record into ``notebook`` from now on; refused (RecordLocationError) if the sandbox could write it.

        Unless ``allow_reachable_record``. The recorder is attached with
        :meth:`attach_recorder` (resume appends to an existing record).
        """
        self._record.redirect(Path(notebook))
        self._check_record_location()

    def attach_recorder(self, recorder: Recorder) -> None:
        """Give a session that has no recorder one (resume's, appending to the recorded notebook)."""
        self._record.attach(recorder)

    def _check_record_location(self) -> None:
        """Refuse a record the sandbox could write (unless allowed); create the default record directory."""
        # What a kernel elsewhere can write is its server's business, not this host's.
        writable = [] if self._place.elsewhere else [self.workspace, *self.policy.writable_paths]
        self._record.check_place(records_by_default=self._records_by_default, writable=writable,
                                 allow_reachable=self.allow_reachable_record)

    def settings(self) -> dict[str, Any]:
        """The session's own limits: recorded in the header and in the sealed end, and shown by audit."""
        return {
            "default_timeout": self.default_timeout, "interrupt_grace": self.interrupt_grace,
            "startup_timeout": self.startup_timeout, "max_output_bytes": self.max_output_bytes,
            "tool_timeout": self.bridge.call_timeout, "max_tool_calls": self.bridge.max_calls,
            "max_request_bytes": self.bridge.max_request_bytes, "tool_policy": self._tool_policy_name,
            "approver": self.bridge.approver is not None, "restore_on_death": self.restore_on_death,
            "limits": self.policy.limits.model_dump(mode="json"),
        }

    def _seal(self, recorder: Recorder, reason: str) -> None:
        """Seal the record (called once the kernel is stopped: nothing it does can land after this)."""
        recording.seal(recorder, {**self.totals, "kernel_restarts": self.kernel_restarts}, reason=reason,
                       settings=self.settings(), record=self._record.facts(), **self._tools.record_end(self.bridge))

    def _start_recording(self, signing_key: Ed25519PrivateKey | None = None) -> None:
        path = self.notebook
        if path is None:
            return
        header = recording.session_header(
            self.metadata(), started_at=self.started_at or time.time(), settings=self.settings(),
            record=self._record.facts(), manifest=self.manifest, sdk_modules=self.sdk_modules,
            definitions=self._tools.definitions())
        self._record.begin(path, {**header, **seeds.header_entry(self.seed)}, signing_key)

    @classmethod
    async def resume(cls, notebook: str | os.PathLike[str], *, workspace: str | os.PathLike[str] | None = None,
                     **options: Any) -> Session:
        """A started session whose kernel state is rebuilt from a recorded notebook, recording on into it.

        The recorded cells run again with their recorded tool results (no
        tool runs twice); ``tools=`` must be the session's tools for new
        cells. ``workspace`` is the caller's (default: a fresh temporary
        one); the workspace named in the notebook is never used.
        ``resume_differences`` lists cells whose rebuilt outcome differed
        from the recording. See :mod:`kernel_agent.session.resume`.
        """
        from kernel_agent.session.resume import resume_session

        session, differences = await resume_session(cls, notebook, workspace=workspace, **options)
        session.resume_differences = differences
        return session

    def record_message(self, kind: str, text: str, details: dict[str, Any] | None = None) -> None:
        """Record a markdown cell: the task (``kind="task"``) or a model's message (``"message"``), ``details``
        in its metadata."""
        self.last_activity = time.monotonic()
        if self._record.recorder is not None:
            self._record.recorder.record_note(kind, text, details or {})

    def _warn_if_unconfined(self) -> None:
        """A weaker sandbox is never silent: warn once per session start."""
        if self._place.elsewhere:
            return  # confined (or not) by whoever started it: recorded as such, not this host's policy
        weaker = list(self.policy.loosenings())
        enforcement = self._kernel.enforcement if self._kernel is not None else {}
        weaker += [f"limit {name}: {how}" for name, how in enforcement.items() if how.startswith("NOT ENFORCED")]
        if weaker:
            warnings.warn(f"session {self.id[:8]} is less confined than the default: " + "; ".join(weaker),
                          UnconfinedWarning, stacklevel=3)

    # -- cells --------------------------------------------------------------

    async def execute(
        self,
        code: str,
        *,
        timeout: float | EllipsisType | None = ...,
        record_extras: RecordExtras = None,
        on_output: OutputCallback | None = None,
    ) -> CellResult:
        """Run ``code`` in the kernel and return everything it produced.

        ``timeout`` (seconds; default: the session's ``default_timeout``;
        None: no limit) interrupts the cell. A cell that does not stop within
        ``interrupt_grace`` after the interrupt is killed with its kernel,
        and a fresh kernel takes its place (``state_lost`` in the result).
        ``record_extras`` go into the recorded cell's metadata (an agent's
        observation and token usage); a callable gets the result first and
        returns them, or an awaitable of them (so they can describe the cell they are recorded with).
        ``on_output`` gets the cell's output as it arrives (see
        :mod:`kernel_agent.runtime.streaming`). Cancelled while the cell runs,
        the cell is interrupted and recorded with its outputs so far (status
        ``cancelled``) before the cancellation goes on.
        """
        self._background.refuse_if_running()
        async with self._lock:
            return await self._run_cell(code, self.default_timeout if timeout is ... else timeout, record_extras,
                                        on_output=on_output)

    async def start_cell(
        self,
        code: str,
        *,
        timeout: float | EllipsisType | None = ...,
        record_extras: RecordExtras = None,
        on_output: OutputCallback | None = None,
    ) -> RunningCell:
        """Start ``code`` as a background cell and return its handle at once (options as for :meth:`execute`).

        Until it ends, :meth:`execute` raises CellRunningError and :meth:`close` cancels it; see :mod:`.background`.
        """
        limit = self.default_timeout if timeout is ... else timeout
        self._require_kernel()
        return await self._background.start(code, self._lock,
                                            lambda c: self._run_cell(code, limit, record_extras, c, on_output))

    @property
    def running_cell(self) -> RunningCell | None:
        """The background cell that still runs (None: none does)."""
        return self._background.current

    async def _run_cell(self, code: str, limit: float | None, record_extras: RecordExtras,
                        control: cells.CellControl | None = None,
                        on_output: OutputCallback | None = None) -> CellResult:
        """Run and record one cell (the session lock is held); a cancelled one is recorded before it raises."""
        kernel = self._require_kernel()
        self.last_activity = time.monotonic()
        limits = cells.CellLimits(self.max_output_bytes, self.interrupt_grace, self.restore_on_death,
                                  self.default_timeout)
        try:
            result = await self._cells.execute(kernel, code, limit, limits, control, on_output=on_output,
                                               on_interrupted=lambda cell: self._record_cell(cell, record_extras))
        finally:
            self.last_activity = time.monotonic()
        await self._record_cell(result, record_extras, control)
        return result

    async def _record_cell(self, result: CellResult, record_extras: RecordExtras,
                           control: cells.CellControl | None = None) -> None:
        recorder = self._record.recorder
        if recorder is not None:
            # The journal is fsynced per cell: in a worker thread, so other sessions'
            # event-loop work does not wait for the disk. The session lock keeps order.
            extras = record_extras(result) if callable(record_extras) else record_extras
            if inspect.isawaitable(extras):
                extras = await extras
            if control is not None:
                extras = {**(extras or {}), "background": True}
            await asyncio.to_thread(recorder.record_code, result, extras)

    # -- description ----------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """What this session is and how it is confined (for notebooks and logs)."""
        return recording.describe(self.id, self.policy, self._kernel, self._place.path, self.kernel_restarts)
