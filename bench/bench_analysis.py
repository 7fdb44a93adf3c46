"""Analysis-session benchmarks: the first plot in a new kernel, and a package installed through the host.

* First plot: a fresh sandboxed kernel runs ``import matplotlib.pyplot``
  and draws one figure (image/png), with the host's prebuilt font cache
  bound in (the default) and, as the same-run baseline, with
  ``MPLCONFIGDIR`` pointed elsewhere so matplotlib scans the fonts itself
  (what every kernel did before).
* ``%pip install`` of a small local wheel through the host (policy,
  download, checks, install, recording), next to the same wheel installed by
  one plain ``pip install --target`` on the host, timed in the same run.

Run: ``python bench/bench_analysis.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kernel_agent import PackagePolicy, SandboxPolicy, Session, UnconfinedWarning  # noqa: E402
from tests.packages.wheels import build_wheel  # noqa: E402

from _benchlib import Row, bench_main, make_row, median  # noqa: E402

BENCHMARK = "analysis"
PLOT = ("import time\nt = time.perf_counter()\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\n"
        "print(time.perf_counter() - t)")


async def first_plot(policy: SandboxPolicy | None) -> float:
    with tempfile.TemporaryDirectory() as workspace, warnings.catch_warnings():
        warnings.simplefilter("ignore", UnconfinedWarning)
        async with Session(workspace, policy=policy) as session:
            result = await session.execute(PLOT)
            assert result.ok and any("image/png" in o.get("data", {}) for o in result.outputs), result.error
            return float(result.stdout.split()[-1])


async def host_install(root: Path, wheel: Path) -> float:
    policy = PackagePolicy(allow=["benchpkg"], no_index=True, find_links=[str(wheel.parent)], isolated=True)
    with tempfile.TemporaryDirectory(dir=root) as workspace:
        async with Session(workspace, package_policy=policy) as session:
            start = time.perf_counter()
            result = await session.execute("%pip install benchpkg\nimport benchpkg")
            assert result.ok, result.error
            return time.perf_counter() - start


def plain_install(root: Path, wheel: Path) -> float:
    with tempfile.TemporaryDirectory(dir=root) as target:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--target", target,
                        "--no-deps", "--disable-pip-version-check", "-q", str(wheel)], check=True)
        return time.perf_counter() - start


def run(quick: bool) -> list[Row]:
    rounds = 1 if quick else 3
    cached, scanned, through_host, plain = [], [], [], []
    scanning = SandboxPolicy(env={"MPLCONFIGDIR": "/tmp/matplotlib-no-prebuilt-cache"})
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "wheels").mkdir()
        wheel = build_wheel(root / "wheels", "benchpkg", "1.0", "VALUE = 1\n")
        for _ in range(rounds):  # interleaved, so a noisy neighbour slows both alike
            cached.append(asyncio.run(first_plot(None)))
            scanned.append(asyncio.run(first_plot(scanning)))
            through_host.append(asyncio.run(host_install(root, wheel)))
            plain.append(plain_install(root, wheel))
    return [
        make_row(BENCHMARK, "first plot in a new kernel (prebuilt font cache)", median(cached), "s",
                 baseline=median(scanned), baseline_name="matplotlib scans the fonts in the kernel",
                 note="import matplotlib.pyplot + one figure to image/png, timed inside the kernel"),
        make_row(BENCHMARK, "%pip install of a local wheel through the host", median(through_host), "s",
                 baseline=median(plain), baseline_name="one plain pip install --target on the host",
                 note="policy, pip download, checks and sha256, pip install, recorded tool call, import"),
    ]


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "one round instead of three")
