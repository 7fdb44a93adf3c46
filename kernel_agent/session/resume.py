"""Resume a recorded session: rebuild the kernel's state from its notebook, then go on recording.

The kernel's state cannot be saved, but it can be rebuilt: the recorded
code cells run again in a fresh sandboxed kernel, seeded with the recorded
seed (:mod:`.seeds`), with every tool call answered from the recording (no
tool runs twice, nothing external is repeated). Each rebuilt cell is
compared with its recording the way replay compares
(:mod:`kernel_agent.record.compare`): a random value that came out
different is named (the cell, its first differing line). Then the live
tools take over and new cells are appended to the same notebook and
journal, extending the same hash chain, after a ``resumed`` note. The chain
must verify before anything is appended.

Which records can be resumed: a sealed one (its session closed, finished or
interrupted), and an unsealed one whose host stopped before the end (its
journal must agree with the notebook: else ``kernel-agent recover`` it
first). Not one a live session is still writing (its journal is locked),
nor one whose session detached from a kernel that may still run
(``Session.attach`` continues that one). Every refusal is a RecordingError
raised before any kernel starts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kernel_agent import safe_fs
from kernel_agent.errors import RecordingError, SessionOptionError
from kernel_agent.packages.recorded import RecordedPackages
from kernel_agent.record import format as fmt
from kernel_agent.record.compare import rerun_difference
from kernel_agent.record.format import AUDIT_KEY_ENV
from kernel_agent.record.journal import Journal, journal_path_for, read_journal
from kernel_agent.record.recorder import Recorder
from kernel_agent.record.recording import RecordedCell, Recording, load_recording
from kernel_agent.record.signing import SIGNING_KEY_ENV, load_private_key
from kernel_agent.runtime.results import CellResult
from kernel_agent.session.seeds import recorded_seed
from kernel_agent.tools.recorded import RecordedTools, recorded_tools

#: The kind of the note a resume leaves in the record, before the cells that follow it.
RESUMED = "resumed"


class ResumableSession(Protocol):
    """What resume needs of a session (Session satisfies it; this module never imports Session)."""

    seed: int

    async def start(self) -> Any: ...

    async def execute(self, code: str, *, timeout: float | None = ...) -> CellResult: ...

    async def start_cell(self, code: str) -> Any: ...

    async def close(self) -> None: ...

    def record_to(self, notebook: str | os.PathLike[str]) -> None: ...

    def attach_recorder(self, recorder: Recorder) -> None: ...

    async def replace_tools(self, tools: Any, *, sdk_hash: str | None = None) -> None: ...

    @property
    def sdk_hash(self) -> str: ...

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
    expect_head: str | None = None,
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
    sandbox hands its workspace to the kernel's uid. ``expect_head``: the
    chain head the caller read the record at (the agent's resume, which
    rebuilt its conversation from it): a record that changed since is
    refused. Returns the started session and, per rebuilt cell that
    differed from its recording, a line naming the cell, why, and its first
    differing line. A notebook that is unusable, in a state that cannot be
    resumed, or whose chain does not verify raises a RecordingError before
    any kernel starts.
    """
    if "seed" in options:
        raise SessionOptionError("resume seeds the kernel with the recorded seed; it takes no seed=")
    # Absolute, but not resolved: a link in the caller's place of the notebook is refused when read, not followed.
    path = Path(os.path.abspath(notebook))
    key = audit_key if audit_key is not None else os.environ.get(AUDIT_KEY_ENV)
    hmac_key = key.encode() if isinstance(key, str) else key
    signing_source = options.get("signing_key") or os.environ.get(SIGNING_KEY_ENV)
    signing_key = load_private_key(signing_source) if signing_source else None

    def read_and_check() -> tuple[Recording, int | None, dict[str, Any], list[Any]]:
        recording = load_recording(path)
        seed = recorded_seed(recording.header, path)
        # Before any recorded cell runs in the caller's workspace: the chain, the seal, the state, this session's keys.
        ours, cells = Recorder.check_resumable(path, hmac_key=hmac_key, signing_key=signing_key)
        check_resumable_state(path, ours, cells, expect_head)
        return recording, seed, ours, recorded_tools(recording.definitions, server)

    # Reading and hashing a large record, and rebuilding its tools, take a while: in a worker thread, off the
    # event loop other sessions share.
    server = RecordedTools()
    recording, seed, ours, recorded = await asyncio.to_thread(read_and_check)
    # The recorded installs, if the caller's own package policy allows them (a notebook is not a reason).
    packages = await RecordedPackages.check(recording, options.pop("package_policy", None))
    place = Path(workspace) if workspace is not None else None
    if seed is not None:
        options["seed"] = seed
    session = make_session(place, tools=recorded, notebook=False, audit_key=audit_key, **options)
    await session.start()
    try:
        # The resumed record must be out of the sandbox's reach too (unless allow_reachable_record).
        session.record_to(path)
        await packages.install(session)  # the same wheels, before the cells that import them
        differing = await _rebuild(session, recording, server)
        # From now on calls go to the live tools, whose SDK must be the one the kernel already has.
        # A header without a hash (a forger may drop it) is held to the SDK the kernel has.
        await session.replace_tools(packages.live_tools(tools, session),
                                    sdk_hash=(recording.header.get("tools") or {}).get("sdk_hash") or session.sdk_hash)
        recorder = Recorder.resume(path, hmac_key=hmac_key, signing_key=signing_key,
                                   expect=lambda ours, cells: check_resumable_state(path, ours, cells, expect_head,
                                                                                       locked=True))
        session.attach_recorder(recorder)
        _note_resume(recorder, ours, len(recording.cells), differing, seed)
    except BaseException:
        await session.close()
        raise
    if seed is None:
        differing.insert(0, f"the recording has no seed: the kernel was seeded with a fresh one ({session.seed}), "
                            "so random values may differ from the recorded ones")
    return session, differing


async def _rebuild(session: ResumableSession, recording: Recording, server: RecordedTools) -> list[str]:
    """Run the recorded cells again, tool calls answered from the recording; what differed, cell by cell."""
    differing: list[str] = []
    for cell in recording.cells:
        server.begin_cell(cell)
        try:
            result = await _run_again(session, cell)
        finally:
            server.end_cell()
        difference = rerun_difference(
            cell, result, again="rebuilt", unrecorded=[d for index, d in server.unrecorded if index == cell.index],
            limitations=[note for index, note in server.limitations if index == cell.index])
        if difference is not None:
            differing.append(f"cell {cell.index} ({cell.first_line}): {difference.reason}; first difference: "
                             f"{difference.first_line[:300]}")
    return differing


async def _run_again(session: ResumableSession, cell: RecordedCell) -> CellResult:
    """A recorded cell run again as it ran: one that timed out or was cancelled stops after as long as it ran."""
    if cell.status == "cancelled":  # a background cell its caller cancelled (as replay does)
        running = await session.start_cell(cell.source)
        result: CellResult | None = await running.wait(cell.duration or 0.0)
        return result if result is not None else await running.cancel()
    if cell.status == "timeout" and cell.duration:
        return await session.execute(cell.source, timeout=cell.duration)
    return await session.execute(cell.source)


def check_resumable_state(notebook: Path, ours: dict[str, Any], cells: list[dict[str, Any]],
                          expect_head: str | None = None, *, locked: bool = False) -> None:
    """RecordingError unless the (chain-checked) record is in a state a resume may continue; see the module doc.

    ``locked``: the caller holds the journal's lock (no probe for another writer then).
    """
    chain = ours.get("chain")
    head = chain.get("head") if isinstance(chain, dict) else None
    if expect_head is not None and head != expect_head:
        raise RecordingError(f"{notebook} changed while it was being resumed (its chain head moved); resume again")
    last = (cells[-1].get("metadata") or {}).get(fmt.METADATA_KEY) if cells else None
    if ours.get("end") is None and isinstance(last, dict) and last.get("kind") == "detached":
        raise RecordingError(f"{notebook}: its session detached from a kernel that may still be running on its "
                             "server, with its state: continue it with Session.attach, not resume")
    journal = journal_path_for(notebook)
    if not locked:
        _check_no_writer(notebook, journal)
    if ours.get("end") is None and journal.is_file():
        journaled = sum(event.get("event") == "cell" for event in read_journal(journal))
        if journaled != len(cells):
            raise RecordingError(f"{notebook}: unsealed, and its journal holds {journaled} cells where the notebook "
                                 f"holds {len(cells)} (its host stopped mid-write): run `kernel-agent recover "
                                 f"{journal}` first, then resume")


def _check_no_writer(notebook: Path, journal: Path) -> None:
    """Refuse, before any kernel starts, a record a live session is still writing (it holds its journal's lock).

    Only a probe: the lock that counts is taken again when recording resumes.
    """
    if not journal.is_file():
        return
    dir_fd = safe_fs.open_dir(notebook.parent)
    try:
        Journal(journal, dir_fd=dir_fd, continue_existing=True).close()
    finally:
        os.close(dir_fd)


def _note_resume(recorder: Recorder, ours: dict[str, Any], rebuilt: int, differing: list[str],
                 seed: int | None) -> None:
    """The ``resumed`` note: when, how the record had ended, how many cells were rebuilt and what differed."""
    from kernel_agent.session.attach import who

    end = ours.get("end")
    ended = end if isinstance(end, dict) else {}
    text = (f"*Resumed: {rebuilt} recorded cell(s) run again to rebuild the kernel's state, tool calls answered from "
            f"the recording; {len(differing) or 'none'} differed.*")
    recorder.record_note(RESUMED, text, {
        "at": dt.datetime.now(dt.UTC).isoformat(), "by": who(), "rebuilt_cells": rebuilt,
        "differences": differing[:50], "seed": seed,
        "previous_end": {"reason": ended.get("reason"), "ended_at": ended.get("ended_at")} if ended else None})
