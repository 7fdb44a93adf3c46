"""The replay itself: a fresh sandboxed session runs the recorded code cells, tools answered from the recording."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kernel_agent.packages.policy import PackagePolicy
from kernel_agent.packages.recorded import RecordedPackages
from kernel_agent.record.recording import Recording, ReplayInputError, load_recording
from kernel_agent.session.seeds import recorded_seed
from kernel_agent.session.session import Session
from kernel_agent.tools.recorded import RecordedTools, recorded_tools
from kernel_agent.tools.sdkgen import sdk_hash
from kernel_agent.verify.replay.compare import compare_cell
from kernel_agent.verify.replay.report import ReplayReport


async def replay(
    notebook: Path | str,
    *,
    live_tools: Iterable[Any] | None = None,
    out: Path | str | None = None,
    policy: Any = None,
    cell_timeout: float = 600.0,
    package_policy: PackagePolicy | None = None,
) -> ReplayReport:
    """Replay ``notebook`` in a fresh sandboxed session and compare every code cell with its recording.

    ``live_tools`` (tools, @tool functions, registries, McpServers, as for
    Session): call these instead of answering from the recording. ``out``:
    record the replayed session there. ``policy``: the sandbox policy
    (default: the strict default, whatever the recording used).
    ``package_policy``: must allow every package the recording installed
    (PackageNotAllowedError before anything runs); they are installed again,
    the same wheels (by sha256), before the first cell.
    Raises ReplayInputError for an unusable notebook and other
    KernelAgentErrors when the session cannot run; a divergence is not an
    error but ``faithful=False`` in the report.
    """
    path = Path(notebook)
    recording = load_recording(path)
    out_path = Path(out).resolve() if out is not None else None
    if out_path is not None and out_path == path.resolve():
        raise ReplayInputError("--out must not be the notebook being replayed (it is never modified)")
    live = live_tools is not None
    live_items = list(live_tools) if live_tools is not None else []
    recorded_calls = sum(len(c.calls) for c in recording.cells)
    if live and not live_items and recorded_calls:
        raise ReplayInputError(f"a live replay needs the real tools: the recording has {recorded_calls} tool "
                               "calls; pass them (--tools MODULE:OBJECT, --mcp COMMAND)")
    warnings: list[str] = list(recording.warnings)
    # The kernel draws what the recorded one drew: seeded with the recorded seed (checked: an int in range).
    seed = recorded_seed(recording.header, path)
    if seed is None:
        warnings.append("the recording has no seed: random values (random, numpy.random) may come out different")
    packages = await RecordedPackages.check(recording, package_policy)
    server = RecordedTools()
    # Rebuilding 2,500 recorded tools takes a second: in a worker thread, off the event loop.
    tools = live_items if live else await asyncio.to_thread(recorded_tools, recording.definitions, server)
    raw_sandbox = recording.header.get("sandbox")
    sandbox: dict[str, Any] = raw_sandbox if isinstance(raw_sandbox, dict) else {}
    if policy is None and sandbox.get("loosenings"):
        warnings.append("the session was recorded under a loosened sandbox (" + "; ".join(
            map(str, sandbox["loosenings"])) + "); it is replayed under the default strict policy")
    session = Session(
        None, policy=policy, tools=tools, notebook=out_path if out_path is not None else False,
        default_timeout=cell_timeout, seed=seed,
        record_metadata={"replay": {"of_session": recording.header.get("session_id"),
                                    "of_notebook": str(path.resolve()), "live": live}},
    )
    report = ReplayReport(notebook=str(path), live=live, faithful=True, cells=0,
                          tool_calls_recorded=recorded_calls, tool_calls_served=0,
                          out=str(out_path) if out_path else None)
    async with session:
        _check_sdk(session, recording, live, warnings)
        await packages.install(session)
        messages = dict(recording.messages)
        for cell in recording.cells:
            for index in sorted(i for i in messages if i < cell.index):
                session.record_message(*messages.pop(index))
            timeout = cell_timeout
            if cell.status == "timeout" and cell.duration:
                timeout = min(cell_timeout, cell.duration)
            server.begin_cell(cell)
            try:
                if cell.status == "cancelled":  # a background cell its caller cancelled: cancelled again
                    result = await _cancelled_after(session, cell.source, min(cell_timeout, cell.duration or 0.0))
                else:
                    result = await session.execute(cell.source, timeout=timeout)
            finally:
                server.end_cell()
            report.cells += 1
            compare_cell(cell, result, server, report)
        for index in sorted(messages):
            session.record_message(*messages[index])
    report.tool_calls_served = server.served
    report.unrecorded_calls = [description for _, description in server.unrecorded]
    warnings += [f"cell {index}: {note}" for index, note in server.limitations]
    report.warnings = warnings
    report.faithful = not report.divergent_cells and not server.unrecorded
    return report


async def _cancelled_after(session: Session, source: str, seconds: float) -> Any:
    """Run ``source`` in the background and cancel it after ``seconds``, as its recording was (if it still runs)."""
    running = await session.start_cell(source)
    result = await running.wait(seconds)
    return result if result is not None else await running.cancel()


def _check_sdk(session: Any, recording: Recording, live: bool, warnings: list[str]) -> None:
    actual = sdk_hash(session.sdk_modules)
    whose = "the live tools'" if live else "the regenerated"
    if recording.sdk_hash is None:
        warnings.append("the recording has no SDK hash: cannot check that the kernel gets the same tool SDK")
    elif actual != recording.sdk_hash:
        warnings.append(f"{whose} tool SDK differs from the recorded one (sdk hash {actual[:12]} != "
                        f"{recording.sdk_hash[:12]}): the kernel may see other signatures or docs")
    if live:
        called = {str(c.get("tool")) for cell in recording.cells for c in cell.calls
                  if c.get("status") != "unknown_tool"}
        missing = sorted(name for name in called if name not in session.registry)
        if missing:
            warnings.append("the live tools lack " + ", ".join(missing) + ", which the recording calls")
