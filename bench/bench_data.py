"""Moving a 1,000,000-row DataFrame from a host tool into the kernel: Arrow IPC in a binary buffer vs JSON.

A host tool returns the same frame (an int64, a float64 with NaN, a string,
a datetime and a boolean column, a named int index) twice in one session:

* **binary** (what a kernel with pandas and pyarrow gets): one Arrow IPC
  stream in the comm message's binary buffer, rebuilt by ``to_pandas``;
* **JSON** (the baseline, in the same run: the plain form every kernel got
  before, and one without pyarrow still gets): every cell a JSON value,
  rebuilt by ``pd.DataFrame(rows, ...)``, which infers the dtypes again.

The kernel times each call from inside the cell that makes it (the call's
whole path: host encoding, the message, kernel decoding) and checks the
frame it got (binary: ``assert_frame_equal`` with the original). The bytes
are the encoded reply's: JSON text plus binary buffers. Timings are printed,
never asserted. Run: ``python bench/bench_data.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import Row, bench_main, make_row

from kernel_agent import Session
from kernel_agent.protocol import wire

BENCH = "data"
FRAME_SOURCE = """
import numpy as np, pandas as pd
def make_frame(rows):
    rng = np.random.default_rng(7)
    price = rng.normal(100, 15, rows)
    price[::10] = np.nan
    return pd.DataFrame({
        "count": rng.integers(0, 1_000, rows),
        "price": price,
        "city": rng.choice(["Paris", "Lyon", "Nantes", "Lille"], rows),
        "when": pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(rows), unit="s"),
        "ok": rng.random(rows) < 0.5,
    }, index=pd.Index(np.arange(rows) * 2, name="row_id"))
"""
MEASURE = """
import time, json
started = time.perf_counter()
got = tools.load(rows={rows})
elapsed = time.perf_counter() - started
if {exact}:
    pd.testing.assert_frame_equal(got, make_frame({rows}))
print(json.dumps({{"seconds": elapsed, "dtypes": {{k: str(v) for k, v in got.dtypes.items()}}}}))
del got
"""


def log(message: str) -> None:
    print(f"[bench_data] {message}", file=sys.stderr, flush=True)


async def measure(rows: int, repeats: int) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(FRAME_SOURCE, namespace)
    frame = namespace["make_frame"](rows)

    def load(rows: int) -> Any:
        """The frame."""
        return frame

    sizes = {}
    for form, accepts in (("binary", wire.local_accepts()), ("json", frozenset())):
        started = time.perf_counter()
        data, buffers = wire.encode(frame, accepts)
        encode_seconds = time.perf_counter() - started
        sizes[form] = (len(json.dumps(data)) + sum(len(b) for b in buffers), encode_seconds)
        log(f"{form}: {sizes[form][0]:,} bytes, host encoding {encode_seconds:.2f} s")

    timings: dict[str, list[float]] = {"binary": [], "json": []}
    dtypes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        async with Session(Path(directory), tools=[load], notebook=False, default_timeout=900,
                           tool_timeout=900) as session:
            assert (await session.execute(FRAME_SOURCE)).ok
            comm_ids = list(session.bridge._accepts)  # the bench forces the plain form for the baseline
            for _ in range(repeats):
                for form in ("binary", "json"):
                    accepts = wire.local_accepts() if form == "binary" else frozenset()
                    for comm_id in comm_ids:
                        session.bridge._accepts[comm_id] = accepts
                    result = await session.execute(MEASURE.format(rows=rows, exact=form == "binary"))
                    assert result.ok, result.error
                    report = json.loads(result.stdout.strip().splitlines()[-1])
                    timings[form].append(report["seconds"])
                    dtypes[form] = report["dtypes"]
                    log(f"{form}: {report['seconds']:.2f} s in the kernel")
    return {"sizes": sizes, "timings": timings, "dtypes": dtypes}


def run(quick: bool = False) -> list[Row]:
    """Time and size of one frame moved both ways (see the module docstring)."""
    rows, repeats = (100_000, 1) if quick else (1_000_000, 2)
    found = asyncio.run(measure(rows, repeats))
    binary, plain = min(found["timings"]["binary"]), min(found["timings"]["json"])
    size_binary, size_json = found["sizes"]["binary"][0], found["sizes"]["json"][0]
    changed = sorted(k for k, v in found["dtypes"]["json"].items() if v != found["dtypes"]["binary"][k])
    return [
        make_row(BENCH, f"{rows:,}-row DataFrame, host tool -> kernel, Arrow IPC buffer", binary, "s",
                 baseline=plain, baseline_name="the same frame as JSON values", note="best of the run"),
        make_row(BENCH, f"{rows:,}-row DataFrame, bytes on the bridge, Arrow IPC", size_binary / 1e6, "MB",
                 baseline=size_json / 1e6, baseline_name="as JSON",
                 note=f"JSON changed dtypes: {', '.join(changed) or 'none'}"),
        make_row(BENCH, f"{rows:,}-row DataFrame, host encoding, Arrow IPC", found["sizes"]["binary"][1], "s",
                 baseline=found["sizes"]["json"][1], baseline_name="JSON encoding"),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__.splitlines()[0], "a 100,000-row frame, once", argv)


if __name__ == "__main__":
    main()
