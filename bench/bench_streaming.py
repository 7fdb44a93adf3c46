"""Live output: time to the first streamed byte of a cell, next to the cell's whole time and raw jupyter_client's.

One cell prints a line, then computes for about WORK_SECONDS, then prints
again. Measured in the same run:

* **kernel-agent**: a sandboxed ``Session``; from the call to
  ``Session.execute(code, on_output=...)`` to the callback's first chunk,
  and to the result (before streaming, this was when any output was seen);
* **raw jupyter_client** (the baseline): the stock ``python3`` kernel
  (unsandboxed, tcp) and an ``AsyncKernelClient``; from ``execute()`` to the
  first ``stream`` message read from iopub, and to the execute reply.

Medians over the samples. Run: ``python bench/bench_streaming.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

from kernel_agent import Session  # noqa: E402
from kernel_agent.runtime.streaming import OutputChunk  # noqa: E402

from _benchlib import Row, bench_main, make_row, median  # noqa: E402

BENCHMARK = "streaming"
WORK_SECONDS = 0.5
CELL = (f"import time\nprint('started', flush=True)\nend = time.perf_counter() + {WORK_SECONDS}\n"
        "while time.perf_counter() < end:\n    pass\nprint('done')")
REPLY_TIMEOUT = 60.0


def log(message: str) -> None:
    print(f"[bench_streaming] {message}", file=sys.stderr, flush=True)


async def kernel_agent_samples(count: int) -> tuple[list[float], list[float]]:
    """(first chunk, whole cell) seconds for ``count`` cells in one sandboxed session."""
    firsts, totals = [], []
    with tempfile.TemporaryDirectory() as workspace:
        async with Session(workspace, notebook=False) as session:
            await session.execute("1")  # warm: the first cell pays for imports in the kernel
            for _ in range(count):
                first: list[float] = []

                def seen(chunk: OutputChunk, first: list[float] = first) -> None:
                    if not first and chunk.output_type == "stream":
                        first.append(time.perf_counter())

                started = time.perf_counter()
                result = await session.execute(CELL, on_output=seen)
                ended = time.perf_counter()
                if not result.ok or not first:
                    raise RuntimeError(f"the cell did not stream: {result}")
                firsts.append(first[0] - started)
                totals.append(ended - started)
    return firsts, totals


async def stock_samples(count: int) -> tuple[list[float], list[float]]:
    """(first stream message, execute reply) seconds with raw jupyter_client and the stock kernel."""
    firsts, totals = [], []
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=REPLY_TIMEOUT)
        for index in range(count + 1):
            started = time.perf_counter()
            msg_id = client.execute(CELL if index else "1")
            first = None
            while True:
                message = await client.get_iopub_msg(timeout=REPLY_TIMEOUT)
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                if message["msg_type"] == "stream" and first is None:
                    first = time.perf_counter()
                if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                    break
            reply = await client.get_shell_msg(timeout=REPLY_TIMEOUT)
            ended = time.perf_counter()
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"stock cell failed: {reply['content']}")
            if index:  # the first cell is the warm-up
                if first is None:
                    raise RuntimeError("the stock cell did not stream")
                firsts.append(first - started)
                totals.append(ended - started)
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
    return firsts, totals


def run(quick: bool = False) -> list[Row]:
    """Both sides in the same run, alternating nothing: the stock kernel first, then the sandboxed session."""
    count = 3 if quick else 15
    stock_first, stock_total = asyncio.run(stock_samples(count))
    log(f"stock: first {median(stock_first) * 1000:.1f} ms, total {median(stock_total) * 1000:.1f} ms")
    ours_first, ours_total = asyncio.run(kernel_agent_samples(count))
    log(f"kernel-agent: first {median(ours_first) * 1000:.1f} ms, total {median(ours_total) * 1000:.1f} ms")
    note = f"median of {count}; the cell prints, computes {WORK_SECONDS} s, prints again"
    return [
        make_row(BENCHMARK, "time to first streamed byte (Session.execute on_output)", median(ours_first) * 1000,
                 "ms", baseline=median(stock_first) * 1000,
                 baseline_name="raw jupyter_client: execute() to first iopub stream message (stock kernel)",
                 note=note),
        make_row(BENCHMARK, "the whole cell (before streaming: when output was first seen)", median(ours_total) * 1000,
                 "ms", baseline=median(stock_total) * 1000,
                 baseline_name="raw jupyter_client: execute() to the reply (stock kernel)", note=note),
        make_row(BENCHMARK, "first streamed byte as a share of the cell's time",
                 100 * median(ours_first) / median(ours_total), "%",
                 baseline=100 * median(stock_first) / median(stock_total),
                 baseline_name="raw jupyter_client, same share", note=note),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__.splitlines()[0], "3 samples instead of 15", argv)


if __name__ == "__main__":
    main()
