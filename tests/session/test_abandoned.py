"""A Session dropped without close(): its kernel does not outlive it (kernel_agent.session.abandon)."""

from __future__ import annotations

import asyncio
import gc
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Session, audit_notebook
from kernel_agent.packages.policy import PackagePolicy
from kernel_agent.session import abandon

DROPPED = "garbage-collected without close"


def sandbox_of(session: Session) -> tuple[Any, Path]:
    """The launched sandbox process (subprocess.Popen) and its host-only run directory."""
    provisioner = session._kernel.provisioner  # type: ignore[union-attr]
    return provisioner.process, provisioner.run_dir


# Options whose objects hold the session back (the package tools read its package directory): by weak
# reference, or the session would never be collected.
OPTIONS: list[dict[str, Any]] = [{}, {"package_policy": PackagePolicy(allow=["six"], no_index=True)}]


@pytest.mark.parametrize("options", OPTIONS, ids=["plain", "packages"])
async def test_a_dropped_session_stops_its_kernel_and_removes_what_it_used(options: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    session = Session(notebook=tmp_path / "dropped.ipynb", default_timeout=60, **options)
    await session.start()
    assert (await session.execute("x = 41 + 1\nx")).result == "42"
    process, run_dir = sandbox_of(session)
    workspace = session.workspace  # a temporary one: the session's to remove
    with pytest.warns(ResourceWarning, match=DROPPED):
        del session
        gc.collect()  # the session is in reference cycles: only the collector frees it
    await abandon.finished()
    assert process.poll() is not None  # killed and reaped
    assert not run_dir.exists() and not workspace.exists()


def test_a_session_dropped_after_its_loop_ended_still_kills_its_kernel() -> None:
    async def start() -> Session:
        session = Session(notebook=False, default_timeout=60)
        await session.start()
        return session

    session = asyncio.run(start())  # its loop is closed now: only the signal can stop the kernel
    process, run_dir = sandbox_of(session)
    kernel = session._kernel
    with warnings.catch_warnings(record=True) as caught:  # its loop's sockets are collected too, with theirs
        warnings.simplefilter("always")
        del session
        gc.collect()
    assert [w for w in caught if w.category is ResourceWarning and DROPPED in str(w.message)]
    assert process.wait(60) is not None  # an event, not a sleep: the process ends, or this fails after 60 s
    asyncio.run(kernel.kill())  # what the reaper would do after this process exits: run directory, uid, cgroup
    assert not run_dir.exists()


async def test_closed_and_unstarted_sessions_are_collected_quietly() -> None:
    async with Session(notebook=False, default_timeout=60, **OPTIONS[1]) as closed:
        await closed.execute("1")
    unstarted = Session(notebook=False, **OPTIONS[1])
    refs = [weakref.ref(closed), weakref.ref(unstarted)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del closed, unstarted
        gc.collect()
    assert not [w for w in caught if DROPPED in str(w.message)]
    assert [ref() for ref in refs] == [None, None]  # nothing (no guard) keeps a session object alive


async def test_a_cancelled_close_still_stops_the_kernel(tmp_path: Path) -> None:
    """Cancelling close() (a second Ctrl-C, a timeout around it) must not leave the kernel running with
    nothing holding it: the closing goes on, and another close() waits for it."""
    session = Session(notebook=tmp_path / "closed.ipynb", default_timeout=60)
    await session.start()
    process, run_dir = sandbox_of(session)
    closing = asyncio.ensure_future(session.close())
    await asyncio.sleep(0)  # let the close begin (a turn of the loop, not a wait for time)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await session.close()  # waits for the closing the cancelled call began
    assert process.poll() is not None and not run_dir.exists()
    assert audit_notebook(tmp_path / "closed.ipynb").verdict == "intact"  # sealed too
