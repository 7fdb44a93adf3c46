"""No output is lost in transit when the host reads slower than the kernel writes.

The host's iopub socket queues only a few messages (a bound on host memory,
see runtime/connection.py); whatever the host has not read yet must wait in
the kernel, whose memory the sandbox limits, not be dropped by zmq at a
high-water mark with no trace (which it was, past about 1,000 messages).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kernel_agent import Session
from kernel_agent.runtime.streaming import OutputChunk

LINES = 5000


@pytest.mark.serial  # the host must keep pace with the kernel: it failed at a load of 5 (tests/run_suite.py)
async def test_a_burst_of_output_while_the_host_is_not_reading_arrives_whole(tmp_path: Path) -> None:
    printed = tmp_path / "printed"
    held: list[bool] = []

    def hold_the_host(chunk: OutputChunk) -> None:
        # A plain callback runs on the host's event loop: holding it on the first chunk stops the host from reading
        # iopub until the kernel has written every line (it then creates `printed`).
        if held:
            return
        held.append(True)
        deadline = time.monotonic() + 60
        while not printed.exists() and time.monotonic() < deadline:
            time.sleep(0.005)

    async with Session(tmp_path, notebook=False, default_timeout=120) as session:
        result = await session.execute(
            f"for i in range({LINES}):\n    print(i, flush=True)\nopen('printed', 'w').close()\nprint('end')",
            on_output=hold_the_host)
    assert printed.exists() and held
    text = "".join(o.get("text", "") for o in result.outputs if o.get("output_type") == "stream")
    assert text.split() == [str(i) for i in range(LINES)] + ["end"], (len(text.split()), result.dropped_output_bytes)
