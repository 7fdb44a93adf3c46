"""The start-up reaper removes only what no live host holds, whatever pid namespace that host is in.

A host in another pid namespace sharing /tmp is simulated by leftovers whose
names carry a pid that does not exist here, their locks held by another
process (a subprocess standing in for that host). Where util-linux's
``unshare`` can make a real second pid namespace, the holder runs in one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kernel_agent import Session
from kernel_agent.sandbox.hostlocks import LOCK_SUFFIX
from kernel_agent.sandbox.provisioner import RUN_DIR_PREFIX

# Holds the flocks on the lock files named in argv until its stdin closes.
_HOLDER = """
import fcntl, sys
held = [open(path, "a") for path in sys.argv[1:]]
for f in held:
    fcntl.flock(f, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""

# serial: any session's start reaps /tmp, so another test's session starting between the making of a "live"
# host's leftovers and their locking would reap them (tests/run_suite.py runs these alone).
pytestmark = pytest.mark.serial


def _absent_pid() -> int:
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid -= 1
    return pid


def _leftovers(pid: int) -> list[Path]:
    """A run directory and a temporary workspace of a host with ``pid``, each with its lock file."""
    tmp = Path(tempfile.gettempdir())
    made = []
    for middle in ("", "workspace-"):
        path = tmp / f"{RUN_DIR_PREFIX}{pid}-{middle}{secrets.token_hex(5)}"
        path.with_name(path.name + LOCK_SUFFIX).touch(mode=0o600)
        path.mkdir(mode=0o700)
        (path / "file.txt").write_text("the other host's")
        made.append(path)
    return made


@contextmanager
def _held_by_another_host(paths: list[Path]) -> Iterator[None]:
    locks = [str(p.with_name(p.name + LOCK_SUFFIX)) for p in paths]
    command = [sys.executable, "-c", _HOLDER, *locks]
    unshare = shutil.which("unshare")
    if unshare is not None and os.getuid() == 0:  # a real second pid namespace
        command = [unshare, "--pid", "--fork", "--mount-proc", *command]
    holder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


async def test_a_live_foreign_host_keeps_its_directories_and_a_dead_ones_are_reaped(workspace: Path) -> None:
    foreign, stale = _leftovers(_absent_pid()), _leftovers(_absent_pid())
    try:
        with _held_by_another_host(foreign):
            async with Session(workspace) as session:  # its start reaps
                assert (await session.execute("1 + 1")).result == "2"
            for path in foreign:
                assert (path / "file.txt").read_text() == "the other host's"
                assert path.with_name(path.name + LOCK_SUFFIX).exists()
            for path in stale:  # nobody held these: reaped, lock files too
                assert not path.exists() and not path.with_name(path.name + LOCK_SUFFIX).exists()
        # The other host is gone now (its locks died with it): the next start reaps its leftovers.
        async with Session(workspace) as session:
            assert (await session.execute("2 + 2")).result == "4"
        for path in foreign:
            assert not path.exists() and not path.with_name(path.name + LOCK_SUFFIX).exists()
    finally:
        for path in [*foreign, *stale]:
            shutil.rmtree(path, ignore_errors=True)
            path.with_name(path.name + LOCK_SUFFIX).unlink(missing_ok=True)


async def test_a_directory_without_a_lock_is_never_reaped(workspace: Path) -> None:
    """Nothing proves such a directory's host is dead (an older version, another user): it stays."""
    path = Path(tempfile.gettempdir()) / f"{RUN_DIR_PREFIX}{_absent_pid()}-{secrets.token_hex(5)}"
    path.mkdir()
    try:
        async with Session(workspace) as session:
            assert (await session.execute("3")).result == "3"
        assert path.is_dir()
    finally:
        shutil.rmtree(path, ignore_errors=True)
