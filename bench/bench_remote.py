"""Remote-kernel benchmarks: cells, tool calls, attach and memory through Jupyter Server and Kernel Gateway (issue 12).

Every figure of a session whose kernel lives on a server sits next to the
same figure of a local session (the default ``Session()``: a sandboxed
kernel launched by this host) measured in the same run. The servers are
real ones on 127.0.0.1, started as the tests start them
(``tests/remote/conftest.py``: the kernel-agent kernelspec in a temporary
Jupyter path, token auth), so what separates remote from local is the
websocket to the server and the server's own hop to the kernel's zmq
sockets; the kernel and its sandbox are the same.

* **cells and tool calls**: one session per subject, sampled in interleaved
  blocks so a noisy neighbour slows every subject alike: trivial cells
  (``await session.execute("1")``, timed on the host), synchronous calls of a
  trivial host tool from a cell (a loop of calls inside one cell, each timed
  in the kernel) and gathered async calls (``asyncio.gather`` of
  ``tools.add_async.aio(i)``). During the synchronous calls the CPU time of
  this host, of the server process and of the kernel is recorded, which says
  which hop costs. Two diagnostic subjects show where the remote latency
  goes: a session whose host acknowledges the server's frames the
  ordinary way (delayed ACKs: kernel-agent's TCP_QUICKACK after each frame
  switched off for it), which shows what Nagle's algorithm on Jupyter
  Server's websockets costs without that; and a Jupyter Server whose sockets
  have TCP_NODELAY forced on (a config file patches tornado), which shows
  what is left to gain on the server's side.
* **attach**: a session on a server detaches; ``Session.attach(kernel_id,
  ...)`` is timed until its first cell has run, with and without a notebook
  to continue. Baseline: starting a new session on the same server.
* **memory**: N idle sessions (one cell run) held at once. Remote: the
  server's process tree (the server and every kernel it launched) before
  and with them, by RSS and PSS, and this host's growth. Local: each
  sandbox's tree plus this host's growth. The same N for both.

Timings are printed, never asserted. Run: ``python bench/bench_remote.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))  # tests.remote.conftest starts the servers
from _benchlib import MB, Row, TreeMemory, bench_main, make_row, median, percentile, tree_memory  # noqa: E402

from kernel_agent import CellStatus, JupyterServer, Session, tool_from_function  # noqa: E402
from kernel_agent.runtime.remote import websocket  # noqa: E402
from tests.remote.conftest import RunningServer, ServerKind, start_server  # noqa: E402

BENCHMARK = "remote"
CELL_TIMEOUT = 120.0

LOCAL = "local"
JUPYTER: ServerKind = "jupyter-server"
GATEWAY: ServerKind = "kernel-gateway"
NODELAY = "jupyter-server, TCP_NODELAY on the server"
DELAYED_ACK = "jupyter-server, host ACKs delayed (quick ACKs off)"
SERVERS: tuple[ServerKind, ...] = (JUPYTER, GATEWAY)
DIAGNOSES = {
    DELAYED_ACK: "diagnostic: Nagle's algorithm on the server's websocket against a host that delays its ACKs, "
                 "what kernel-agent's quick ACKs remove",
    NODELAY: "diagnostic, not a supported configuration: Nagle off on the server too, what is left to gain there",
}

# Loaded by the diagnostic Jupyter Server at startup (its config file): tornado turns Nagle's
# algorithm back on once the websocket's HTTP upgrade is answered, and Jupyter Server never sets
# nodelay on its kernel websockets. Forcing it on shows what is left to gain on the server's side.
NODELAY_CONFIG = """
import tornado.iostream as _iostream
_set_nodelay = _iostream.IOStream.set_nodelay
_iostream.IOStream.set_nodelay = lambda self, value: _set_nodelay(self, True)
"""


def add(a: int, b: int = 1) -> int:
    """Add two integers (the trivial tool: its cost is all bridge)."""
    return a + b


async def add_async(a: int, b: int = 1) -> int:
    """Add two integers, as a coroutine (served on the host's event loop)."""
    return a + b


TOOLS = [tool_from_function(add), tool_from_function(add_async)]


@dataclass(frozen=True)
class Config:
    """How much to measure; ``--quick`` trades precision for time."""

    blocks: int  # interleaving blocks for cells and sync calls
    cells: int  # trivial cells per subject
    sync_calls: int  # synchronous calls per cell (one cell per block)
    gather_calls: int
    gather_reps: int
    attaches: int  # per server and notebook mode
    cold_starts: int  # new sessions per backend: the attach baseline
    idle_sessions: tuple[int, ...]

    @classmethod
    def for_mode(cls, quick: bool) -> Config:
        if quick:
            return cls(blocks=2, cells=60, sync_calls=200, gather_calls=500, gather_reps=2, attaches=3,
                       cold_starts=2, idle_sessions=(1, 3))
        return cls(blocks=5, cells=300, sync_calls=200, gather_calls=500, gather_reps=5, attaches=10,
                   cold_starts=8, idle_sessions=(1, 10))


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays the result table."""
    print(f"[bench_remote] {message}", file=sys.stderr, flush=True)


def _row(name: str, value: float, unit: str, **kwargs: Any) -> Row:
    return make_row(BENCHMARK, name, value, unit, **kwargs)


def _ms(seconds: float) -> float:
    return seconds * 1e3


# -- servers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _servers(base: Path, kinds: dict[str, ServerKind]) -> Iterator[dict[str, RunningServer]]:
    """Start the servers named in ``kinds`` (the diagnostic one with its config file); stop them all at the end."""
    running: dict[str, RunningServer] = {}
    try:
        for name, kind in kinds.items():
            where = base / name.replace(" ", "_").replace(",", "")
            (where / "config").mkdir(parents=True)
            if name == NODELAY:
                (where / "config" / "jupyter_server_config.py").write_text(NODELAY_CONFIG)
            started = time.perf_counter()
            running[name] = start_server(kind, where)
            log(f"{name} up at {running[name].url} in {time.perf_counter() - started:.1f} s")
        yield running
    finally:
        for server in running.values():
            server.stop()


def client(server: RunningServer) -> JupyterServer:
    return JupyterServer(server.url, token=server.token)


# kernel-agent acknowledges every frame from the server at once (TCP_QUICKACK after each receive, see
# kernel_agent/runtime/remote/websocket.py). The diagnostic subject's connection is left out, to show
# what Nagle's algorithm on the server's side costs a client that delays its ACKs.
_DELAYED_ACKS: weakref.WeakSet[Any] = weakref.WeakSet()
_ack_quickly: Callable[[Any], None] | None = getattr(websocket, "_ack_quickly", None)


def _ack_unless_delayed(ws: Any) -> None:
    if ws not in _DELAYED_ACKS and _ack_quickly is not None:
        _ack_quickly(ws)


if _ack_quickly is not None:
    websocket._ack_quickly = _ack_unless_delayed


# -- the kernel side --------------------------------------------------------------------------

# Defined once in each kernel; each helper prints one JSON line. Results are checked: timing
# failed calls measures nothing.
KERNEL_HELPERS = '''
import asyncio as _bench_asyncio, json as _bench_json, time as _bench_time

def _bench_sync(fn, n):
    clock, samples = _bench_time.perf_counter, []
    first = clock()
    for i in range(n):
        started = clock()
        value = fn(i)
        samples.append(clock() - started)
        if value != i + 1:
            raise AssertionError(f"add({i}) returned {value!r}")
    print(_bench_json.dumps({"samples": samples, "seconds": clock() - first}))

async def _bench_gather(fn, n):
    started = _bench_time.perf_counter()
    values = await _bench_asyncio.gather(*(fn.aio(i) for i in range(n)))
    seconds = _bench_time.perf_counter() - started
    if sum(values) != n * (n + 1) // 2:
        raise AssertionError(f"wrong sum {sum(values)}")
    print(_bench_json.dumps({"seconds": seconds}))
print("{}")
'''


def _cpu(processes: Sequence[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class CpuPerCall:
    """CPU seconds of each side over the synchronous-call cells, and their wall time."""

    calls: int = 0
    wall: float = 0.0
    host: float = 0.0
    server: float = 0.0
    kernel: float = 0.0


@dataclass
class Subject:
    """One live session and the processes whose CPU its calls cost."""

    name: str
    session: Session
    server: RunningServer | None
    cells: list[float] = field(default_factory=list)
    sync: list[float] = field(default_factory=list)  # seconds per call, timed in the kernel
    sync_loops: list[float] = field(default_factory=list)  # calls/s of each whole loop
    gathers: list[float] = field(default_factory=list)  # calls/s
    cpu: CpuPerCall = field(default_factory=CpuPerCall)

    def server_process(self) -> list[psutil.Process]:
        return [] if self.server is None else [psutil.Process(self.server.process.pid)]

    def kernel_processes(self) -> list[psutil.Process]:
        """Local: the sandbox's tree. Remote: everything the server launched (the other kernels there sit idle)."""
        if self.server is None:
            kernel = self.session._kernel
            assert kernel is not None and kernel.provisioner.process is not None  # type: ignore[attr-defined]
            root = psutil.Process(kernel.provisioner.process.pid)  # type: ignore[attr-defined]
            return [root, *root.children(recursive=True)]
        children: list[psutil.Process] = psutil.Process(self.server.process.pid).children(recursive=True)
        return children

    async def run(self, code: str) -> dict[str, Any]:
        result = await self.session.execute(code, timeout=CELL_TIMEOUT)
        if result.status is not CellStatus.OK:
            raise RuntimeError(f"{self.name}: benchmark cell failed: {code!r}: {result.error}")
        data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return data

    async def trivial_cells(self, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            result = await self.session.execute("1", timeout=CELL_TIMEOUT)
            samples.append(time.perf_counter() - started)
            if result.status is not CellStatus.OK:
                raise RuntimeError(f"{self.name}: trivial cell failed: {result.error}")
        return samples

    async def sync_calls(self, count: int) -> None:
        host, server, kernel = [psutil.Process()], self.server_process(), self.kernel_processes()
        before = _cpu(host), _cpu(server), _cpu(kernel)
        started = time.perf_counter()
        data = await self.run(f"_bench_sync(tools.add, {count})")
        self.cpu.wall += time.perf_counter() - started
        self.cpu.host += _cpu(host) - before[0]
        self.cpu.server += _cpu(server) - before[1]
        self.cpu.kernel += _cpu(kernel) - before[2]
        self.cpu.calls += count
        self.sync += [float(s) for s in data["samples"]]
        self.sync_loops.append(count / float(data["seconds"]))

    async def gather(self, count: int) -> None:
        data = await self.run(f"await _bench_gather(tools.add_async, {count})")
        self.gathers.append(count / float(data["seconds"]))


async def measure_calls(config: Config, servers: dict[str, RunningServer]) -> list[Subject]:
    """One session per subject; cells, sync calls and gathers in blocks, the subject order rotating."""
    async with contextlib.AsyncExitStack() as stack:
        subjects: list[Subject] = []
        plan: list[tuple[str, RunningServer | None]] = [(LOCAL, None), *((k, servers[k]) for k in SERVERS)]
        if NODELAY in servers:
            plan.append((NODELAY, servers[NODELAY]))
        if _ack_quickly is not None:
            plan.append((DELAYED_ACK, servers[JUPYTER]))
        else:
            log("kernel_agent.runtime.remote.websocket has no _ack_quickly: the delayed-ACK diagnostic is left out")
        for name, server in plan:
            options: dict[str, Any] = {} if server is None else {
                "server": await stack.enter_async_context(client(server))}
            session = await stack.enter_async_context(
                Session(tools=TOOLS, notebook=False, default_timeout=CELL_TIMEOUT, **options))
            if name == DELAYED_ACK:
                _DELAYED_ACKS.add(session._kernel.connection._ws)  # type: ignore[union-attr]
            subject = Subject(name, session, server)
            await subject.run(KERNEL_HELPERS)
            await subject.trivial_cells(10)  # warm-up: imports, caches, the tool thread pool
            await subject.sync_calls(50)
            await subject.gather(100)
            subject.cells, subject.sync, subject.sync_loops, subject.gathers = [], [], [], []
            subject.cpu = CpuPerCall()
            subjects.append(subject)
        for block in range(config.blocks):
            order = subjects[block % len(subjects):] + subjects[:block % len(subjects)]
            for subject in order:
                subject.cells += await subject.trivial_cells(config.cells // config.blocks)
                await subject.sync_calls(config.sync_calls)
            log(f"block {block + 1}/{config.blocks}: " + ", ".join(
                f"{s.name} cell {_ms(median(s.cells)):.1f} / call {_ms(median(s.sync)):.2f} ms" for s in subjects))
        for rep in range(config.gather_reps):
            for subject in subjects if rep % 2 == 0 else reversed(subjects):
                await subject.gather(config.gather_calls)
        log("gather: " + ", ".join(f"{s.name} {median(s.gathers):.0f} calls/s" for s in subjects))
        return subjects


# -- attach -----------------------------------------------------------------------------------


@dataclass
class AttachSamples:
    """Seconds, by what was timed: start (+ first cell) of a new session; attach (+ first cell) and detach."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.samples.setdefault(key, []).append(seconds)

    def p50(self, key: str) -> float:
        return median(self.samples.get(key, []))


async def _first_cell(session: Session, expect: str) -> None:
    result = await session.execute("print(state)", timeout=CELL_TIMEOUT)
    if result.stdout != expect:
        raise RuntimeError(f"the attached kernel lost its state: {result}")


async def measure_starts(config: Config, servers: dict[str, RunningServer]) -> dict[str, AttachSamples]:
    """New sessions (start, then a first cell), local and on each server, in rotating order: the attach baseline."""
    out = {name: AttachSamples() for name in (LOCAL, *SERVERS)}
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, dict[str, Any]] = {LOCAL: {}}
        for kind in SERVERS:
            options[kind] = {"server": await stack.enter_async_context(client(servers[kind]))}
        names = list(out)
        for round_ in range(config.cold_starts):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                started = time.perf_counter()
                session = await Session(tools=TOOLS, notebook=False, **options[name]).start()
                ready = time.perf_counter()
                await session.execute("state = 1")
                out[name].add("start", ready - started)
                out[name].add("start + first cell", time.perf_counter() - started)
                await session.close()
    log("new sessions: " + ", ".join(f"{name} {_ms(s.p50('start + first cell')):.0f} ms" for name, s in out.items()))
    return out


async def measure_attach(config: Config, server: RunningServer, notebooks: Path) -> AttachSamples:
    """Rounds of attach / first cell / detach, alternating a session with a notebook and one without."""
    out = AttachSamples()
    async with client(server) as jupyter:
        live: dict[str, tuple[str, Path | None]] = {}
        for mode in ("notebook", "no notebook"):
            notebook: Path | bool = notebooks / f"{server.kind}.ipynb" if mode == "notebook" else False
            session = await Session(server=jupyter, tools=TOOLS, notebook=notebook).start()
            await session.execute("state = 'kept'\nprint(state)")
            detached = await session.detach()
            live[mode] = (detached.kernel_id, detached.notebook)
        try:
            for round_ in range(config.attaches):
                for mode in ("notebook", "no notebook") if round_ % 2 == 0 else ("no notebook", "notebook"):
                    kernel_id, notebook_path = live[mode]
                    started = time.perf_counter()
                    session = await Session.attach(kernel_id, server=jupyter, notebook=notebook_path, tools=TOOLS)
                    attached = time.perf_counter()
                    await _first_cell(session, "kept\n")
                    first = time.perf_counter()
                    await session.detach()
                    out.add(f"attach, {mode}", attached - started)
                    out.add(f"attach + first cell, {mode}", first - started)
                    out.add(f"detach, {mode}", time.perf_counter() - first)
        finally:
            for kernel_id, notebook_path in live.values():
                with contextlib.suppress(Exception):
                    session = await Session.attach(kernel_id, server=jupyter, notebook=notebook_path, tools=TOOLS)
                    await session.close()
        log(f"attach on {server.kind}: " + ", ".join(f"{k} {_ms(out.p50(k)):.0f} ms" for k in out.samples))
    return out


# -- memory -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdleMemory:
    """N idle sessions of one backend: what grew, by RSS and PSS (bytes)."""

    backend: str
    sessions: int
    host_rss: int  # this host's growth
    host_pss: int
    kernels_rss: int  # the kernels' trees (bwrap + kernel), all of them
    kernels_pss: int
    server_rss: int = 0  # the server process alone: its growth
    server_pss: int = 0
    server_before: int = 0  # the server process's RSS with no session

    def per_session(self, what: str) -> float:
        return float(getattr(self, what)) / self.sessions / MB

    @property
    def server_side_rss(self) -> float:
        """Per session, what the server's machine holds (remote) or the kernel plus this host's share (local)."""
        extra = self.server_rss if self.backend != LOCAL else self.host_rss
        return (self.kernels_rss + extra) / self.sessions / MB

    @property
    def server_side_pss(self) -> float:
        extra = self.server_pss if self.backend != LOCAL else self.host_pss
        return (self.kernels_pss + extra) / self.sessions / MB


def _host() -> tuple[int, int]:
    gc.collect()
    full = psutil.Process().memory_full_info()
    return full.rss, full.pss


def _server_tree(server: RunningServer) -> tuple[TreeMemory, psutil.Process]:
    process = psutil.Process(server.process.pid)
    return tree_memory(server.process.pid, only_python=False), process


@contextlib.asynccontextmanager
async def _idle_sessions(count: int, server: RunningServer | None) -> AsyncIterator[list[Session]]:
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {} if server is None else {"server": await stack.enter_async_context(client(server))}
        sessions = []
        for _ in range(count):
            session = await stack.enter_async_context(Session(tools=TOOLS, notebook=False, **options))
            if (await session.execute("x = 1")).status is not CellStatus.OK:
                raise RuntimeError("an idle session's first cell failed")
            sessions.append(session)
        await asyncio.sleep(1.0)  # let start-up garbage and the server's bookkeeping settle
        yield sessions


async def measure_memory(count: int, backend: str, server: RunningServer | None) -> IdleMemory:
    """``count`` idle sessions of ``backend`` held at once; growth from just before they started."""
    await asyncio.sleep(0.5)
    host_before = _host()
    if server is None:
        async with _idle_sessions(count, None) as sessions:
            host_after = _host()
            trees = [tree_memory(s._kernel.provisioner.process.pid, only_python=False)  # type: ignore[union-attr]
                     for s in sessions]
        return IdleMemory(LOCAL, count, host_after[0] - host_before[0], host_after[1] - host_before[1],
                          sum(t.rss for t in trees), sum(t.pss or 0 for t in trees))
    tree_before, process = _server_tree(server)
    alone_before = process.memory_full_info()
    async with _idle_sessions(count, server):
        host_after = _host()
        tree_after, _ = _server_tree(server)
        alone_after = process.memory_full_info()
    server_rss, server_pss = alone_after.rss - alone_before.rss, alone_after.pss - alone_before.pss
    return IdleMemory(backend, count, host_after[0] - host_before[0], host_after[1] - host_before[1],
                      tree_after.rss - tree_before.rss - server_rss,
                      (tree_after.pss or 0) - (tree_before.pss or 0) - server_pss,
                      server_rss, server_pss, alone_before.rss)


# -- rows -------------------------------------------------------------------------------------


def _headline(subject: Subject, what: str) -> float:
    """A subject's p50 cell or sync call (ms), or its gathered calls/s."""
    if what.startswith("trivial cell"):
        return _ms(median(subject.cells))
    if what.startswith("sync tool call"):
        return _ms(median(subject.sync))
    return median(subject.gathers)


def call_rows(subjects: Sequence[Subject]) -> list[Row]:
    """Cells, sync calls, gathers and CPU per call, each remote subject next to the local one."""
    local = subjects[0]
    rows: list[Row] = []
    remote = [s for s in subjects if s.name in SERVERS]
    diagnostic = [s for s in subjects if s.name in DIAGNOSES]
    for label, pct in (("p50", 50), ("p90", 90)):
        for subject in remote:
            rows.append(_row(f"trivial cell {label}: {subject.name}", _ms(percentile(subject.cells, pct)), "ms",
                             baseline=_ms(percentile(local.cells, pct)), baseline_name=f"{label}, local session",
                             note=f"n={len(subject.cells)}; await session.execute('1'), timed on the host"))
    for label, pct in (("p50", 50), ("p90", 90)):
        for subject in remote:
            rows.append(_row(f"sync tool call {label}: {subject.name}", _ms(percentile(subject.sync, pct)), "ms",
                             baseline=_ms(percentile(local.sync, pct)), baseline_name=f"{label}, local session",
                             note=f"n={len(subject.sync)}; tools.add(i) in a loop inside a cell, each call timed "
                                  "in the kernel"))
    for subject in remote:
        rows.append(_row(f"sync tool calls in a loop: {subject.name}", median(subject.sync_loops), "calls/s",
                         baseline=median(local.sync_loops), baseline_name="local session",
                         note=f"median of {len(subject.sync_loops)} loops of "
                              f"{subject.cpu.calls // len(subject.sync_loops)} calls, each loop one cell"))
    for subject in remote:
        rows.append(_row(f"gathered async tool calls: {subject.name}", median(subject.gathers), "calls/s",
                         baseline=median(local.gathers), baseline_name="local session",
                         note=f"median of {len(subject.gathers)} (min {min(subject.gathers):,.0f}); asyncio.gather "
                              "of tools.add_async.aio(i), async host tool"))
    rows += cpu_rows(local, remote)
    shipped = next(s for s in subjects if s.name == JUPYTER)
    for subject in diagnostic:
        for what, unit in (("trivial cell p50", "ms"), ("sync tool call p50", "ms"),
                           ("gathered async tool calls", "calls/s")):
            value = _headline(subject, what)
            rows.append(_row(f"diagnostic, {what}: {subject.name}", value, unit, baseline=_headline(shipped, what),
                             baseline_name="stock jupyter-server session",
                             note=f"{value / _headline(local, what):.2f}x local; {DIAGNOSES[subject.name]}"))
    return rows


def cpu_rows(local: Subject, remote: Sequence[Subject]) -> list[Row]:
    """CPU per synchronous call by process, against the wall time per call: which hop costs."""
    rows: list[Row] = []
    for subject in [local, *remote]:
        cpu = subject.cpu
        per = {side: getattr(cpu, side) / cpu.calls * 1e6 for side in ("wall", "host", "server", "kernel")}
        busy = (cpu.host + cpu.server + cpu.kernel) / cpu.wall
        note = (f"{cpu.calls} calls; per call: host {per['host']:.0f} µs, server process {per['server']:.0f} µs, "
                f"kernel {per['kernel']:.0f} µs; all three busy {busy:.0%} of wall")
        if subject.server is not None:
            note += " (kernel: every kernel on the server, the others idle)"
        rows.append(_row(f"CPU per sync call, host + server + kernel: {subject.name}",
                         per["host"] + per["server"] + per["kernel"], "µs", baseline=per["wall"],
                         baseline_name="wall per call (whole cell)", note=note))
    return rows


def start_rows(starts: dict[str, AttachSamples]) -> list[Row]:
    local = starts[LOCAL]
    return [_row(f"new session + first cell p50: {kind}", _ms(starts[kind].p50("start + first cell")), "ms",
                 baseline=_ms(local.p50("start + first cell")), baseline_name="p50, local session",
                 note=f"n={len(starts[kind].samples['start'])}; start alone {_ms(starts[kind].p50('start')):.0f} ms "
                      f"vs {_ms(local.p50('start')):.0f} ms local; Session(tools=..., server=...).start(), then "
                      "one cell")
            for kind in SERVERS]


def attach_rows(server: RunningServer, samples: AttachSamples, start: AttachSamples) -> list[Row]:
    rows: list[Row] = []
    for mode in ("no notebook", "notebook"):
        attach, first = samples.p50(f"attach, {mode}"), samples.p50(f"attach + first cell, {mode}")
        rows.append(_row(f"attach + first cell p50, {mode}: {server.kind}", _ms(first), "ms",
                         baseline=_ms(start.p50("start + first cell")),
                         baseline_name="p50, new session + first cell on the server",
                         note=f"n={len(samples.samples[f'attach, {mode}'])}; Session.attach itself {_ms(attach):.0f} "
                              f"ms; detach {_ms(samples.p50(f'detach, {mode}')):.0f} ms"))
    return rows


def memory_rows(local: IdleMemory, remote: IdleMemory, kind: str) -> list[Row]:
    n = remote.sessions
    return [_row(
        f"{n} idle session{'s' if n > 1 else ''}, memory per session on the server (RSS): {kind}",
        remote.server_side_rss, "MB", baseline=local.server_side_rss, baseline_name="local: sandbox tree + host growth",
        note=f"remote: kernel trees {remote.per_session('kernels_rss'):.1f} + server process growth "
             f"{remote.per_session('server_rss'):.2f} MB (the server: {remote.server_before / MB:.0f} MB with no "
             f"session), this host's growth {remote.per_session('host_rss'):.2f} MB; local: sandbox "
             f"{local.per_session('kernels_rss'):.1f} + host growth {local.per_session('host_rss'):.2f} MB. "
             f"PSS: {remote.server_side_pss:.1f} vs {local.server_side_pss:.1f} MB")]


# -- the run ----------------------------------------------------------------------------------


async def measure(config: Config, base: Path) -> list[Row]:
    kinds: dict[str, ServerKind] = {JUPYTER: "jupyter-server", GATEWAY: "kernel-gateway", NODELAY: "jupyter-server"}
    rows: list[Row] = []
    with _servers(base, kinds) as servers:
        subjects = await measure_calls(config, servers)
        rows += call_rows(subjects)
        servers.pop(NODELAY).stop()
        notebooks = base / "notebooks"
        notebooks.mkdir()
        starts = await measure_starts(config, servers)
        rows += start_rows(starts)
        for kind in SERVERS:
            rows += attach_rows(servers[kind], await measure_attach(config, servers[kind], notebooks), starts[kind])
        for count in config.idle_sessions:
            local = await measure_memory(count, LOCAL, None)
            for kind in SERVERS:
                remote = await measure_memory(count, kind, servers[kind])
                log(f"memory, {count} idle: {kind} {remote.server_side_rss:.1f} MB/session vs local "
                    f"{local.server_side_rss:.1f}")
                rows += memory_rows(local, remote, kind)
    return rows


def run(quick: bool = False) -> list[Row]:
    """Run every remote-kernel benchmark and return its rows (see _benchlib.Row)."""
    config = Config.for_mode(quick)
    log(f"config: {config}")
    with tempfile.TemporaryDirectory(prefix="kernel-agent-bench-remote-") as tmp:
        return asyncio.run(measure(config, Path(tmp)))


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__.splitlines()[0], "fewer samples (60 cells, 2 x 200 calls, 1 and 3 idle sessions)", argv)


if __name__ == "__main__":
    main()
