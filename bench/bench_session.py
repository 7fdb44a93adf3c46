"""Session benchmarks: cold start, trivial-cell round trip and idle memory.

Each figure is printed next to the stock Jupyter path measured in the same
run (plain jupyter_client + the stock ``python3`` ipykernel kernelspec, tcp,
no sandbox), because this shared VM is several times slower than the
machine the issue's targets were set on: the ratio to stock is the figure
that carries over. Three subjects:

* ``kernel-agent (bwrap)``: the default ``Session()``;
* ``kernel-agent (mode=none)``: same code path without bubblewrap, which
  isolates what the sandbox itself costs;
* ``stock``: AsyncKernelManager/KernelManager + a jupyter_client client.

Stock cells are timed with the fastest *correct* stock client: a
BlockingKernelClient that waits for the shell reply to its own msg_id and
for that request's ``idle`` status on iopub (earlier return would lose
output). ``execute_interactive`` is reported as a second stock baseline.

Samples are interleaved across subjects (round-robin starts, blocks of
cells) so a noisy neighbour on the VM slows every subject alike instead of
biasing one of them. Run: ``python bench/bench_session.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any, Protocol

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_agent import CellStatus, SandboxPolicy, Session, UnconfinedWarning  # noqa: E402

from _benchlib import bench_main, MB, Row, Target, TreeMemory, make_row, median, percentile, tree_memory  # noqa: E402

BENCHMARK = "session"

# Targets from the issue, with the stock figure each was set against on the
# reference machine (so a ratio target can be derived for slower machines).
COLD_START_TARGET = Target(0.5, "s", stock_reference=0.6)
CELL_TARGET = Target(2.0, "ms", stock_reference=4.2)
IDLE_RSS_TARGET = Target(60.0, "MB")

KA_BWRAP = "kernel-agent (bwrap)"
KA_NONE = "kernel-agent (mode=none)"
STOCK = "stock"
STOCK_MIN = "stock (minimal ready handshake)"
STOCK_INTERACTIVE = "stock execute_interactive"
AGENT_SUBJECTS = (KA_BWRAP, KA_NONE)
POLICIES = {KA_BWRAP: SandboxPolicy(), KA_NONE: SandboxPolicy(mode="none")}

CELL_CODES = ("1", "pass")
REPLY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Config:
    """How many samples to take; ``--quick`` trades precision for time."""

    cold_runs: int
    cells: int
    warmup_cells: int
    blocks: int

    @classmethod
    def for_mode(cls, quick: bool) -> Config:
        return cls(cold_runs=3, cells=100, warmup_cells=20, blocks=4) if quick else cls(
            cold_runs=10, cells=300, warmup_cells=50, blocks=10)


@dataclass(frozen=True)
class StartSample:
    """One cold start: time to ready, the first cell, memory when idle, shutdown."""

    start: float
    first_cell: float
    close: float
    memory: TreeMemory


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays the result table."""
    print(f"[bench_session] {message}", file=sys.stderr, flush=True)


# -- kernel-agent -------------------------------------------------------------


def _new_session(subject: str) -> Session:
    return Session(policy=POLICIES[subject], default_timeout=REPLY_TIMEOUT)


async def _start_session(session: Session) -> None:
    """Start, silencing only the UnconfinedWarning that mode=none is documented to emit."""
    with warnings.catch_warnings():
        if session.policy.mode.value == "none":
            warnings.simplefilter("ignore", UnconfinedWarning)
        await session.start()


def _check_cell(ok: bool, what: str) -> None:
    """A benchmark of a failing cell measures nothing: stop loudly instead."""
    if not ok:
        raise RuntimeError(f"benchmark cell failed: {what}")


async def agent_cold_once(subject: str) -> StartSample:
    """``await Session().start()`` until the first cell can run, then one cell, memory, close."""
    session = _new_session(subject)
    started = time.perf_counter()
    await _start_session(session)
    ready = time.perf_counter()
    result = await session.execute("1")
    first = time.perf_counter()
    _check_cell(result.status is CellStatus.OK, f"{subject}: {result.status}")
    assert session._kernel is not None and session._kernel.provisioner.process is not None
    memory = tree_memory(session._kernel.provisioner.process.pid, only_python=True)
    closing = time.perf_counter()
    await session.close()
    return StartSample(ready - started, first - ready, time.perf_counter() - closing, memory)


class AgentCells:
    """A live kernel-agent session whose cells are timed from inside the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, subject: str) -> None:
        self.name = subject
        self._loop = loop
        self._session = _new_session(subject)
        loop.run_until_complete(_start_session(self._session))

    def batch(self, code: str, count: int) -> list[float]:
        return self._loop.run_until_complete(self._timed(code, count))

    async def _timed(self, code: str, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            result = await self._session.execute(code)
            samples.append(time.perf_counter() - started)
            _check_cell(result.status is CellStatus.OK, f"{self.name}: {result.status}")
        return samples

    def close(self) -> None:
        self._loop.run_until_complete(self._session.close())


# -- stock jupyter_client + ipykernel -----------------------------------------------


def _is_idle_for(message: dict[str, Any], msg_id: str) -> bool:
    return bool(message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "status"
                and message["content"].get("execution_state") == "idle")


def _stock_pid(manager: KernelManager) -> int:
    """The stock kernel's pid (the LocalProvisioner runs the kernel itself, no wrapper)."""
    provisioner = manager.provisioner
    if not isinstance(provisioner, LocalProvisioner) or provisioner.process is None:
        raise RuntimeError("the stock kernel was not launched by jupyter_client's LocalProvisioner")
    return int(provisioner.process.pid)


def stock_roundtrip(client: BlockingKernelClient, code: str) -> dict[str, Any]:
    """What a correct stock client must wait for: its shell reply, then its idle on iopub."""
    msg_id = client.execute(code, allow_stdin=False, stop_on_error=False)
    reply = client.get_shell_msg(timeout=REPLY_TIMEOUT)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=REPLY_TIMEOUT)
    while not _is_idle_for(client.get_iopub_msg(timeout=REPLY_TIMEOUT), msg_id):
        pass
    return reply


async def stock_roundtrip_async(client: AsyncKernelClient, code: str) -> dict[str, Any]:
    """The same wait as :func:`stock_roundtrip`, for the async client used at cold start."""
    msg_id = client.execute(code, allow_stdin=False, stop_on_error=False)
    reply = await client.get_shell_msg(timeout=REPLY_TIMEOUT)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = await client.get_shell_msg(timeout=REPLY_TIMEOUT)
    while not _is_idle_for(await client.get_iopub_msg(timeout=REPLY_TIMEOUT), msg_id):
        pass
    return reply


async def stock_minimal_ready(client: AsyncKernelClient) -> None:
    """kernel-agent's own readiness rule with the stock client: a kernel_info reply, then its idle on iopub.

    ``wait_for_ready`` ends with a 0.2 s iopub flush that must time out, so
    it costs at least 0.2 s more than needed; this variant shows how much of
    the stock start-up is that flush rather than the kernel.
    """
    sent: set[str] = set()
    while True:
        sent.add(client.kernel_info())
        try:
            reply = await client.get_shell_msg(timeout=0.2)
            if reply["parent_header"].get("msg_id") not in sent:
                continue
            while True:
                message = await client.get_iopub_msg(timeout=0.2)
                if any(_is_idle_for(message, msg_id) for msg_id in sent):
                    return
        except Empty:
            continue


async def _stock_wait_for_ready(client: AsyncKernelClient) -> None:
    await client.wait_for_ready(timeout=REPLY_TIMEOUT)


async def stock_cold_once(ready_rule: Callable[[AsyncKernelClient], Awaitable[None]]) -> StartSample:
    """start_kernel + a ready handshake, one cell, memory, shutdown.

    The stock kernel's stderr (a warning about unencrypted tcp) goes to
    /dev/null, as kernel-agent sends its kernel's output to a log file.
    """
    started = time.perf_counter()
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = manager.client()
    client.start_channels()
    await ready_rule(client)
    ready = time.perf_counter()
    reply = await stock_roundtrip_async(client, "1")
    first = time.perf_counter()
    _check_cell(reply["content"]["status"] == "ok", f"stock: {reply['content']}")
    memory = tree_memory(_stock_pid(manager), only_python=True)
    closing = time.perf_counter()
    client.stop_channels()
    await manager.shutdown_kernel(now=True)
    return StartSample(ready - started, first - ready, time.perf_counter() - closing, memory)


class StockKernel:
    """One stock kernel and a BlockingKernelClient, shared by both stock cell runners."""

    def __init__(self) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client: BlockingKernelClient = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=REPLY_TIMEOUT)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


class StockCells:
    """Stock cells timed with a caller-supplied round trip (manual wait or execute_interactive)."""

    def __init__(self, name: str, kernel: StockKernel,
                 roundtrip: Callable[[BlockingKernelClient, str], dict[str, Any]]) -> None:
        self.name = name
        self._kernel = kernel
        self._roundtrip = roundtrip

    def batch(self, code: str, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            reply = self._roundtrip(self._kernel.client, code)
            samples.append(time.perf_counter() - started)
            _check_cell(reply["content"]["status"] == "ok", f"{self.name}: {reply['content']}")
        return samples

    def close(self) -> None:
        """The shared StockKernel is closed by its owner."""


def interactive_roundtrip(client: BlockingKernelClient, code: str) -> dict[str, Any]:
    """jupyter_client's own helper; the no-op hook keeps results off our stdout."""
    reply: dict[str, Any] = client.execute_interactive(
        code, timeout=REPLY_TIMEOUT, allow_stdin=False, stop_on_error=False, output_hook=lambda msg: None)
    return reply


class CellRunner(Protocol):
    name: str

    def batch(self, code: str, count: int) -> list[float]: ...

    def close(self) -> None: ...


# -- measurement --------------------------------------------------------------------


def _cold_once(loop: asyncio.AbstractEventLoop, subject: str) -> StartSample:
    if subject == STOCK:
        return loop.run_until_complete(stock_cold_once(_stock_wait_for_ready))
    if subject == STOCK_MIN:
        return loop.run_until_complete(stock_cold_once(stock_minimal_ready))
    return loop.run_until_complete(agent_cold_once(subject))


def measure_cold(
    loop: asyncio.AbstractEventLoop, runs: int
) -> tuple[dict[str, StartSample], dict[str, list[StartSample]]]:
    """Round-robin cold starts; the first start of each subject is kept apart.

    The first start in a host process also pays one-time host work (lazy
    imports, entry-point scans, locating bwrap), so it is reported on its own
    row rather than mixed into the percentiles.
    """
    subjects = (*AGENT_SUBJECTS, STOCK, STOCK_MIN)
    first = {subject: _cold_once(loop, subject) for subject in subjects}
    samples: dict[str, list[StartSample]] = {subject: [] for subject in subjects}
    for run in range(runs):
        for subject in subjects:
            samples[subject].append(_cold_once(loop, subject))
        log(f"cold start {run + 1}/{runs}: " + ", ".join(
            f"{s} {samples[s][-1].start:.3f} s" for s in subjects))
    return first, samples


def measure_cells(runners: Sequence[CellRunner], config: Config) -> dict[tuple[str, str], list[float]]:
    """Warm up every runner, then time cells in interleaved blocks."""
    for runner in runners:
        for code in CELL_CODES:
            runner.batch(code, config.warmup_cells)
    per_block = math.ceil(config.cells / config.blocks)
    samples: dict[tuple[str, str], list[float]] = {(r.name, c): [] for r in runners for c in CELL_CODES}
    for block in range(config.blocks):
        for code in CELL_CODES:
            for runner in runners:
                samples[(runner.name, code)] += runner.batch(code, per_block)
        log(f"cells block {block + 1}/{config.blocks}")
    return {key: values[: config.cells] for key, values in samples.items()}


def run_cells(loop: asyncio.AbstractEventLoop, config: Config) -> dict[tuple[str, str], list[float]]:
    """Start one long-lived kernel per subject and time trivial cells on all of them."""
    stock = StockKernel()
    runners: list[CellRunner] = [AgentCells(loop, subject) for subject in AGENT_SUBJECTS]
    runners += [StockCells(STOCK, stock, stock_roundtrip), StockCells(STOCK_INTERACTIVE, stock, interactive_roundtrip)]
    try:
        return measure_cells(runners, config)
    finally:
        for runner in runners:
            runner.close()
        stock.close()


# -- rows ---------------------------------------------------------------------------


def _row(name: str, value: float, unit: str, **kwargs: Any) -> Row:
    return make_row(BENCHMARK, name, value, unit, **kwargs)


def cold_rows(first: dict[str, StartSample], samples: dict[str, list[StartSample]]) -> list[Row]:
    """Start percentiles against stock's, plus first-cell, close and first-start-in-process rows."""
    rows = start_percentile_rows(samples)
    n = len(samples[STOCK])
    for name, field in (("first cell after start p50", "first_cell"), ("close/shutdown p50", "close")):
        stock_value = median(getattr(s, field) for s in samples[STOCK]) * 1e3
        for subject in (*AGENT_SUBJECTS, STOCK):
            value = median(getattr(s, field) for s in samples[subject]) * 1e3
            rows.append(_row(f"{name}: {subject}", value, "ms", **_vs_stock(subject, stock_value, "p50"),
                             note=f"n={n}"))
    for subject in (*AGENT_SUBJECTS, STOCK):
        rows.append(_row(f"first start in a fresh host process: {subject}", first[subject].start, "s",
                         **_vs_stock(subject, first[STOCK].start, "first"),
                         note="n=1; includes one-time host work and cold caches"))
    return rows


def start_percentile_rows(samples: dict[str, list[StartSample]]) -> list[Row]:
    """Cold start p50/p90: kernel-agent against stock wait_for_ready, and against the minimal handshake."""
    rows: list[Row] = []
    n = len(samples[STOCK])
    for label, pct, target in (("p50", 50, COLD_START_TARGET), ("p90", 90, None)):
        value_of = {subject: percentile([s.start for s in runs], pct) for subject, runs in samples.items()}
        for subject in AGENT_SUBJECTS:
            rows.append(_row(f"cold start {label}: {subject}", value_of[subject], "s", baseline=value_of[STOCK],
                             baseline_name=f"{label}, wait_for_ready", target=target,
                             note=f"n={n}; {value_of[subject] / value_of[STOCK_MIN]:.2f}x {STOCK_MIN}"))
        rows.append(_row(f"cold start {label}: {STOCK}", value_of[STOCK], "s",
                         note=f"n={n}; start_kernel + wait_for_ready (ends with a 0.2 s iopub flush)"))
        rows.append(_row(f"cold start {label}: {STOCK_MIN}", value_of[STOCK_MIN], "s", baseline=value_of[STOCK],
                         baseline_name=f"{label}, wait_for_ready",
                         note=f"n={n}; start_kernel + kernel_info reply + its iopub idle"))
    return rows


def _vs_stock(subject: str, stock_value: float, label: str) -> dict[str, Any]:
    """Baseline arguments for a row: none for the stock row itself."""
    return {} if subject == STOCK else {"baseline": stock_value, "baseline_name": label}


def cell_rows(samples: dict[tuple[str, str], list[float]]) -> list[Row]:
    """p50/p99 per subject and code, against the manual stock client."""
    rows: list[Row] = []
    for code in CELL_CODES:
        for label, pct, target in (("p50", 50, CELL_TARGET), ("p99", 99, None)):
            stock_value = percentile(samples[(STOCK, code)], pct) * 1e3
            interactive = percentile(samples[(STOCK_INTERACTIVE, code)], pct) * 1e3
            for subject in AGENT_SUBJECTS:
                value = percentile(samples[(subject, code)], pct) * 1e3
                n = len(samples[(subject, code)])
                rows.append(_row(f"cell {code!r} {label}: {subject}", value, "ms", baseline=stock_value,
                                 baseline_name=f"{label}, BlockingKernelClient", target=target,
                                 note=f"n={n}; {value / interactive:.2f}x execute_interactive"))
            rows.append(_row(f"cell {code!r} {label}: {STOCK} (BlockingKernelClient)", stock_value, "ms",
                             note="reply + idle for its msg_id"))
            rows.append(_row(f"cell {code!r} {label}: {STOCK_INTERACTIVE}", interactive, "ms",
                             baseline=stock_value, baseline_name=f"{label}, BlockingKernelClient",
                             note="second stock baseline"))
    return rows


def memory_rows(samples: dict[str, list[StartSample]]) -> list[Row]:
    """Idle memory of the kernel's Python process(es) after start + one cell (median over cold runs)."""
    rows: list[Row] = []
    for label, target in (("RSS", IDLE_RSS_TARGET), ("USS", None), ("PSS", None)):
        values = {subject: [getattr(s.memory, label.lower()) for s in runs] for subject, runs in samples.items()}
        if any(v is None for vs in values.values() for v in vs):
            continue  # the platform does not report this figure
        stock_value = median(values[STOCK]) / MB
        for subject in AGENT_SUBJECTS:
            rows.append(_row(f"idle kernel {label}: {subject}", median(values[subject]) / MB, "MB",
                             baseline=stock_value, baseline_name="python kernel", target=target,
                             note="python process(es) of the sandbox tree; median of cold runs"))
        rows.append(_row(f"idle kernel {label}: {STOCK}", stock_value, "MB", note="the ipykernel process"))
    plumbing = median(s.memory.other_rss for s in samples[KA_BWRAP]) / MB
    rows.append(_row(f"sandbox plumbing RSS (bwrap processes): {KA_BWRAP}", plumbing, "MB",
                     note="not counted in the RSS row above"))
    return rows


def run(quick: bool = False) -> list[Row]:
    """Run every session benchmark and return its rows (see _benchlib.Row)."""
    config = Config.for_mode(quick)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # jupyter_client's sync wrappers run on the current loop
    try:
        log(f"config: {config}")
        first, cold = measure_cold(loop, config.cold_runs)
        cells = run_cells(loop, config)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
    return cold_rows(first, cold) + cell_rows(cells) + memory_rows(cold)


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__.splitlines()[0], "fewer samples (3 cold starts, 100 cells)", argv)


if __name__ == "__main__":
    main()
