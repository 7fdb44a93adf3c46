"""MCP server benchmarks: what ``kernel-agent mcp`` adds to a cell, and the context its tools cost a client.

The official MCP client drives ``kernel-agent mcp`` over stdio (a real
subprocess, the demo's four host tools). Each figure sits next to a baseline
measured in the same run:

* ``run_python("1")`` round trip, p50, against ``Session.execute("1")`` in
  this process (the cost of the MCP layer: JSON-RPC over pipes, the
  observation, the recording is in both);
* ``run_python`` with one host tool call, against the same cell in-process;
* the first ``run_python`` of a client (its kernel taken from the warm pool,
  the SDK installed, the recording begun), against a cold ``Session`` start;
* the fixed context a client's model reads: the server's ``tools/list``
  (seven tools, the manifest of the host tools in ``run_python``'s
  description), against classic tool calling's full schemas of the same host
  tools, counted with the real tokenizer when it is installed (else chars/4).

Timings are printed, never asserted. Run: ``python bench/bench_mcp.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402

from _benchlib import Row, bench_main, make_row, median  # noqa: E402
from _tokenizer import load_counter  # noqa: E402
from kernel_agent import Session  # noqa: E402
from kernel_agent.demo.tools import DEMO_TOOLS  # noqa: E402
from kernel_agent.tools.registry import ToolRegistry  # noqa: E402

BENCHMARK = "mcp"
TOOLS_SPEC = "kernel_agent.demo.tools:DEMO_TOOLS"
TOOL_CELL = "tools.fx.eur_rate('USD')"


async def _over_mcp(records: Path, rounds: int) -> tuple[float, list[float], list[float], str]:
    """(first call s, trivial round trips s, tool-call round trips s, the tools/list JSON) over stdio."""
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "kernel_agent.cli.main", "mcp", "--tools", TOOLS_SPEC],
        env={**os.environ, "KERNEL_AGENT_RECORD_DIR": str(records)})
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        listed = await client.list_tools()
        started = time.perf_counter()
        await client.call_tool("run_python", {"code": "0"})
        first = time.perf_counter() - started
        trivial, tool = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            await client.call_tool("run_python", {"code": "1"})
            trivial.append(time.perf_counter() - started)
            started = time.perf_counter()
            await client.call_tool("run_python", {"code": TOOL_CELL})
            tool.append(time.perf_counter() - started)
    tools_json = json.dumps([tool.model_dump(mode="json", by_alias=True, exclude_none=True)
                             for tool in listed.tools])
    return first, trivial, tool, tools_json


async def _in_process(records: Path, rounds: int) -> tuple[float, list[float], list[float]]:
    """(cold start s, trivial cells s, tool-call cells s) of a Session in this process."""
    with tempfile.TemporaryDirectory() as workspace:
        started = time.perf_counter()
        session = Session(workspace, tools=DEMO_TOOLS, notebook=records / "baseline.ipynb")
        await session.start()
        cold = time.perf_counter() - started
        try:
            trivial, tool = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                await session.execute("1")
                trivial.append(time.perf_counter() - started)
                started = time.perf_counter()
                await session.execute(TOOL_CELL)
                tool.append(time.perf_counter() - started)
        finally:
            await session.close()
    return cold, trivial, tool


def classic_schemas() -> str:
    """The host tools as classic tool calling sends them: name, description and input schema each."""
    registry = ToolRegistry(DEMO_TOOLS)
    return json.dumps([{"name": tool.qualified_name, "description": tool.description,
                        "input_schema": tool.input_schema} for tool in registry])


def run(quick: bool) -> list[Row]:
    rounds = 10 if quick else 40
    with tempfile.TemporaryDirectory() as directory:
        records = Path(directory)
        cold, direct_trivial, direct_tool = asyncio.run(_in_process(records, rounds))
        first, mcp_trivial, mcp_tool, tools_json = asyncio.run(_over_mcp(records, rounds))
    counter = load_counter(install=False, log=lambda _message: None)
    served, classic = counter.count(tools_json), counter.count(classic_schemas())
    ms = 1000.0
    return [
        make_row(BENCHMARK, "run_python('1') round trip p50 over stdio", median(mcp_trivial) * ms, "ms",
                 baseline=median(direct_trivial) * ms, baseline_name="Session.execute('1') in-process p50"),
        make_row(BENCHMARK, "run_python with one host tool call p50 over stdio", median(mcp_tool) * ms, "ms",
                 baseline=median(direct_tool) * ms, baseline_name="the same cell in-process p50"),
        make_row(BENCHMARK, "first run_python of a client (warm pool kernel, SDK, recording)", first * ms, "ms",
                 baseline=cold * ms, baseline_name="cold Session start in-process"),
        make_row(BENCHMARK, "fixed context: the server's tools/list (7 tools + manifest of 4 host tools)",
                 served, "tokens", baseline=classic, baseline_name="classic tool calling: the 4 host tools' schemas",
                 note=f"counted with {counter.name}; the served list grows by one manifest line per host tool"),
    ]


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "fewer rounds")
