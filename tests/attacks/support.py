"""What the attack tests share: running hostile code in a kernel and observing the host afterwards.

Every test runs hostile code in a kernel and then asserts what must hold on
the host afterwards: host files and sysctls unchanged, secrets never in any
output, other sessions untouched, the host process healthy and the session
still answering (or restarted and answering, after a kernel death).

Cheap read-only attacks share one module-scoped session (``shared``); attacks
that damage, exhaust or kill their kernel get a session of their own, with
small resource limits so they are fast.

Attacks that currently succeed are real holes in the sandbox. They are marked
``xfail(strict=True, reason="HOLE: ...")`` so the suite stays green while they
are open and fails loudly (XPASS) once they are fixed; the reason names the
hole and the proposed fix.

The tests look at a few private attributes of Session (``_kernel``, the
provisioner's run dir, process and cgroup) to find the sandbox's host
processes and cgroup files; there is no public API for that yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from kernel_agent import CellResult, CellStatus, ResourceLimits, Session
from kernel_agent.sandbox.provisioner import SandboxProvisioner

MiB = 1024**2
SECRET_ENV_NAME = "ANTHROPIC_API_KEY"
SECRET_ENV_VALUE = f"sk-test-secret-{uuid.uuid4().hex}"
SECRET_FILE_TEXT = f"host-file-secret-{uuid.uuid4().hex}"
ROOT_SECRET_TEXT = f"root-home-secret-{uuid.uuid4().hex}"
TAG = uuid.uuid4().hex[:12]
REPO = Path(__file__).resolve().parents[2]

MEMORY_LIMIT, PROCESS_LIMIT, TMP_LIMIT, FILE_SIZE_LIMIT = 512 * MiB, 64, 16 * MiB, 8 * MiB
SMALL_LIMITS = ResourceLimits(
    memory_bytes=MEMORY_LIMIT, processes=PROCESS_LIMIT, tmp_size_bytes=TMP_LIMIT, file_size_bytes=FILE_SIZE_LIMIT
)

module_loop = pytest.mark.asyncio(loop_scope="module")

# Files and sysctls no attack may change. Files the project's engineers edit
# (kernel_agent/, tests/, pyproject.toml) are not here: they change legitimately.
SENSITIVE_FILES = [
    Path(p)
    for p in ("/etc/shadow", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/hostname", "/usr/bin/env", os.__file__)
]
WATCHED_SYSCTLS = ["kernel/core_pattern", "kernel/core_uses_pid", "kernel/hostname"]


# --------------------------------------------------------------------------
# Running attack code inside the kernel
# --------------------------------------------------------------------------

PRELUDE = r'''
import ctypes as _ctypes, errno as _errno, json as _json, os, sys
P = _json.loads(__PARAMS__)

def report(**data):
    """Hand the attack's findings to the host (one marked JSON line)."""
    print("\n@@ATTACK-RESULT@@" + _json.dumps(data, default=repr), flush=True)

def attempt(fn, *args, **kwargs):
    """Run one step of the attack; never raise, say what happened."""
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        code = getattr(exc, "errno", None)
        return {"ok": False, "error": type(exc).__name__, "errno": _errno.errorcode.get(code) if code else None,
                "detail": str(exc)[:300]}
    if not isinstance(value, (str, int, float, bool, type(None))):
        value = repr(value)[:300]
    return {"ok": True, "value": value}

_libc = _ctypes.CDLL(None, use_errno=True)

def libc(name, *args):
    """Call a libc function directly (the syscall the attacker wants, no Python guard rails)."""
    fn = getattr(_libc, name)
    fn.restype = _ctypes.c_long if name in ("syscall", "ptrace") else _ctypes.c_int
    _ctypes.set_errno(0)
    ret = fn(*args)
    err = _ctypes.get_errno()
    return {"ok": ret != -1, "ret": ret, "errno": _errno.errorcode.get(err) if ret == -1 else None}

def read_text(path, limit=1 << 20):
    with open(path, "rb") as f:
        return f.read(limit).decode(errors="replace")

def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)
    return True
'''

RESULT_MARK = "@@ATTACK-RESULT@@"


@dataclass
class Outcome:
    """A cell's result plus the findings the attack code reported."""

    cell: CellResult
    data: dict[str, Any]

    @property
    def text(self) -> str:
        """Everything the kernel sent back, for leak scans."""
        parts = [self.cell.stdout, self.cell.stderr, self.cell.result or ""]
        if self.cell.error is not None:
            parts += [self.cell.error.ename, self.cell.error.evalue, *self.cell.error.traceback]
        return "\n".join(parts)


def describe(cell: CellResult) -> str:
    """A short description of a cell result for assertion messages."""
    error = cell.error
    detail = f"{error.ename}: {error.evalue}\n{error.plain_traceback[-2000:]}" if error else ""
    return f"status={cell.status.value} result={cell.result!r} stdout={cell.stdout[-1500:]!r} {detail}"


async def attack(session: Session, code: str, *, timeout: float | None = 60, **params: Any) -> Outcome:
    """Run attack ``code`` in the kernel with ``P`` = params; return its result and report."""
    source = PRELUDE.replace("__PARAMS__", repr(json.dumps(params))) + textwrap.dedent(code)
    cell = await session.execute(source, timeout=timeout)
    data: dict[str, Any] = {}
    for line in cell.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            data = json.loads(line[len(RESULT_MARK):])
    return Outcome(cell, data)


def reported(outcome: Outcome) -> dict[str, Any]:
    """The attack's report; fail with the cell's output if it did not get that far."""
    assert outcome.data, f"the attack code did not report: {describe(outcome.cell)}"
    return outcome.data


# --------------------------------------------------------------------------
# Host-side observation
# --------------------------------------------------------------------------


def fingerprint(path: Path) -> tuple[int, int, int, int, str] | None:
    """(mode, uid, size, mtime, sha256) of a host file, or None if it does not exist."""
    try:
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    except FileNotFoundError:
        return None
    return (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, digest)


def read_sysctl(name: str) -> str | None:
    """A host sysctl's value as the host sees it."""
    try:
        return (Path("/proc/sys") / name).read_text()
    except OSError:
        return None


@dataclass
class HostBaseline:
    """Fingerprints of host state taken before the attacks."""

    files: dict[Path, tuple[int, int, int, int, str] | None] = field(default_factory=dict)
    sysctls: dict[str, str | None] = field(default_factory=dict)
    hostname: str = ""

    @classmethod
    def take(cls) -> HostBaseline:
        return cls({p: fingerprint(p) for p in SENSITIVE_FILES}, {s: read_sysctl(s) for s in WATCHED_SYSCTLS},
                   socket.gethostname())

    def changes(self) -> list[str]:
        found = [f"file {p} changed" for p, fp in self.files.items() if fingerprint(p) != fp]
        found += [f"sysctl {s} changed" for s, v in self.sysctls.items() if read_sysctl(s) != v]
        if socket.gethostname() != self.hostname:
            found.append("hostname changed")
        return found


def assert_host_healthy(baseline: HostBaseline) -> None:
    """The host can still start processes (a fork bomb that leaked would make this fail), and no sensitive file or
    sysctl changed."""
    subprocess.run(["true"], check=True, timeout=60)
    assert baseline.changes() == []


async def assert_session_healthy(session: Session) -> None:
    """The session still answers a trivial cell correctly."""
    cell = await session.execute("1 + 1", timeout=30)
    assert cell.status is CellStatus.OK and cell.result == "2", describe(cell)


def provisioner_of(session: Session) -> SandboxProvisioner:
    """The provisioner that launched the session's current kernel (private API)."""
    kernel = session._kernel
    assert kernel is not None
    return kernel.provisioner


def sandbox_tree(session: Session) -> list[psutil.Process]:
    """Every host process of the session's current sandbox: bwrap, its init and all descendants."""
    process = provisioner_of(session).process
    assert process is not None
    outer = psutil.Process(process.pid)
    return [outer, *outer.children(recursive=True)]


def kernel_host_pid(session: Session) -> int:
    """The host pid of the ipykernel process inside the session's sandbox."""
    for proc in sandbox_tree(session):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.cmdline()
            if any("kernel_agent.kernel" in part for part in cmdline) and "bwrap" not in cmdline[0]:
                return proc.pid
    raise AssertionError("no kernel process found in the sandbox")


def cgroup_file(session: Session, name: str) -> Path | None:
    """A file of the session's cgroup (e.g. pids.max), if a cgroup enforces it."""
    cgroup = provisioner_of(session).cgroup
    for directory in cgroup.dirs if cgroup is not None else []:
        if (directory / name).exists():
            return directory / name
    return None


def alive(proc: psutil.Process) -> bool:
    """Whether a host process still runs (zombies count as gone)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_until_gone(procs: list[psutil.Process], timeout: float = 8.0) -> list[psutil.Process]:
    """Wait for processes to end; return the ones still running."""
    deadline = time.monotonic() + timeout
    while (survivors := [p for p in procs if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return survivors


def kill_survivors(procs: list[psutil.Process]) -> None:
    """Clean up sandbox processes this test started that escaped the session's cleanup."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if alive(proc):
                proc.kill()


def host_mountinfo() -> list[str]:
    """The host's mount table (mount ids and points, without counters)."""
    return sorted(" ".join(line.split()[:5]) for line in Path("/proc/self/mountinfo").read_text().splitlines())


@dataclass
class HostSecrets:
    """Secrets planted on the host before the shared session starts."""

    secret_file: Path
    root_secret: Path | None
    host_tmp_dir: Path
    host_tmp_sentinel: Path
