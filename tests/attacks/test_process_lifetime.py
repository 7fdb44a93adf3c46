"""Killing, signalling and surviving the session: nothing outlives close(), the host is never signalled.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from kernel_agent import CellStatus, Session

from .support import (
    HostBaseline,
    assert_host_healthy,
    assert_session_healthy,
    attack,
    describe,
    kill_survivors,
    reported,
    sandbox_tree,
    wait_until_gone,
)

# --------------------------------------------------------------------------
# Killing, signalling, surviving the session
# --------------------------------------------------------------------------


async def test_signals_cannot_reach_the_host(workspace: Path, host_baseline: HostBaseline) -> None:
    """Attack: kill the host pid, a host sentinel, the host's process group, -1, pid 1, then killpg(0). Host intact."""
    sentinel = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        async with Session(workspace, default_timeout=60) as session:
            outcome = await attack(session, """
                import signal
                results = {
                    "host_pid": attempt(os.kill, P["host_pid"], signal.SIGKILL),
                    "sentinel": attempt(os.kill, P["sentinel"], signal.SIGKILL),
                    "host_pgrp": attempt(os.killpg, P["host_pgrp"], signal.SIGKILL),
                    "sentinel_pgrp": attempt(os.killpg, P["sentinel"], signal.SIGKILL),
                    "init": attempt(os.kill, 1, signal.SIGKILL),
                    "everyone": attempt(os.kill, -1, signal.SIGKILL),
                }
                report(results=results)
            """, host_pid=os.getpid(), sentinel=sentinel.pid, host_pgrp=os.getpgrp())
            data = reported(outcome)["results"]
            for name in ("host_pid", "sentinel", "host_pgrp", "sentinel_pgrp"):
                assert not data[name]["ok"] and data[name]["errno"] == "ESRCH", (name, data[name])
            await assert_session_healthy(session)  # kill(-1) and kill(1) stayed inside and spared the kernel
            suicide = await session.execute("import os, signal\nos.killpg(0, signal.SIGKILL)")
            assert suicide.status is CellStatus.KERNEL_DIED and suicide.kernel_restarted, describe(suicide)
            await assert_session_healthy(session)
        assert sentinel.poll() is None, "the host sentinel process was killed from the sandbox"
    finally:
        sentinel.kill()
        sentinel.wait()
    assert_host_healthy(host_baseline)


async def test_daemonized_process_does_not_outlive_the_session(workspace: Path, host_baseline: HostBaseline) -> None:
    """Attack: double-fork, setsid, ignore SIGHUP/SIGTERM, clear PDEATHSIG, keep writing. Gone once the session closes."""
    heartbeat = workspace / "heartbeat.txt"
    session = await Session(workspace, default_timeout=60).start()
    procs: list[psutil.Process] = []
    try:
        outcome = await attack(session, """
            import signal, time
            pid = os.fork()
            if pid == 0:
                try:
                    os.setsid()
                    if os.fork() == 0:
                        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                            signal.signal(sig, signal.SIG_IGN)
                        libc("prctl", _ctypes.c_int(1), _ctypes.c_ulong(0))  # PR_SET_PDEATHSIG = 0
                        while True:
                            with open(P["heartbeat"], "a") as f:
                                f.write("x")
                            time.sleep(0.05)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
            time.sleep(0.3)
            report(beating=os.path.getsize(P["heartbeat"]) > 0)
        """, heartbeat=str(heartbeat))
        assert reported(outcome)["beating"]
        procs = sandbox_tree(session)
        assert len(procs) >= 4  # bwrap, its init, the kernel and the daemon
        await assert_session_healthy(session)
        await session.close()
        survivors = wait_until_gone(procs)
        assert survivors == [], f"sandbox processes survived the session: {survivors}"
        size = heartbeat.stat().st_size
        time.sleep(0.5)
        assert heartbeat.stat().st_size == size, "something still writes into the workspace after close"
    finally:
        await session.close()
        kill_survivors(procs)
    assert_host_healthy(host_baseline)


PID1_HIJACK = r'''
# Hijack the sandbox's init (bwrap, pid 1): attach with ptrace, make it run
# prctl(PR_SET_PDEATHSIG, 0) so it no longer dies with the host-side bwrap, detach.
c = _ctypes
c_ptrace = _libc.ptrace
c_ptrace.restype = c.c_long
c_ptrace.argtypes = [c.c_long, c.c_long, c.c_void_p, c.c_void_p]
PTRACE_SINGLESTEP, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_ATTACH, PTRACE_DETACH = 9, 12, 13, 16, 17
class Regs(c.Structure):
    _fields_ = [(n, c.c_ulonglong) for n in (
        "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
        "fs_base gs_base ds es fs gs").split()]
def pt(request, data=None):
    if c_ptrace(request, 1, None, data) == -1:
        raise OSError(c.get_errno(), f"ptrace({request})")
steps = {}
try:
    regions = [line.split() for line in open("/proc/1/maps")]
    pt(PTRACE_ATTACH)
    steps["attached"] = True
    os.waitpid(1, 0x40000000)
    syscall_insn = None
    with open("/proc/1/mem", "rb") as mem:
        for fields in regions:
            if "x" in fields[1]:
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                mem.seek(lo)
                found = mem.read(hi - lo).find(b"\x0f\x05")
                if found >= 0:
                    syscall_insn = lo + found
                    break
    saved = Regs()
    pt(PTRACE_GETREGS, c.addressof(saved))
    regs = Regs.from_buffer_copy(saved)
    regs.rax, regs.orig_rax, regs.rip, regs.rdi, regs.rsi = 157, 2**64 - 1, syscall_insn, 1, 0  # prctl(PDEATHSIG, 0)
    pt(PTRACE_SETREGS, c.addressof(regs))
    pt(PTRACE_SINGLESTEP)
    os.waitpid(1, 0x40000000)
    out = Regs()
    pt(PTRACE_GETREGS, c.addressof(out))
    steps["prctl"] = c.c_longlong(out.rax).value
    pt(PTRACE_SETREGS, c.addressof(saved))
    pt(PTRACE_DETACH)
    steps["detached"] = True
except OSError as exc:
    steps["error"] = str(exc)
report(steps=steps)
'''


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the register layout injected is x86_64's")
async def test_hijacked_sandbox_init_does_not_outlive_the_session(
    workspace: Path, host_baseline: HostBaseline
) -> None:
    """Attack: ptrace the sandbox's pid 1 and clear its parent-death signal. Every sandbox process still ends at close."""
    session = await Session(workspace, default_timeout=60).start()
    procs: list[psutil.Process] = []
    try:
        await session.execute("import subprocess\nchild = subprocess.Popen(['sleep', '300'])")
        procs = sandbox_tree(session)
        outcome = await attack(session, PID1_HIJACK)
        reported(outcome)
        await assert_session_healthy(session)
        await session.close()
        survivors = wait_until_gone(procs, timeout=5)
        assert survivors == [], f"sandbox processes survived Session.close(): {[p.pid for p in survivors]}"
    finally:
        await session.close()
        kill_survivors(procs)
    assert_host_healthy(host_baseline)
