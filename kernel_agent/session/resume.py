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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kernel_agent.packages.recorded import RecordedPackages
from kernel_agent.record.format import AUDIT_KEY_ENV
from kernel_agent.record.recorder import Recorder
from kernel_agent.record.recording import load_recording
from kernel_agent.record.signing import SIGNING_KEY_ENV, load_private_key
from kernel_agent.runtime.results import CellResult
from kernel_agent.tools.recorded import RecordedTools, recorded_tools


class ResumableSession(Protocol):
    """What resume needs of a session (Session satisfies it; this module never imports Session)."""

    async def start(self) -> Any: ...

    async def execute(self, code: str) -> CellResult: ...

    async def close(self) -> None: ...

    def record_to(self, notebook: str | os.PathLike[str]) -> None: ...

    def attach_recorder(self, recorder: Recorder) -> None: ...

    async def replace_tools(self, tools: Any, *, sdk_hash: str | None = None) -> None: ...

    @property
    def packages_dir(self) -> Path | None: ...


S = TypeVar("S", bound=ResumableSession)


async def resume_session(
    make_session: Callable[..., S],
    notebook: str | os.PathLike[str],
    *,
    tools: Any = (),
    workspace: str | os.PathLike[str] | None = None,
    audit_key: bytes | str | None = None,
    **options: Any,
) -> tuple[S, list[str]]:
    """Start a session whose kernel state is rebuilt from ``notebook``, recording on into it.

    ``make_session`` builds the (unstarted) session from Session's options.
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
    # The recorded installs, if the caller's own package policy allows them (a notebook is not a reason).
    packages = await RecordedPackages.check(recording, options.pop("package_policy", None))
    server = RecordedTools()
    recorded = recorded_tools(recording.definitions, server)
    place = Path(workspace) if workspace is not None else None
    session = make_session(place, tools=recorded, notebook=False, audit_key=audit_key, **options)
    await session.start()
    differing: list[str] = []
    try:
        # The resumed record must be out of the sandbox's reach too (unless allow_reachable_record).
        session.record_to(path)
        await packages.install(session)  # the same wheels, before the cells that import them
        for cell in recording.cells:
            server.begin_cell(cell)
            try:
                result = await session.execute(cell.source)
            finally:
                server.end_cell()
            if result.status.value != cell.status:
                differing.append(f"cell {cell.index} ({cell.first_line}): recorded {cell.status}, "
                                 f"rebuilt {result.status.value}")
        # From now on calls go to the live tools, whose SDK must be the one the kernel already has.
        await session.replace_tools(packages.live_tools(tools, session),
                                    sdk_hash=(recording.header.get("tools") or {}).get("sdk_hash"))
        session.attach_recorder(Recorder.resume(path, hmac_key=hmac_key, signing_key=signing_key))
    except BaseException:
        await session.close()
        raise
    return session, differing
