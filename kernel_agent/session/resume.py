"""Resume a recorded session: rebuild the kernel's state from its notebook, then go on recording.

The kernel's state cannot be saved, but it can be rebuilt: the recorded
code cells run again in a fresh sandboxed kernel, with every tool call
answered from the recording (no tool runs twice, nothing external is
repeated). Then the live tools take over and new cells are appended to the
same notebook and journal, extending the same hash chain. The chain must
verify before anything is appended.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kernel_agent.errors import RecordingError
from kernel_agent.record.format import AUDIT_KEY_ENV
from kernel_agent.record.recorder import Recorder
from kernel_agent.record.signing import SIGNING_KEY_ENV, load_private_key
from kernel_agent.record.recording import load_recording
from kernel_agent.tools.recorded import RecordedTools, recorded_tools
from kernel_agent.session.session import Session


async def resume_session(
    notebook: str | os.PathLike[str],
    *,
    tools: Any = (),
    workspace: str | os.PathLike[str] | None = None,
    audit_key: bytes | str | None = None,
    **options: Any,
) -> tuple[Session, list[str]]:
    """Start a session whose kernel state is rebuilt from ``notebook``, recording on into it.

    ``tools`` are the live tools for the cells that follow; they must be the
    ones the recording used (the regenerated SDK must match), or none: then
    new tool calls fail with a clear error. ``workspace`` is the directory
    the kernel works in, given by the caller; without it the session gets a
    fresh temporary one. The workspace recorded in the notebook's header is
    never used: a notebook is input anyone could have written, and the
    sandbox hands its workspace to the kernel's uid. Returns the started
    session and the cells whose rebuilt outcome differed from the recording.
    A notebook that is unusable or whose chain does not verify raises a
    RecordingError before any kernel starts.
    """
    # Absolute, but not resolved: a link in the caller's place of the notebook is refused when read, not followed.
    path = Path(os.path.abspath(notebook))
    recording = load_recording(path)
    key = audit_key if audit_key is not None else os.environ.get(AUDIT_KEY_ENV)
    hmac_key = key.encode() if isinstance(key, str) else key
    signing_source = options.get("signing_key") or os.environ.get(SIGNING_KEY_ENV)
    signing_key = load_private_key(signing_source) if signing_source else None
    # Before any recorded cell runs in the caller's workspace: the chain, the seal, and this session's keys.
    Recorder.check_resumable(path, hmac_key=hmac_key, signing_key=signing_key)
    server = RecordedTools()
    recorded = recorded_tools(recording.definitions, server)
    place = Path(workspace) if workspace is not None else None
    session = Session(place, tools=recorded, notebook=False, audit_key=audit_key, **options)
    await session.start()
    differing: list[str] = []
    try:
        # The resumed record must be out of the sandbox's reach too (unless allow_reachable_record).
        session._notebook_option = path
        session._check_record_location()
        for cell in recording.cells:
            server.begin_cell(cell)
            try:
                result = await session.execute(cell.source)
            finally:
                server.end_cell()
            if result.status.value != cell.status:
                differing.append(f"cell {cell.index} ({cell.first_line}): recorded {cell.status}, "
                                 f"rebuilt {result.status.value}")
        await _switch_to_live_tools(session, tools, recording.header)
        session.recorder = Recorder.resume(path, hmac_key=hmac_key, signing_key=signing_key)
    except BaseException:
        await session.close()
        raise
    return session, differing


async def _switch_to_live_tools(session: Session, tools: Any, header: dict[str, Any]) -> None:
    """From now on calls go to the live tools, whose SDK must be the one the kernel already has."""
    from kernel_agent.tools.registry import ToolRegistry
    from kernel_agent.tools.sdkgen import generate_sdk, sdk_hash

    items = list(tools) if isinstance(tools, (list, tuple)) else [tools] if tools else []
    if not items:
        session.registry = ToolRegistry([])
        return
    session._tool_items = items
    for item in items:
        if hasattr(item, "start") and hasattr(item, "started") and not item.started:
            await item.start()
            session._started_servers.append(item)
    live = ToolRegistry(items)
    recorded_hash = (header.get("tools") or {}).get("sdk_hash")
    if recorded_hash and sdk_hash(generate_sdk(live)) != recorded_hash:
        raise RecordingError("the tools given to resume are not the ones this session was recorded with "
                             "(their SDK differs); pass the same tools")
    session.registry = live
