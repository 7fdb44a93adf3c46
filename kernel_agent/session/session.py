"""Session: one sandboxed kernel with persistent state, running cells for an agent."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kernel_agent._version import __version__
from kernel_agent.runtime.outputs import OutputCollector
from kernel_agent.runtime.results import DEFAULT_MAX_OUTPUT_BYTES, OUTPUT_LOST, CellError, CellResult, CellStatus
from kernel_agent.errors import (
    KernelStartError,
    PoolError,
    RecordingError,
    SessionClosedError,
    UnconfinedWarning,
    WorkspaceError,
)
from kernel_agent.record.format import AUDIT_KEY_ENV
from kernel_agent.record.location import check_record_location, default_record_dir, ensure_record_dir
from kernel_agent.record.recorder import Recorder
from kernel_agent.record.signing import SIGNING_KEY_ENV, SigningKeySource, load_private_key
from kernel_agent.runtime.process import KernelProcess
from kernel_agent.sandbox.hostlocks import make_held_dir, remove_held_dir
from kernel_agent.sandbox.policy import SandboxMode, SandboxPolicy
from kernel_agent.sandbox.provisioner import RUN_DIR_PREFIX
from kernel_agent.tools.bridge import ToolBridge
from kernel_agent.tools.calls import ProgressEvent
from kernel_agent.tools.policy import Approver, Policy, allow_all

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kernel_agent.runtime.pool import KernelPool

# How often a waiting cell checks that its kernel is still alive.
_LIVENESS_POLL_SECONDS = 0.1
# After the execute reply, outputs still in flight on iopub get this long.
_IOPUB_SETTLE_SECONDS = 2.0
#: What restore_on_death may keep of past cells (their code, outputs and tool records), in bytes.
HISTORY_MAX_BYTES = 64 * 1024**2
_HISTORY_OVERFLOW = (f"restore_on_death could not restore the earlier cells: together they are over the "
                     f"{HISTORY_MAX_BYTES:,} bytes kept for it (HISTORY_MAX_BYTES)")


def _history_size(result: CellResult) -> int:
    """What keeping a past cell for restore_on_death costs, about (its JSON; NaN and inf become null)."""
    return len(result.model_dump_json())


class Session:
    """One restricted IPython kernel, its workspace, and the cells run in it.

    Use it as an async context manager, or call :meth:`start` and
    :meth:`close` yourself. Problems caused by a cell never raise: they are
    reported in the :class:`CellResult`. Host problems raise
    :class:`~kernel_agent.errors.KernelAgentError` subclasses.

    With ``pool=`` (a started :class:`~kernel_agent.runtime.pool.KernelPool`) the
    session takes a pre-started kernel and its workspace instead of
    launching one; ``keep_workspace=True`` keeps a workspace the session did
    not get from the caller (temporary or pooled) after close, and records
    the notebook in it by default.
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
        notebook: str | os.PathLike[str] | None | bool = None,
        audit_key: bytes | str | None = None,
        record_metadata: dict[str, Any] | None = None,
        restore_on_death: bool = False,
        pool: KernelPool | None = None,
        keep_workspace: bool = False,
        record_dir: str | os.PathLike[str] | None = None,
        allow_reachable_record: bool = False,
        signing_key: SigningKeySource | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        if pool is not None:
            _check_pool_options(pool, workspace, policy, keep_workspace)
        self._pool = pool
        self.keep_workspace = keep_workspace
        self.policy = policy or (pool.policy if pool is not None else SandboxPolicy())
        self.max_output_bytes = max_output_bytes
        self.default_timeout = default_timeout
        self.interrupt_grace = interrupt_grace
        self.startup_timeout = startup_timeout
        self._owns_workspace = workspace is None
        self._workspace = Path(workspace).resolve() if workspace is not None else None
        self._kernel: KernelProcess | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._closed_because: str | None = None
        #: time.monotonic() of the session's last activity (start, a cell, a recorded message);
        #: a pool's idle culling reads it.
        self.last_activity = time.monotonic()
        self.kernel_restarts = 0
        self.started_at: float | None = None
        self._tool_items = list(tools) if isinstance(tools, (list, tuple, set)) else [tools] if tools else []
        self._started_servers: list[Any] = []
        self.registry: Any = None
        self.sdk_modules: dict[str, str] = {}
        self._cells_run = 0
        self._notebook_option = notebook
        key = audit_key if audit_key is not None else os.environ.get(AUDIT_KEY_ENV)
        self._audit_key = key.encode() if isinstance(key, str) else key
        self._record_dir = Path(record_dir).resolve() if record_dir is not None else None
        self.allow_reachable_record = allow_reachable_record
        self._signing_key_source = signing_key if signing_key is not None else os.environ.get(SIGNING_KEY_ENV)
        #: Why the record is reachable from the sandbox (None: it is not); set at start.
        self.record_reachable: str | None = None
        self._tool_policy_name = getattr(tool_policy, "__name__", type(tool_policy).__name__)
        self._record_metadata = dict(record_metadata or {})
        self.recorder: Recorder | None = None
        self.resume_differences: list[str] = []
        # Off by default: restoring re-runs earlier cells (their workspace writes happen again),
        # takes as long as they did, and a memory-limit death would likely recur.
        self.restore_on_death = restore_on_death
        self._history: list[CellResult] = []  # cells since the kernel state was last fresh (restore_on_death)
        self._history_bytes, self._history_overflow = 0, False
        self._restoring = False
        self.totals = {"cells": 0, "errors": 0, "timeouts": 0, "kernel_deaths": 0, "tool_calls": 0,
                       "tool_errors": 0, "seconds_in_cells": 0.0}
        self.bridge = ToolBridge(
            self._lookup_tool, policy=tool_policy, approver=approver, call_timeout=tool_timeout,
            max_calls=max_tool_calls, on_progress=on_progress,
        )

    # -- lifecycle ---------------------------------------------------------

    @property
    def workspace(self) -> Path:
        """The directory the kernel works in (and may write to)."""
        if self._workspace is None:
            raise SessionClosedError("the session has not been started")
        return self._workspace

    @property
    def started(self) -> bool:
        """Whether a kernel is running for this session."""
        return self._kernel is not None

    async def start(self) -> Session:
        """Launch the sandboxed kernel; raise SandboxError/KernelStartError if it cannot run."""
        if self._closed:
            raise SessionClosedError("this session was closed; create a new Session")
        if self._kernel is not None:
            return self
        if self._workspace is None and self._pool is None:
            # A kept workspace must not look like a dead host's leftovers, which are reaped.
            owner = "kept" if self.keep_workspace else str(os.getpid())
            prefix = f"{RUN_DIR_PREFIX}{owner}-workspace-"
            # A temporary one is held (locked) while this host lives: no other host's reaper removes it.
            self._workspace = Path(tempfile.mkdtemp(prefix=prefix)) if self.keep_workspace else make_held_dir(prefix)
        elif self._workspace is not None and not self._workspace.is_dir():
            raise WorkspaceError(f"workspace {self._workspace} does not exist or is not a directory; create it first")
        signing_key = load_private_key(self._signing_key_source) if self._signing_key_source else None
        if self._workspace is not None:  # else a pooled kernel brings it: checked once it is there
            self._check_record_location()
        try:
            await self._prepare_tools()
            self._kernel = await self._new_kernel(from_pool=True)
            if self._pool is not None:
                self._check_record_location()
            self.started_at = time.time()
            # The SDK install mostly waits for the kernel: the recording (files, fsyncs) starts meanwhile,
            # in a worker thread, which also keeps it off the event loop other sessions share.
            outcomes = await asyncio.gather(self._install_sdk(self._kernel),
                                            asyncio.to_thread(self._start_recording, signing_key),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            # Nothing half-started survives a failed start: kernel, MCP servers, temporary workspace;
            # a notebook already begun is finalised (with no cells) rather than left open.
            kernel, self._kernel = self._kernel, None
            if kernel is not None:
                await kernel.kill()
            recorder, self.recorder = self.recorder, None
            if recorder is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._seal, recorder, "start_failed")
            await self._close_servers()
            if self._pool is not None:
                self._pool.release(self)
            if self._owns_workspace and self._workspace is not None:
                await asyncio.to_thread(remove_held_dir, self._workspace)  # a kernel-shaped tree: off the loop
                self._workspace = None
            raise
        self.last_activity = time.monotonic()
        self._warn_if_unconfined()
        return self

    @property
    def notebook(self) -> Path | None:
        """Where this session is recorded (None: not recorded)."""
        option = self._notebook_option
        if option is False:
            return None
        if option is None and self._owns_workspace and not self.keep_workspace:
            return None  # a session on a throwaway workspace records only when asked to
        if option is None or option is True:
            # Out of the sandbox's reach: never the workspace (see kernel_agent.record.location).
            return (self._record_dir or default_record_dir()) / f"kernel-agent-{self.id[:8]}.ipynb"
        return Path(option).resolve()

    def _check_record_location(self) -> None:
        """Refuse a record the sandbox could write (unless allowed); create the default record directory."""
        notebook = self.notebook
        if notebook is None:
            return
        if self._notebook_option in (None, True) and self._record_dir is None:
            ensure_record_dir(notebook.parent)
        if not notebook.parent.is_dir():
            raise RecordingError(f"the notebook's directory {notebook.parent} does not exist; create it first")
        writable = [self.workspace, *self.policy.writable_paths]
        self.record_reachable = check_record_location(notebook, writable, allowed=self.allow_reachable_record)

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

    def _record_facts(self) -> dict[str, Any]:
        return {"reachable_from_sandbox": self.record_reachable is not None, "why": self.record_reachable,
                "hmac": self._audit_key is not None}

    def _seal(self, recorder: Recorder, reason: str) -> None:
        """Seal the record (called once the kernel is stopped: nothing it does can land after this)."""
        recorder.close({**self.totals, "kernel_restarts": self.kernel_restarts}, reason=reason,
                       settings=self.settings(), record=self._record_facts())

    def _start_recording(self, signing_key: Ed25519PrivateKey | None = None) -> None:
        path = self.notebook
        if path is None:
            return
        from kernel_agent.tools.sdkgen import sdk_hash

        metadata = self.metadata()
        header = {
            "session_id": self.id,
            "started_at": dt.datetime.fromtimestamp(self.started_at or time.time(), dt.timezone.utc).isoformat(),
            "kernel_agent_version": metadata["kernel_agent_version"],
            "ipykernel_version": metadata["ipykernel_version"],
            "python_version": metadata["python_version"],
            "workspace": metadata["workspace"],
            "sandbox": metadata["sandbox"],
            "settings": self.settings(),
            "record": self._record_facts(),
            "tools": {
                "manifest": self.manifest,
                "sdk_hash": sdk_hash(self.sdk_modules),
                "sdk_modules": self.sdk_modules,
                "definitions": [_tool_definition(t) for t in self.registry],
            },
            **self._record_metadata,
        }
        self.recorder = Recorder(path, header, hmac_key=self._audit_key, signing_key=signing_key)

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

        session, differences = await resume_session(notebook, workspace=workspace, **options)
        session.resume_differences = differences
        return session

    def record_message(self, kind: str, text: str) -> None:
        """Record a markdown cell: the task (``kind="task"``) or a model's message (``"message"``)."""
        self.last_activity = time.monotonic()
        if self.recorder is not None:
            self.recorder.record_markdown(kind, text)

    def _warn_if_unconfined(self) -> None:
        """A weaker sandbox is never silent: warn once per session start."""
        weaker = list(self.policy.loosenings())
        enforcement = self._kernel.provisioner.enforcement if self._kernel is not None else {}
        weaker += [f"limit {name}: {how}" for name, how in enforcement.items() if how.startswith("NOT ENFORCED")]
        if weaker:
            warnings.warn(f"session {self.id[:8]} is less confined than the default: " + "; ".join(weaker),
                          UnconfinedWarning, stacklevel=3)

    async def _prepare_tools(self) -> None:
        """Start the MCP servers given as tools, then build the registry and the SDK source."""
        from kernel_agent.tools.registry import ToolRegistry
        from kernel_agent.tools.sdkgen import generate_sdk

        # Only an McpServer needs starting; if the caller made one, its module is loaded
        # (sessions without MCP servers never pay for importing the mcp SDK).
        mcp_module = sys.modules.get("kernel_agent.tools.mcp")
        for item in self._tool_items:
            if mcp_module is not None and isinstance(item, mcp_module.McpServer) and not item.started:
                await item.start()
                self._started_servers.append(item)
        self.registry = ToolRegistry(self._tool_items)
        self.sdk_modules = generate_sdk(self.registry)

    @property
    def manifest(self) -> str:
        """The short tool manifest for a system prompt (names and one-line summaries; details via help())."""
        if self.registry is None:
            raise SessionClosedError("the session has not been started")
        return str(self.registry.manifest()) if len(self.registry) else ""

    def _lookup_tool(self, qualified_name: str) -> Any:
        try:
            return self.registry.lookup(qualified_name) if self.registry is not None else None
        except (KeyError, LookupError):
            return None

    async def _new_kernel(self, *, from_pool: bool) -> KernelProcess:
        """A running kernel without the SDK: the pool's (and its workspace) at a pooled session's start.

        A replacement kernel (after a death or a timeout) is always launched
        here, on the session's own workspace: a pooled kernel is bound to
        another directory, and the workspace's files outlive the kernel.
        """
        if from_pool and self._pool is not None:
            kernel = await self._pool.take_kernel(self)
            self._workspace = kernel.workspace
            return kernel
        kernel = KernelProcess(self.policy, self.workspace)
        await kernel.start(self.startup_timeout)
        return kernel

    async def _launch(self) -> KernelProcess:
        """A fresh kernel on the session's workspace with the session's SDK installed (for restarts)."""
        kernel = await self._new_kernel(from_pool=False)
        try:
            await self._install_sdk(kernel)
        except BaseException:
            await kernel.kill()
            raise
        return kernel

    async def _install_sdk(self, kernel: KernelProcess) -> None:
        """Open the bridge in the new kernel and give it the session's SDK (a silent cell)."""
        connection = kernel.connection
        assert connection is not None
        shell = connection.shell
        self.bridge.bind(lambda comm_id, data, buffers: connection.post(
            shell, "comm_msg", {"comm_id": comm_id, "data": data}, buffers))
        connection.on_comm = self.bridge.on_comm_message
        code = ("from kernel_agent.kernel.bridge import install as _kernel_agent_install\n"
                f"_kernel_agent_install({self.sdk_modules!r}, {float(self.bridge.call_timeout)!r})\n"
                "del _kernel_agent_install")
        collector = OutputCollector(self.max_output_bytes)
        request = connection.send(shell, "execute_request",
                                  {"code": code, "silent": True, "store_history": False, "user_expressions": {},
                                   "allow_stdin": False, "stop_on_error": False},
                                  on_iopub=collector.add, wants_content=collector.wants_content)
        try:
            status, _ = await self._await_reply(kernel, request.reply, time.monotonic() + self.startup_timeout)
        finally:
            connection.forget(request)
        content = request.reply.result()["content"] if status == "replied" else {}
        if content.get("status") != "ok":
            detail = content.get("evalue") or f"the kernel {'died' if status == 'died' else 'did not answer'}"
            raise KernelStartError(f"the tool SDK could not be installed in the kernel: {detail}")

    async def close(self) -> None:
        """Shut the kernel down, stop the MCP servers it started, remove its run directory (idempotent)."""
        self._closed = True
        # The kernel is stopped before the record is sealed: a kernel thread that is still
        # running could otherwise act (or, with a reachable record, write) after the seal.
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            await kernel.kill()
        await self.bridge.close()
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            await asyncio.to_thread(self._seal, recorder, "idle" if self._closed_because else "closed")
        await self._close_servers()
        if self._pool is not None:
            self._pool.release(self)
        if self._owns_workspace and not self.keep_workspace and self._workspace is not None:
            # The kernel chose how big this tree is: walk it off the event loop other sessions share.
            await asyncio.to_thread(remove_held_dir, self._workspace)

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

    async def _close_servers(self) -> None:
        servers, self._started_servers = self._started_servers, []
        for server in servers:
            with contextlib.suppress(Exception):
                await server.close()

    async def restart(self) -> None:
        """Replace the kernel with a fresh one; all variables are lost."""
        async with self._lock:
            await self._replace_kernel()

    async def _replace_kernel(self) -> None:
        old = self._require_kernel()
        await old.kill()
        self._kernel = None
        self._kernel = await self._launch()
        self.kernel_restarts += 1

    async def __aenter__(self) -> Session:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _require_kernel(self) -> KernelProcess:
        if self._closed:
            because = f": {self._closed_because}" if self._closed_because else ""
            raise SessionClosedError(f"this session is closed{because}")
        if self._kernel is None:
            raise SessionClosedError("the session has not been started: use `async with Session()` or `await start()`")
        return self._kernel

    # -- cells --------------------------------------------------------------

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = ...,  # type: ignore[assignment]
        record_extras: dict[str, Any] | Callable[[CellResult], dict[str, Any]] | None = None,
    ) -> CellResult:
        """Run ``code`` in the kernel and return everything it produced.

        ``timeout`` (seconds; default: the session's ``default_timeout``;
        None: no limit) interrupts the cell. A cell that does not stop within
        ``interrupt_grace`` after the interrupt is killed with its kernel,
        and a fresh kernel takes its place (``state_lost`` in the result).
        ``record_extras`` go into the recorded cell's metadata (an agent's
        observation and token usage); a callable gets the result first and
        returns them (so they can describe the cell they are recorded with).
        """
        limit = self.default_timeout if timeout is ... else timeout
        async with self._lock:
            kernel = self._require_kernel()
            self.last_activity = time.monotonic()
            try:
                result = await self._run_cell(kernel, code, limit)
            finally:
                self.last_activity = time.monotonic()
            if result.state_lost:
                self._history.clear()
                self._history_bytes, self._history_overflow = 0, False
            elif result.status is not CellStatus.KERNEL_DIED and not result.kernel_restarted \
                    and self.restore_on_death and not self._history_overflow:
                # Past cells are kept only to restore state, and within a bound: beyond it,
                # restoring is given up (and says so) rather than host memory growing per cell.
                self._history_bytes += _history_size(result)
                self._history.append(result)
                if self._history_bytes > HISTORY_MAX_BYTES:
                    self._history.clear()
                    self._history_overflow = True
            self._count(result)
            if self.recorder is not None:
                # The journal is fsynced per cell: in a worker thread, so other sessions'
                # event-loop work does not wait for the disk. The session lock keeps order.
                extras = record_extras(result) if callable(record_extras) else record_extras
                await asyncio.to_thread(self.recorder.record_code, result, extras)
            return result

    def _count(self, result: CellResult) -> None:
        self.totals["cells"] += 1
        self.totals["errors"] += result.status is CellStatus.ERROR
        self.totals["timeouts"] += result.status is CellStatus.TIMEOUT
        self.totals["kernel_deaths"] += result.status is CellStatus.KERNEL_DIED
        self.totals["tool_calls"] += len(result.tool_calls)
        self.totals["tool_errors"] += sum(c.status.value != "ok" for c in result.tool_calls)
        self.totals["seconds_in_cells"] += result.duration

    async def _run_cell(self, kernel: KernelProcess, code: str, timeout: float | None) -> CellResult:
        assert kernel.connection is not None
        started = time.monotonic()
        collector = OutputCollector(self.max_output_bytes)
        request = kernel.connection.send(
            kernel.connection.shell,
            "execute_request",
            {"code": code, "silent": False, "store_history": True, "user_expressions": {},
             "allow_stdin": False, "stop_on_error": False},
            on_iopub=collector.add,
            wants_content=collector.wants_content,
        )
        # No await since the send: the kernel's calls for this request cannot have been read yet.
        self.bridge.begin_cell(self._cells_run, request.msg_id)
        self._cells_run += 1
        deadline = None if timeout is None else started + timeout
        status, timed_out = await self._await_reply(kernel, request.reply, deadline)
        if status == "timeout":
            timed_out = True
            await kernel.interrupt()
            status, _ = await self._await_reply(kernel, request.reply, time.monotonic() + self.interrupt_grace)
            if status == "timeout":
                status = "stuck"
        if status == "replied":
            await self._settle_iopub(request.idle, collector)
        kernel.connection.forget(request) if kernel.connection is not None else None
        return await self._finish(kernel, code, collector, request.reply, status, timed_out, started, timeout)

    async def _await_reply(
        self, kernel: KernelProcess, reply: asyncio.Future[Any], deadline: float | None
    ) -> tuple[str, bool]:
        """Wait for the reply, the deadline, or the kernel's death, whichever comes first.

        While a reply is overdue the kernel is nudged with a kernel_info
        request now and then (2, 4, 8 ... 60 s): ipykernel 7's shell stream can
        miss the wake-up of a request that arrives while it sends a reply
        (ipykernel #1554), and any later message makes it read what is waiting.
        """
        nudge_after, next_nudge = 2.0, time.monotonic() + 2.0
        while True:
            if time.monotonic() >= next_nudge and kernel.connection is not None:
                kernel.connection.forget(kernel.connection.send(kernel.connection.shell, "kernel_info_request", {}))
                nudge_after = min(nudge_after * 2, 60.0)
                next_nudge = time.monotonic() + nudge_after
            wait = _LIVENESS_POLL_SECONDS
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return "timeout", True
            done, _ = await asyncio.wait({reply}, timeout=wait)
            if done:
                return "replied", False
            if not kernel.alive():
                return "died", False

    @staticmethod
    async def _settle_iopub(idle: asyncio.Event, collector: OutputCollector) -> None:
        """Wait briefly for the outputs still in flight after the reply; say so if they never come."""
        try:
            await asyncio.wait_for(idle.wait(), _IOPUB_SETTLE_SECONDS)
        except asyncio.TimeoutError:
            collector.add({"header": {"msg_type": OUTPUT_LOST}, "content": {
                "reason": f"output still in transit {_IOPUB_SETTLE_SECONDS:.0f} s after the cell finished was not "
                          "waited for", "min_bytes": 0}})

    async def _finish(
        self,
        kernel: KernelProcess,
        code: str,
        collector: OutputCollector,
        reply: asyncio.Future[Any],
        status: str,
        timed_out: bool,
        started: float,
        timeout: float | None,
    ) -> CellResult:
        restarted = False
        lost = True  # when restarted: unless the state is restored
        error = collector.error
        if status == "replied":
            content = reply.result()["content"]
            cell_status = CellStatus.OK if content.get("status") == "ok" else CellStatus.ERROR
            if timed_out:
                cell_status = CellStatus.TIMEOUT
            execution_count = content.get("execution_count", collector.execution_count)
            if cell_status is not CellStatus.OK and error is None:
                error = CellError(ename=content.get("ename", "Error"), evalue=content.get("evalue", ""),
                                  traceback=content.get("traceback", []))
        else:
            execution_count = collector.execution_count
            if status == "died":
                cell_status = CellStatus.KERNEL_DIED
                error = CellError(ename="KernelDied",
                                  evalue=f"The kernel died while running this cell: {kernel.death_reason()}. "
                                         "A fresh kernel was started; variables from earlier cells are lost.")
            else:
                cell_status = CellStatus.TIMEOUT
                error = CellError(ename="CellTimeout",
                                  evalue=f"The cell ran past its {timeout} s timeout and did not stop within "
                                         f"{self.interrupt_grace} s of an interrupt, so its kernel was killed. "
                                         "A fresh kernel was started; variables from earlier cells are lost.")
            log = await self.bridge.end_cell()
            await self._replace_kernel()
            restarted = True
            if self.restore_on_death and self._history_overflow:
                collector.note(_HISTORY_OVERFLOW)
            if self.restore_on_death and not self._restoring and not self._history_overflow \
                    and await self._restore_state():
                lost = False
                error = CellError(ename=error.ename, evalue=error.evalue.replace(
                    "variables from earlier cells are lost.",
                    "the earlier cells were re-run with their recorded tool results, so their state is back."))
        if not restarted:
            log = await self.bridge.end_cell()
        for note in log.notes():
            collector.note(note)
        return CellResult(
            code=code,
            status=cell_status,
            outputs=collector.finish(),
            error=error,
            execution_count=execution_count,
            duration=time.monotonic() - started,
            timed_out=timed_out,
            kernel_restarted=restarted,
            state_lost=restarted and lost,
            dropped_output_bytes=collector.dropped_bytes,
            tool_calls=log.calls,
            progress=log.progress,
            final_answer=log.final_answers[-1] if log.final_answers else None,
            has_final_answer=bool(log.final_answers),
        )

    async def _restore_state(self) -> bool:
        """Re-run the cells since the last fresh state in the new kernel, tools answered from their records."""
        from kernel_agent.record.recording import RecordedCell
        from kernel_agent.tools.recorded import RecordedTools, recorded_tools
        from kernel_agent.tools.registry import ToolRegistry

        server = RecordedTools()
        live = self.registry
        self.registry = ToolRegistry(recorded_tools([_tool_definition(t) for t in live], server))
        self._restoring = True
        try:
            for index, past in enumerate(self._history):
                server.begin_cell(RecordedCell(
                    index=index, seq=None, source=past.code, status=past.status.value, outputs=past.outputs,
                    calls=[call.model_dump(mode="json") for call in past.tool_calls],
                    final_answer=(past.has_final_answer, past.final_answer), duration=past.duration,
                    timed_out=past.timed_out))
                try:
                    again = await self._run_cell(self._require_kernel(), past.code, self.default_timeout)
                finally:
                    server.end_cell()
                if again.kernel_restarted:
                    return False
            return True
        finally:
            self._restoring = False
            self.registry = live

    # -- description ----------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """What this session is and how it is confined (for notebooks and logs)."""
        import ipykernel

        kernel = self._kernel
        provisioner = kernel.provisioner if kernel is not None else None
        return {
            "session_id": self.id,
            "kernel_agent_version": __version__,
            "ipykernel_version": ipykernel.__version__,
            "python_version": platform.python_version(),
            "python_executable": sys.executable,
            "workspace": str(self._workspace) if self._workspace else None,
            "sandbox": {
                "mode": self.policy.mode.value,
                "policy": self.policy.model_dump(mode="json"),
                "loosenings": self.policy.loosenings(),
                "limits_enforced_by": provisioner.enforcement if provisioner else {},
                "confined": self.policy.mode is SandboxMode.BWRAP,
            },
            "kernel_restarts": self.kernel_restarts,
        }


def _check_pool_options(
    pool: KernelPool, workspace: str | os.PathLike[str] | None, policy: SandboxPolicy | None, keep_workspace: bool
) -> None:
    """A pooled kernel was launched with the pool's workspace and policy; say so rather than cold-start silently."""
    if workspace is not None:
        raise PoolError(
            f"a pooled kernel comes with its own workspace, mounted into its sandbox when it was launched, so a "
            f"session given the workspace {workspace} cannot use it. Leave out the workspace (session.workspace "
            "says where it is; keep_workspace=True keeps it, KernelPool(workspace_root=...) says where they are "
            "made), or start the session without the pool.")
    if policy is not None and policy != pool.policy:
        raise PoolError("the pool's kernels run under the pool's SandboxPolicy, and this session asks for a "
                        "different one: use a pool made with that policy, or start the session without the pool")
    if keep_workspace and pool.workspace_root is None:
        raise PoolError("keep_workspace=True needs KernelPool(workspace_root=DIR): the pool's default workspaces "
                        "live in the temporary directory, where they are reaped once the host process ends")


def _tool_definition(tool: Any) -> dict[str, Any]:
    """What a notebook keeps of a tool: enough to regenerate the same SDK for a replay."""
    return {
        "qualified_name": tool.qualified_name, "name": tool.name, "namespace": tool.namespace,
        "description": tool.description, "input_schema": tool.input_schema, "output_schema": tool.output_schema,
        "read_only": tool.read_only, "destructive": tool.destructive, "source": tool.source,
    }
