"""The scientific stack (the `analysis` extra) in the real sandbox, under the default policy and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from kernel_agent import Session
from kernel_agent.sandbox import scientific

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def analysis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    """One session with the default policy (default limits) for the module."""
    async with Session(tmp_path_factory.mktemp("workspace"), default_timeout=120) as session:
        yield session


async def test_pandas_groupby_over_a_million_rows_within_the_default_limits(analysis: Session) -> None:
    result = await analysis.execute(
        "import numpy as np, pandas as pd\n"
        "rng = np.random.default_rng(0)\n"
        "n = 1_000_000\n"
        "df = pd.DataFrame({'key': rng.integers(0, 100, n), 'value': np.arange(n, dtype='float64')})\n"
        "sums = df.groupby('key')['value'].agg(['sum', 'count'])\n"
        "(len(df), int(sums['count'].sum()), float(sums['sum'].sum()) == float(np.arange(n).sum()))")
    assert result.ok, result.error
    assert result.result == "(1000000, 1000000, True)"


async def test_native_thread_pools_are_bounded(analysis: Session) -> None:
    result = await analysis.execute(
        f"import os\nprint({{k: os.environ.get(k) for k in {sorted(scientific.NATIVE_THREAD_ENV)!r}}})")
    assert result.ok, result.error
    assert result.stdout.strip() == str(dict(sorted(scientific.NATIVE_THREAD_ENV.items())))


async def test_a_figure_is_displayed_as_png_with_the_inline_backend(analysis: Session) -> None:
    result = await analysis.execute(
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 3, 2])\nax.set_title('t')\nNone")
    assert result.ok, result.error
    pngs = [o["data"]["image/png"] for o in result.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    import base64

    assert base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n")


async def test_the_font_cache_is_the_hosts_prebuilt_one_and_read_only(analysis: Session) -> None:
    """matplotlib finds the host's font cache (no rebuild in the kernel) and cannot replace it."""
    prebuilt = scientific.host_font_cache()
    assert prebuilt is not None
    result = await analysis.execute(
        "import matplotlib, matplotlib.font_manager as fm, os\n"
        f"path = os.path.join(matplotlib.get_cachedir(), {prebuilt.name!r})\n"
        "try:\n    open(path, 'a').close(); writable = True\nexcept OSError:\n    writable = False\n"
        "with open(path, 'rb') as f: content = f.read()\n"
        "open(os.path.join(matplotlib.get_cachedir(), 'other'), 'w').write('x')\n"
        "print(matplotlib.get_cachedir(), writable, len(content))")
    assert result.ok, result.error
    assert result.stdout.split() == [scientific.MPLCONFIGDIR, "False", str(Path(prebuilt).stat().st_size)]
