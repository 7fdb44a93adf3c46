"""Escapes: subprocesses, namespaces, mounts, ptrace, rlimits, kernel modules.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from kernel_agent import Session

from .support import (
    ROOT_SECRET_TEXT,
    SECRET_ENV_VALUE,
    SECRET_FILE_TEXT,
    HostBaseline,
    HostSecrets,
    assert_host_healthy,
    assert_session_healthy,
    attack,
    host_mountinfo,
    kernel_host_pid,
    module_loop,
    reported,
    sandbox_tree,
)

# --------------------------------------------------------------------------
# Escapes: subprocess, namespaces, mounts, ptrace, rlimits, modules
# --------------------------------------------------------------------------


@module_loop
async def test_shell_escape_leaks_nothing(
    shared: Session, host_secrets: HostSecrets, host_baseline: HostBaseline
) -> None:
    """Attack: os.system/subprocess/nsenter/unshare shells dump host secrets into a workspace file. It holds none."""
    root_secret = str(host_secrets.root_secret or "/root/.bashrc")
    outcome = await attack(shared, """
        import subprocess
        files = " ".join([P["secret_file"], P["root_secret"], "/etc/shadow"])
        commands = [
            f"cat {files}", "env", "cat /proc/1/environ", "cat /proc/*/environ", "ls -la /root /tmp /home",
            f"nsenter -t 1 -a cat {files}", f"nsenter -t 1 -m -p -n cat {files}", f"unshare -r cat {files}",
            f"unshare -U -m cat {files}", f"su -c 'cat {files}'", f"python3 -c 'print(open(\\"{P['secret_file']}\\").read())'",
        ]
        with open("leak.txt", "w") as out:
            for command in commands:
                out.write(f"$ {command}\\n")
                out.flush()
                subprocess.run(command, shell=True, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=30)
        status = os.system(f"cat {files} >> leak.txt 2>&1; sh -c 'cat /root/.* /root/*' >> leak.txt 2>&1")
        print(read_text("leak.txt"))
        report(size=os.path.getsize("leak.txt"), status=status)
    """, secret_file=str(host_secrets.secret_file), root_secret=root_secret)
    data = reported(outcome)
    leak = (shared.workspace / "leak.txt").read_text()
    assert data["size"] == len(leak.encode()) and "$ env" in leak  # the commands did run
    for needle in (SECRET_ENV_VALUE, SECRET_FILE_TEXT, ROOT_SECRET_TEXT):
        assert needle not in leak and needle not in outcome.text
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_new_namespaces_and_setns_are_refused(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: unshare(2)/setns(2) via ctypes and `unshare -U`, `unshare -r`. All refused; the kernel's namespaces stay."""
    mounts_before = host_mountinfo()
    outcome = await attack(shared, """
        import subprocess
        flags = {"user": 0x10000000, "mnt": 0x00020000, "net": 0x40000000, "pid": 0x20000000,
                 "ipc": 0x08000000, "uts": 0x04000000, "cgroup": 0x02000000, "time": 0x00000080}
        before = {n: os.readlink(f"/proc/self/ns/{n}") for n in sorted(os.listdir("/proc/self/ns"))}
        unshare = {n: libc("unshare", _ctypes.c_int(f)) for n, f in flags.items()}
        setns = {}
        for pid in ("1", "self"):
            listed = attempt(os.listdir, f"/proc/{pid}/ns")
            if not listed["ok"]:  # the sandbox init's namespaces are not reachable at all
                setns[f"{pid}/list"] = listed
                continue
            for n in sorted(os.listdir(f"/proc/{pid}/ns")):
                fd = attempt(os.open, f"/proc/{pid}/ns/{n}", os.O_RDONLY)
                if fd["ok"]:
                    setns[f"{pid}/{n}"] = libc("setns", _ctypes.c_int(fd["value"]), _ctypes.c_int(0))
                    os.close(fd["value"])
        cli = {c: subprocess.run(c, shell=True, capture_output=True).returncode for c in (
            "unshare -U true", "unshare -r true", "unshare -m true", "unshare -n true", "unshare -p -f true",
            "unshare -U -r -m -p -f --mount-proc true", "nsenter -t 1 -U -m true")}
        after = {n: os.readlink(f"/proc/self/ns/{n}") for n in sorted(os.listdir("/proc/self/ns"))}
        report(unshare=unshare, setns=setns, cli=cli, unchanged=before == after)
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["unshare"].values()), data["unshare"]
    assert data["setns"] and not any(r["ok"] for r in data["setns"].values()), data["setns"]
    assert all(code != 0 for code in data["cli"].values()), data["cli"]
    assert data["unchanged"]
    assert host_mountinfo() == mounts_before
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_mount_pivot_root_and_chroot_are_refused(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: mount tmpfs/proc/sysfs/cgroup, bind /, remount /usr rw, umount, pivot_root, chroot. All refused."""
    mounts_before = host_mountinfo()
    outcome = await attack(shared, """
        import subprocess
        os.makedirs("/tmp/mnt", exist_ok=True)
        c = _ctypes
        MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
        before = read_text("/proc/self/mountinfo")
        calls = {
            "tmpfs": libc("mount", b"none", b"/tmp/mnt", b"tmpfs", c.c_ulong(0), None),
            "proc": libc("mount", b"proc", b"/tmp/mnt", b"proc", c.c_ulong(0), None),
            "sysfs": libc("mount", b"sysfs", b"/tmp/mnt", b"sysfs", c.c_ulong(0), None),
            "cgroup": libc("mount", b"cgroup", b"/tmp/mnt", b"cgroup", c.c_ulong(0), b"pids"),
            "cgroup2": libc("mount", b"cgroup2", b"/tmp/mnt", b"cgroup2", c.c_ulong(0), None),
            "bind_root": libc("mount", b"/", b"/tmp/mnt", None, c.c_ulong(MS_BIND | MS_REC), None),
            "remount_usr_rw": libc("mount", None, b"/usr", None, c.c_ulong(MS_REMOUNT | MS_BIND), None),
            "umount_usr": libc("umount2", b"/usr", c.c_int(2)),
            "umount_proc": libc("umount2", b"/proc", c.c_int(2)),
            "pivot_root": libc("syscall", c.c_long(155), b"/tmp", b"/tmp/mnt"),
            "chroot": libc("chroot", b"/tmp"),
        }
        cli = {cmd: subprocess.run(cmd, shell=True, capture_output=True).returncode for cmd in (
            "mount -t tmpfs none /tmp/mnt", "mount --bind / /tmp/mnt", "umount -l /usr", "chroot /tmp true")}
        report(calls=calls, cli=cli, mounts_unchanged=read_text("/proc/self/mountinfo") == before)
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["calls"].values()), data["calls"]
    assert all(code != 0 for code in data["cli"].values()), data["cli"]
    assert data["mounts_unchanged"]
    assert host_mountinfo() == mounts_before
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_kernel_modules_cannot_be_loaded(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: init_module/finit_module/delete_module syscalls and insmod/modprobe. All refused; host modules unchanged."""
    modules = Path("/proc/modules")
    modules_before = modules.read_text() if modules.exists() else None
    outcome = await attack(shared, """
        import subprocess
        c = _ctypes
        image = c.create_string_buffer(b"\\x7fELF" + b"\\0" * 4092)
        fd = os.open("/dev/null", os.O_RDONLY)
        calls = {
            "init_module": libc("syscall", c.c_long(175), image, c.c_ulong(4096), b""),
            "finit_module": libc("syscall", c.c_long(313), c.c_int(fd), b"", c.c_int(0)),
            "delete_module": libc("syscall", c.c_long(176), b"ext4", c.c_int(0)),
        }
        os.close(fd)
        cli = {cmd: subprocess.run(cmd, shell=True, capture_output=True).returncode for cmd in (
            "insmod /tmp/evil.ko", "modprobe dummy", "rmmod ext4")}
        report(calls=calls, cli=cli)
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["calls"].values()), data["calls"]
    assert all(r["errno"] in ("EPERM", "ENOSYS", "EACCES") for r in data["calls"].values()), data["calls"]
    assert all(code != 0 for code in data["cli"].values()), data["cli"]
    assert (modules.read_text() if modules.exists() else None) == modules_before
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


def _tracer_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(platform.machine() != "x86_64", reason="ptrace request numbers are for x86_64")
@module_loop
async def test_ptrace_cannot_reach_host_processes(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: PTRACE_ATTACH the host test process's pid number, and the sandbox's pid 1. The host is never traced."""
    outer = sandbox_tree(shared)[0]
    outcome = await attack(shared, """
        c = _ctypes
        results = {}
        for name, pid in (("host", P["host_pid"]), ("host_parent", P["host_parent"]), ("sandbox_init", 1)):
            r = libc("ptrace", c.c_long(16), c.c_long(pid), None, None)
            if r["ok"]:
                os.waitpid(pid, 0x40000000)
                libc("ptrace", c.c_long(17), c.c_long(pid), None, None)
            results[name] = r
        class IoVec(c.Structure):
            _fields_ = [("base", c.c_void_p), ("len", c.c_size_t)]
        buffer = c.create_string_buffer(64)
        local, remote = IoVec(c.addressof(buffer), 64), IoVec(0x400000, 64)
        vm = libc("process_vm_readv", c.c_int(P["host_pid"]), c.byref(local), c.c_ulong(1), c.byref(remote),
                  c.c_ulong(1), c.c_ulong(0))
        report(results=results, process_vm_readv=vm)
    """, host_pid=os.getpid(), host_parent=os.getppid())
    data = reported(outcome)
    # ESRCH: the host pid does not exist in the sandbox; EPERM: seccomp refuses ptrace before the lookup.
    assert not data["results"]["host"]["ok"] and data["results"]["host"]["errno"] in ("ESRCH", "EPERM")
    assert not data["results"]["host_parent"]["ok"]
    assert not data["process_vm_readv"]["ok"]
    # Whatever happened to the sandbox's own init, it stayed inside: nothing on the host is traced.
    assert _tracer_of(os.getpid()) == 0 and _tracer_of(outer.pid) == 0
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_rlimits_cannot_be_raised(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: raise every hard rlimit of the kernel and of the sandbox init. Refused; /proc/<pid>/limits unchanged."""
    kernel_pid = kernel_host_pid(shared)
    limits_before = Path(f"/proc/{kernel_pid}/limits").read_text()
    outcome = await attack(shared, """
        import resource
        results = {}
        for name in ("RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_CORE", "RLIMIT_NPROC", "RLIMIT_MEMLOCK",
                     "RLIMIT_AS", "RLIMIT_STACK"):
            which = getattr(resource, name)
            for pid in (0, 1):
                current = attempt(resource.prlimit, pid, which)
                if not current["ok"]:  # the sandbox init is not even readable: nothing to raise
                    results[f"{pid}/{name}/read"] = current
                    continue
                soft, hard = resource.prlimit(pid, which)
                if hard == resource.RLIM_INFINITY:
                    continue
                results[f"{pid}/{name}/infinity"] = attempt(
                    resource.prlimit, pid, which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                results[f"{pid}/{name}/plus-one"] = attempt(resource.prlimit, pid, which, (hard + 1, hard + 1))
        report(results=results)
    """)
    data = reported(outcome)
    assert "0/RLIMIT_FSIZE/infinity" in data["results"] and "0/RLIMIT_NOFILE/plus-one" in data["results"]
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    assert Path(f"/proc/{kernel_pid}/limits").read_text() == limits_before
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)
