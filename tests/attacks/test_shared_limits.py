"""Per-session limits are per session without a cgroup: a fork bomb in one session starves only itself.

Root hosts only: cgroups are switched off (``KERNEL_AGENT_CGROUPS=off``), so
``RLIMIT_NPROC`` is the only process limit, and it counts per uid; each
session runs as a uid of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel_agent import ResourceLimits, SandboxPolicy, Session
from kernel_agent.sandbox.cgroups import DISABLE_ENV

# serial: a fork bomb without a cgroup would starve tests running beside it (tests/run_suite.py).
pytestmark = [pytest.mark.skipif(os.getuid() != 0, reason="a uid per session is what a root host does"),
              pytest.mark.serial]

# Starts threads until the limit refuses one (bounded by it); they stay alive, blocked.
BOMB = """
import threading
stop = threading.Event()
started = 0
while started < 10_000:
    try:
        threading.Thread(target=stop.wait, daemon=True).start()
    except RuntimeError:
        break
    started += 1
open('bomb.txt', 'w').write(str(started))
print(started)
"""
THREADS = """
import threading
done = threading.Barrier(21)
threads = [threading.Thread(target=done.wait) for _ in range(20)]
for t in threads:
    t.start()
done.wait()
print('ok', len(threads))
"""


async def test_a_thread_bomb_does_not_starve_other_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "off")
    policy = SandboxPolicy(limits=ResourceLimits(processes=64))
    workspaces = [tmp_path / name for name in ("bomb", "victim", "late")]
    for workspace in workspaces:
        workspace.mkdir()
    async with Session(workspaces[0], policy=policy) as bomb, Session(workspaces[1], policy=policy) as victim:
        uids = set()
        for session in (bomb, victim):
            enforced = session.metadata()["sandbox"]["limits_enforced_by"]["processes"]
            uid = session._kernel.provisioner.sandbox_uid  # type: ignore[union-attr]
            assert enforced == f"rlimit NPROC (uid {uid}, this session only)"
            uids.add(uid)
        assert len(uids) == 2
        exhausted = await bomb.execute(BOMB, timeout=60)
        assert exhausted.ok and 0 < int(exhausted.stdout) < 64  # refused at the session's own limit
        assert (await victim.execute(THREADS, timeout=60)).stdout == "ok 20\n"
        async with Session(workspaces[2], policy=policy) as late:  # a new session starts and runs threads
            assert (await late.execute(THREADS, timeout=60)).stdout == "ok 20\n"
    # What the bomb's uid made in its workspace is the workspace owner's again.
    assert (workspaces[0] / "bomb.txt").stat().st_uid == 0 and workspaces[0].stat().st_uid == 0
