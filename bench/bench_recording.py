"""Recording benchmarks: per-cell recording cost at 10 to 10,000 cells, its cost in a session, replay speed.

Recording a cell hashes it into the chain, appends it to the journal
(fsync) and appends it to the notebook in place (the notebook is laid out
cells-first so only the small metadata tail is rewritten). The issue asks
that recording the 10,000th cell cost about what the 10th did. Three parts,
each next to a baseline measured in the same run:

* **Recorder, no kernel.** ``Recorder.record_code`` is timed for cells
  1..N of one notebook, built from realistic ``CellResult`` objects (three
  lines of code, a ~200-byte stream output, an ``execute_result``, one or
  two ``ToolCall`` records). The header is the one a real ``Session`` with
  one tool writes. The per-cell p50 is taken over a window of cells around
  cell 10, 1,000 and 10,000 (``--quick``: 2,000), and split into journal
  append (write + fsync), notebook append, and the rest (hashing,
  serialising the metadata). Baseline: the naive recorder, which keeps an
  nbformat notebook and rewrites it whole with ``nbformat.write`` after
  every cell (O(cells) per cell, so only a few samples at the largest
  count; it is not even given a journal or a hash to compute).
  ``Journal.append`` is also timed with ``sync=True`` against
  ``sync=False`` to give the fsync's share.
* **Session.** ``await session.execute("1")`` p50/p99 with a recorded
  notebook against ``notebook=False``, two live sandboxed sessions timed in
  interleaved blocks.
* **Replay.** A 200-cell session (compute, print, call a tool) is recorded;
  then ``kernel_agent.verify.replay.replay(notebook)`` is timed if that API exists
  when the benchmark runs, otherwise the recorded code cells are re-executed
  in a fresh session (labelled so). Cells per second are compared with the
  original recording's.

Timings are printed, never asserted. Run: ``python bench/bench_recording.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_agent import CellResult, CellStatus, Session, UnconfinedWarning  # noqa: E402
from kernel_agent.record.journal import Journal, journal_path_for, read_journal  # noqa: E402
from kernel_agent.record.recorder import Recorder, load_notebook_json  # noqa: E402
from kernel_agent.tools.calls import CallStatus, ToolCall  # noqa: E402

from _benchlib import bench_main, MB, Row, make_row, median, percentile  # noqa: E402

BENCHMARK = "recording"
REPLY_TIMEOUT = 120.0
#: "About what the 10th did": a p50 growth within this factor is reported as flat.
FLAT_WITHIN = 1.5


def add(a: int, b: int = 1) -> int:
    """Add two integers (the tool the recorded cells call)."""
    return a + b


@dataclass(frozen=True)
class Config:
    """How many samples to take; ``--quick`` trades precision (and the 10,000-cell point) for time."""

    cells: int  # cells recorded into one notebook by the Recorder sweep
    points: tuple[int, ...]  # cell numbers the per-cell cost is reported around
    window: int  # cells per window around each point (the first point uses 20)
    small_repeats: int  # extra fresh notebooks recorded for the first point's window
    rewrite_samples: tuple[int, ...]  # nbformat.write samples per point
    journal_samples: int
    session_cells: int
    session_warmup: int
    session_blocks: int
    replay_cells: int

    @classmethod
    def for_mode(cls, quick: bool) -> Config:
        if quick:
            return cls(cells=2_000, points=(10, 1_000, 2_000), window=40, small_repeats=2,
                       rewrite_samples=(20, 3, 1), journal_samples=100, session_cells=60, session_warmup=10,
                       session_blocks=3, replay_cells=100)
        return cls(cells=10_000, points=(10, 1_000, 10_000), window=50, small_repeats=4,
                   rewrite_samples=(20, 8, 2), journal_samples=300, session_cells=300, session_warmup=30,
                   session_blocks=10, replay_cells=200)


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays the result table."""
    print(f"[bench_recording] {message}", file=sys.stderr, flush=True)


def _row(name: str, value: float, unit: str, **kwargs: Any) -> Row:
    return make_row(BENCHMARK, name, value, unit, **kwargs)


def _ms(seconds: float) -> float:
    return seconds * 1e3


# -- part 1: the Recorder without a kernel -------------------------------------------------


def new_recorder(notebook: Path) -> Recorder:
    """A Recorder with the header a real Session (sandbox policy, one tool) writes, without a kernel.

    Only the kernel launch is skipped: the tool registry and SDK are built
    and ``_start_recording`` assembles the header as ``start()`` would.
    """
    session = Session(notebook.parent / "workspace", tools=[add], notebook=notebook)
    asyncio.run(session._tools.prepare())
    session.started_at = time.time()
    session._start_recording()
    assert session.recorder is not None
    return session.recorder


def cell_result(number: int) -> CellResult:
    """What a typical agent cell gives the recorder: code, ~200 bytes printed, a value, 1-2 tool calls."""
    now = time.time()
    calls = [ToolCall(id=f"call-{number}-{k}", tool="add", arguments={"a": number, "b": k}, status=CallStatus.OK,
                      result=number + k, started_at=now - 0.003, ended_at=now - 0.002, cell=number)
             for k in range(1 + number % 2)]
    line = f"cell {number}: rows={number * 7} mean={number / 3:.6f} "
    text = (line * (200 // len(line) + 1))[:199] + "\n"
    return CellResult(
        code=f"rows = load({number})\nprint(summary(rows))\ntools.add({number}, 1)",
        status=CellStatus.OK, execution_count=number, duration=0.004, tool_calls=calls,
        outputs=[{"output_type": "stream", "name": "stdout", "text": text},
                 {"output_type": "execute_result", "data": {"text/plain": str(number + 1)}, "metadata": {},
                  "execution_count": number}],
    )


def _timed_method(owner: Any, name: str, bucket: list[float]) -> None:
    """Shadow ``owner.name`` with a wrapper that appends each call's duration to ``bucket``."""
    method: Callable[..., Any] = getattr(owner, name)
    clock = time.perf_counter

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return method(*args, **kwargs)
        finally:
            bucket.append(clock() - started)

    setattr(owner, name, wrapper)


@dataclass
class Sweep:
    """Per-cell timings of one recorder, indexed by cell number - 1."""

    total: list[float] = field(default_factory=list)
    journal: list[float] = field(default_factory=list)
    notebook: list[float] = field(default_factory=list)

    def record(self, recorder: Recorder, cells: int, progress: bool = False) -> None:
        _timed_method(recorder.journal, "append", self.journal)
        _timed_method(recorder.file, "append", self.notebook)
        clock = time.perf_counter
        for number in range(1, cells + 1):
            result = cell_result(number)
            started = clock()
            recorder.record_code(result)
            self.total.append(clock() - started)
            if progress and number % 2_000 == 0:
                log(f"recorder: {number} cells, last 50 p50 {_ms(median(self.total[-50:])):.3f} ms")

    def window(self, first: int, last: int) -> Sweep:
        """Cells first..last (1-based, inclusive)."""
        cut = slice(first - 1, last)
        return Sweep(self.total[cut], self.journal[cut], self.notebook[cut])

    def extend(self, other: Sweep) -> None:
        self.total += other.total
        self.journal += other.journal
        self.notebook += other.notebook

    def breakdown(self) -> str:
        rest = [t - j - n for t, j, n in zip(self.total, self.journal, self.notebook, strict=True)]
        return (f"journal append+fsync {_ms(median(self.journal)):.3f}, notebook append "
                f"{_ms(median(self.notebook)):.3f}, hash+metadata+rest {_ms(median(rest)):.3f} ms (p50s)")


def window_bounds(point: int, width: int, cells: int) -> tuple[int, int]:
    """A window of ``width`` cells centred on ``point``, shifted to fit in 1..cells."""
    first = max(1, point - width // 2 + 1)
    last = min(cells, first + width - 1)
    return max(1, last - width + 1), last


@dataclass
class RecorderResults:
    windows: dict[int, tuple[tuple[int, int], Sweep]] = field(default_factory=dict)
    rewrite: dict[int, list[float]] = field(default_factory=dict)
    rewrite_cells: dict[int, list[int]] = field(default_factory=dict)
    journal_sync: list[float] = field(default_factory=list)
    journal_nosync: list[float] = field(default_factory=list)
    notebook_bytes: int = 0
    journal_bytes: int = 0
    held_bytes: int = 0


def measure_rewrite_baseline(cells: list[dict[str, Any]], offset: int, metadata: dict[str, Any], point: int,
                             samples: int, path: Path) -> tuple[list[float], list[int]]:
    """The naive recorder: keep an nbformat notebook, append the cell, ``nbformat.write`` it whole.

    ``cells`` are all the recorded cells, the first ``offset`` of them
    before code cell 1 (the setup cell). The notebook before the first
    sampled code cell is built untimed; each sample then appends the next
    cell and rewrites the file (validation included, as ``nbformat.write``
    does by default).
    """
    first = max(1, min(point - samples // 2 + 1, len(cells) - offset - samples + 1))
    notebook = nbformat.from_dict({"cells": cells[: offset + first - 1], "metadata": metadata,
                                   "nbformat": 4, "nbformat_minor": 5})
    timings, numbers = [], []
    for number in range(first, first + samples):
        started = time.perf_counter()
        notebook.cells.append(nbformat.from_dict(cells[offset + number - 1]))
        nbformat.write(notebook, path)
        timings.append(time.perf_counter() - started)
        numbers.append(number)
    return timings, numbers


def measure_journal(directory: Path, event: dict[str, Any], samples: int) -> tuple[list[float], list[float]]:
    """``Journal.append`` of one cell event with and without its fsync, alternating."""
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    journal = Journal(directory / "fsync.journal.jsonl", dir_fd=directory_fd)
    synced, unsynced = [], []
    clock = time.perf_counter
    try:
        for _ in range(samples):
            for sync, bucket in ((True, synced), (False, unsynced)):
                started = clock()
                journal.append(event, sync=sync)
                bucket.append(clock() - started)
    finally:
        journal.close()
        os.close(directory_fd)
    return synced, unsynced


def measure_recorder(config: Config) -> RecorderResults:
    out = RecorderResults()
    with tempfile.TemporaryDirectory(prefix="kernel-agent-bench-rec-") as tmp:
        root = Path(tmp)
        # Warm-up: first calls pay imports and pydantic's serializer set-up.
        warm = root / "warm"
        warm.mkdir()
        Sweep().record(new_recorder(warm / "warm.ipynb"), 30)

        first_point = config.points[0]
        small = Sweep()
        for repeat in range(config.small_repeats):
            directory = root / f"small{repeat}"
            directory.mkdir()
            small.extend(_small_sweep(directory, 20))

        main = root / "main"
        main.mkdir()
        notebook = main / "session.ipynb"
        recorder = new_recorder(notebook)
        sweep = Sweep()
        started = time.perf_counter()
        sweep.record(recorder, config.cells, progress=True)
        log(f"recorder: {config.cells} cells in {time.perf_counter() - started:.1f} s")
        out.held_bytes = sum(len(cell) for cell in getattr(recorder.file, "_cells", []))
        metadata = recorder.metadata()
        recorder.close({"cells": config.cells})
        out.notebook_bytes = notebook.stat().st_size
        out.journal_bytes = journal_path_for(notebook).stat().st_size

        for point in config.points:
            width = 20 if point == first_point else config.window
            bounds = window_bounds(point, width, config.cells)
            window = sweep.window(*bounds)
            if point == first_point:
                window.extend(small)
            out.windows[point] = (bounds, window)

        # The baseline re-reads the recorded cells from the journal (holding 10,000 cell
        # dicts during the sweep would slow the garbage collector the sweep is timed with).
        cells = [e["cell"] for e in read_journal(journal_path_for(notebook)) if e.get("event") == "cell"]
        kinds = [cell["metadata"]["kernel_agent"]["kind"] for cell in cells]
        offset = kinds.index("code")  # cells recorded before code cell 1 (the setup cell)
        if len(cells) - offset != config.cells:
            raise RuntimeError(f"expected {config.cells} code cells after {offset}, the journal has {len(cells)} cells")
        # The fsync test runs before the rewrite baseline: on ext4 (data=ordered) an fsync
        # also flushes other files' dirty data, and the baseline leaves megabytes of it.
        event = {"event": "cell", "cell": cells[offset + config.points[1] - 1]}
        out.journal_sync, out.journal_nosync = measure_journal(main, event, config.journal_samples)
        for point, samples in zip(config.points, config.rewrite_samples, strict=True):
            started = time.perf_counter()
            out.rewrite[point], out.rewrite_cells[point] = measure_rewrite_baseline(
                cells, offset, metadata, point, samples, main / "rewrite.ipynb")
            log(f"nbformat.write rewrite at cell {point}: p50 {_ms(median(out.rewrite[point])):.1f} ms "
                f"({samples} samples, {time.perf_counter() - started:.1f} s)")
    return out


def _small_sweep(directory: Path, cells: int) -> Sweep:
    sweep = Sweep()
    sweep.record(new_recorder(directory / "s.ipynb"), cells)
    return sweep


def recorder_rows(r: RecorderResults) -> list[Row]:
    rows: list[Row] = []
    points = list(r.windows)
    for point in points:
        (first, last), window = r.windows[point]
        value = _ms(median(window.total))
        rewrite = _ms(median(r.rewrite[point]))
        rewrite_span = f"{r.rewrite_cells[point][0]:,}-{r.rewrite_cells[point][-1]:,}"
        rows.append(_row(
            f"Recorder.record_code per cell p50, around cell {point:,}", value, "ms",
            baseline=rewrite, baseline_name=f"nbformat.write whole notebook, n={len(r.rewrite[point])}",
            note=f"n={len(window.total)} (cells {first:,}-{last:,}"
                 + (", over several fresh notebooks" if point == points[0] else "")
                 + f"); p99 {_ms(percentile(window.total, 99)):.3f} ms; {window.breakdown()}; "
                   f"baseline cells {rewrite_span}"))
    first_point, last_point = points[0], points[-1]
    base = median(r.windows[first_point][1].total)
    growth = median(r.windows[last_point][1].total) / base
    verdict = "flat" if growth <= FLAT_WITHIN else "NOT flat"
    rows.append(_row(
        f"flat cost: record_code p50 at cell {last_point:,} vs cell {first_point}",
        _ms(median(r.windows[last_point][1].total)), "ms", baseline=_ms(base),
        baseline_name=f"p50 around cell {first_point}",
        note=f"{verdict} (requirement: the {last_point:,}th cell costs about what the {first_point}th did; "
             f"read as within {FLAT_WITHIN}x)"))
    rewrite_growth = median(r.rewrite[last_point]) / median(r.rewrite[first_point])
    rows.append(_row(
        f"for contrast: nbformat.write rewrite p50 at cell {last_point:,} vs cell {first_point}",
        _ms(median(r.rewrite[last_point])), "ms", baseline=_ms(median(r.rewrite[first_point])),
        baseline_name=f"p50 around cell {first_point}",
        note=f"O(cells) per cell: {rewrite_growth:,.0f}x growth"))
    synced, unsynced = median(r.journal_sync), median(r.journal_nosync)
    mid = points[1] if len(points) > 2 else points[-1]
    record_mid = median(r.windows[mid][1].total)
    rows.append(_row(
        "Journal.append p50 of one cell event, sync=True (fsync)", _ms(synced), "ms", baseline=_ms(unsynced),
        baseline_name="sync=False", note=f"n={len(r.journal_sync)} each, alternating; p99 "
                                        f"{_ms(percentile(r.journal_sync, 99)):.3f} ms"))
    rows.append(_row(
        f"journal fsync share of record_code (p50 around cell {mid:,})", (synced - unsynced) / record_mid * 100, "%",
        note=f"(sync - no-sync) / record_code p50 = {_ms(synced - unsynced):.3f} / {_ms(record_mid):.3f} ms"))
    rows.append(_row(
        f"notebook size at {last_point:,} cells", r.notebook_bytes / MB, "MB",
        note=f"journal {r.journal_bytes / MB:.1f} MB; the recorder holds {r.held_bytes / MB:.1f} MB of cell JSON "
             "in memory (O(cells) memory, not time)"))
    return rows


# -- part 2: recording inside a live session ---------------------------------------------------


async def _timed_cells(session: Session, code: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        result = await session.execute(code)
        samples.append(time.perf_counter() - started)
        if result.status is not CellStatus.OK:
            raise RuntimeError(f"benchmark cell failed: {result.status} {result.error}")
    return samples


async def measure_session_cells(config: Config, root: Path) -> dict[str, list[float]]:
    """Two sandboxed sessions, notebook on and off, timed in interleaved blocks."""
    recorded_dir, plain_dir = root / "recorded", root / "plain"
    recorded_dir.mkdir()
    plain_dir.mkdir()
    subjects = {"recorded": Session(recorded_dir, notebook=root / "recorded.ipynb", default_timeout=REPLY_TIMEOUT),
                "notebook=False": Session(plain_dir, notebook=False, default_timeout=REPLY_TIMEOUT)}
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    recording: list[float] = []
    try:
        for session in subjects.values():
            await session.start()
            await _timed_cells(session, "1", config.session_warmup)
        assert subjects["recorded"].recorder is not None
        _timed_method(subjects["recorded"].recorder, "record_code", recording)
        per_block = config.session_cells // config.session_blocks
        for block in range(config.session_blocks):
            order = list(subjects) if block % 2 == 0 else list(reversed(subjects))
            for name in order:
                samples[name] += await _timed_cells(subjects[name], "1", per_block)
        log("session cells: " + ", ".join(f"{n} p50 {_ms(median(s)):.2f} ms" for n, s in samples.items()))
    finally:
        for session in subjects.values():
            await session.close()
    samples["record_code"] = recording
    return samples


def session_rows(samples: dict[str, list[float]]) -> list[Row]:
    rows: list[Row] = []
    recorded, plain, inside = samples["recorded"], samples["notebook=False"], samples["record_code"]
    for label, pct in (("p50", 50), ("p99", 99)):
        value, base = _ms(percentile(recorded, pct)), _ms(percentile(plain, pct))
        rows.append(_row(f"cell '1' round trip {label}, notebook recorded", value, "ms", baseline=base,
                         baseline_name=f"{label}, notebook=False",
                         note=f"n={len(recorded)} each, interleaved blocks; difference {value - base:+.3f} ms; "
                              f"record_code itself {label} {_ms(percentile(inside, pct)):.3f} ms (in a worker thread)"))
    return rows


# -- part 3: replay ------------------------------------------------------------------------------


def replay_cell(number: int) -> str:
    """Cell ``number`` of the recorded session: compute, print, call a tool."""
    return (f"v = sum(j * j for j in range({1_000 + 10 * number}))\n"
            f"print(f'cell {number}: {{v}}')\n"
            f"tools.add({number}, v % 1000)")


@dataclass
class ReplayResults:
    cells: int = 0
    record_start: float = 0.0
    record_cells: float = 0.0
    record_close: float = 0.0
    kind: str = ""  # "replay()" or "re-execution"
    replayed: int = 0  # code cells the replay ran
    replay_total: float = 0.0  # everything: read the notebook, start, cells, compare, close
    replay_cells: float = 0.0  # first cell sent to last cell back
    note: str = ""


async def record_session(config: Config, notebook: Path, workspace: Path, out: ReplayResults) -> None:
    session = Session(workspace, tools=[add], notebook=notebook, default_timeout=REPLY_TIMEOUT)
    started = time.perf_counter()
    await session.start()
    ready = time.perf_counter()
    try:
        for number in range(1, config.replay_cells + 1):
            result = await session.execute(replay_cell(number))
            if result.status is not CellStatus.OK or len(result.tool_calls) != 1:
                raise RuntimeError(f"recorded cell {number} failed: {result.status} {result.error}")
        done = time.perf_counter()
    finally:
        await session.close()
    out.cells = config.replay_cells
    out.record_start, out.record_cells, out.record_close = ready - started, done - ready, time.perf_counter() - done


def find_replay() -> tuple[Callable[..., Any] | None, str]:
    """``kernel_agent.verify.replay.replay`` if it exists, is async and needs nothing but the notebook."""
    try:
        module = importlib.import_module("kernel_agent.verify.replay")
    except ModuleNotFoundError:
        return None, "kernel_agent/replay.py does not exist yet"
    except Exception as exc:  # being written: a broken module must not stop the benchmark
        return None, f"kernel_agent.verify.replay failed to import ({type(exc).__name__}: {exc})"
    function = getattr(module, "replay", None)
    if function is None or not inspect.iscoroutinefunction(function):
        return None, "kernel_agent.verify.replay has no async replay()"
    required = [p.name for p in list(inspect.signature(function).parameters.values())[1:]
                if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                                        p.KEYWORD_ONLY)]
    if required:
        return None, f"replay() needs more than the notebook ({', '.join(required)})"
    return function, ""


async def reexecute(notebook: Path, workspace: Path, out: ReplayResults) -> None:
    """Read the recorded code cells and run them in order in a fresh session (tools live, nothing recorded)."""
    started = time.perf_counter()
    document = load_notebook_json(notebook)
    codes = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
             for c in document["cells"] if c.get("cell_type") == "code"
             and c.get("metadata", {}).get("kernel_agent", {}).get("kind") == "code"]  # not the setup cell
    session = Session(workspace, tools=[add], notebook=False, default_timeout=REPLY_TIMEOUT)
    await session.start()
    ready = time.perf_counter()
    try:
        for code in codes:
            result = await session.execute(code)
            if result.status is not CellStatus.OK:
                raise RuntimeError(f"re-executed cell failed: {result.status} {result.error}")
        done = time.perf_counter()
    finally:
        await session.close()
    out.replayed = len(codes)
    out.replay_cells = done - ready
    out.replay_total = time.perf_counter() - started
    if len(codes) != out.cells:
        raise RuntimeError(f"the notebook has {len(codes)} code cells, {out.cells} were recorded")


class ExecuteSpan:
    """While active, every ``Session.execute`` (in any session) stamps its start and end.

    ``replay()`` makes its own Session; this class-level wrapper (removed on
    exit) is how its cells are timed apart from its start, compare and close.
    """

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.calls = 0
        self._original: Any = None

    def __enter__(self) -> ExecuteSpan:
        original = self._original = Session.execute
        span = self

        async def execute(session: Session, *args: Any, **kwargs: Any) -> CellResult:
            if span.first is None:
                span.first = time.perf_counter()
            try:
                return await original(session, *args, **kwargs)
            finally:
                span.last = time.perf_counter()
                span.calls += 1

        Session.execute = execute  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Session.execute = self._original  # type: ignore[method-assign]

    @property
    def seconds(self) -> float:
        return 0.0 if self.first is None or self.last is None else self.last - self.first


async def measure_replay(config: Config, root: Path) -> ReplayResults:
    out = ReplayResults()
    notebook = root / "replay-source.ipynb"
    (root / "record-ws").mkdir()
    await record_session(config, notebook, root / "record-ws", out)
    log(f"recorded {out.cells} cells in {out.record_cells:.2f} s ({out.cells / out.record_cells:.0f} cells/s)")
    replay, why_not = find_replay()
    (root / "replay-ws").mkdir()
    if replay is not None:
        out.kind = "replay()"
        started = time.perf_counter()
        try:
            with ExecuteSpan() as span:
                report = await replay(notebook)
        except Exception as exc:
            why_not = f"replay(notebook) raised {type(exc).__name__}: {exc}"
            log(why_not)
        else:
            out.replay_total = time.perf_counter() - started
            out.replay_cells = span.seconds
            out.replayed = int(getattr(report, "cells", span.calls))
            faithful = getattr(report, "faithful", None)
            served = getattr(report, "tool_calls_served", None)
            out.note = ("kernel_agent.verify.replay.replay(notebook), defaults: tools answered from the recording"
                        + ("" if served is None else f" ({served} calls served)")
                        + ("" if faithful is None else f"; faithful={faithful}"))
            log(f"replay(): {out.replayed} cells in {out.replay_total:.2f} s end to end, "
                f"{out.replay_cells:.2f} s of cells; faithful={faithful}")
            return out
    out.kind = "re-execution"
    out.note = f"replay() not measured: {why_not}; re-ran the recorded code cells in a fresh Session, tools live"
    await reexecute(notebook, root / "replay-ws", out)
    return out


def replay_rows(r: ReplayResults) -> list[Row]:
    record_rate = r.cells / r.record_cells
    record_total = r.record_start + r.record_cells + r.record_close
    if r.kind == "replay()":
        cells_name = "replay(notebook), cells only (first cell sent to last cell back)"
        total_name = "replay(notebook), end to end (read, start, cells, compare, close)"
    else:
        cells_name = "re-execution of the recorded cells in a fresh Session (no replay()), cells only"
        total_name = "re-execution incl. notebook read, session start and close"
    return [
        _row(f"original recording of {r.cells} cells, cells/s (cells only)", record_rate, "cells/s",
             note=f"compute + print + 1 tool call per cell, notebook recorded; session start "
                  f"{r.record_start:.2f} s and close {r.record_close:.2f} s not counted"),
        _row(f"{cells_name}, cells/s", r.replayed / r.replay_cells, "cells/s", baseline=record_rate,
             baseline_name="original recording, cells only", note=f"{r.replayed} cells; {r.note}"),
        _row(f"{total_name}, cells/s", r.replayed / r.replay_total, "cells/s", baseline=r.cells / record_total,
             baseline_name="original recording incl. start and close",
             note=f"{r.replay_total:.2f} s for {r.replayed} cells, against {record_total:.2f} s to record them"),
    ]


# -- entry points ---------------------------------------------------------------------------------


async def measure_live(config: Config) -> tuple[dict[str, list[float]], ReplayResults]:
    with tempfile.TemporaryDirectory(prefix="kernel-agent-bench-live-") as tmp:
        root = Path(tmp)
        (root / "cells").mkdir()
        (root / "replay").mkdir()
        with warnings.catch_warnings():
            # An unconfined session would not be the default path: stop loudly instead.
            warnings.simplefilter("error", UnconfinedWarning)
            cells = await measure_session_cells(config, root / "cells")
            replay = await measure_replay(config, root / "replay")
    return cells, replay


def run(quick: bool = False) -> list[Row]:
    """Run every recording benchmark and return its rows (see _benchlib.Row)."""
    config = Config.for_mode(quick)
    log(f"config: {config}")
    started = time.perf_counter()
    recorder = measure_recorder(config)
    log(f"recorder part: {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    cells, replay = asyncio.run(measure_live(config))
    log(f"session and replay parts: {time.perf_counter() - started:.1f} s")
    return recorder_rows(recorder) + session_rows(cells) + replay_rows(replay)


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__.splitlines()[0], "fewer samples (2,000 recorded cells, 100-cell replay)", argv)


if __name__ == "__main__":
    main()
