"""DataFrames and arrays across the tool bridge of a kernel on a Jupyter server: the binary buffers ride the
websocket (both ways) as they ride ZMQ for a local kernel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kernel_agent import Session
from kernel_agent.runtime.remote import JupyterServer

from .conftest import RunningServer

FRAME = ("pd.DataFrame({'x': [1.5, np.nan], 'n': pd.array([1, None], dtype='Int64'), "
         "'t': pd.to_datetime(['2026-01-01', None]).tz_localize('UTC')}, index=pd.Index([7, 9], name='k'))")


def frame() -> Any:
    """A small frame with NaN, a missing nullable int, a tz datetime and a named index."""
    return eval(FRAME)  # the test's own constant, built the same way in the kernel


def describe(df: pd.DataFrame, weights: np.ndarray) -> str:
    """Compare what arrived with the frame built here."""
    pd.testing.assert_frame_equal(df, frame())
    return f"{weights.dtype} {weights.shape}"


async def test_frames_and_arrays_cross_a_servers_websocket_both_ways(jupyter_server: RunningServer,
                                                                     tmp_path: Path) -> None:
    server = JupyterServer(jupyter_server.url, token=jupyter_server.token)
    async with Session(server=server, tools=[frame, describe], notebook=tmp_path / "ws.ipynb") as session:
        result = await session.execute(
            f"import numpy as np, pandas as pd\npd.testing.assert_frame_equal(tools.frame(), {FRAME})\n"
            f"print(tools.describe({FRAME}, np.ones((2, 3), dtype='float32')))")
        assert result.ok, result.error
        assert result.stdout == "float32 (2, 3)\n"
        assert [call.result["__ka__"] if call.tool == "frame" else call.arguments["df"]["__ka__"]
                for call in result.tool_calls] == ["arrow", "arrow"]
