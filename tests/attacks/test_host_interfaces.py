"""Host kernel interfaces: /proc/sys, sysrq, /sys, clocks, devices, terminals, setuid.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from kernel_agent import Session

from .support import (
    TAG,
    HostBaseline,
    assert_host_healthy,
    assert_session_healthy,
    attack,
    cgroup_file,
    host_mountinfo,
    module_loop,
    read_sysctl,
    reported,
)

# --------------------------------------------------------------------------
# Host kernel interfaces: /proc/sys, sysrq, /sys, clocks, devices, terminals
# --------------------------------------------------------------------------



@pytest.mark.parametrize(
    "attack_kind",
    [
        pytest.param("core-pattern"),
        pytest.param("core-uses-pid"),
        "hostname",
        "sysrq-trigger",
    ],
)
@module_loop
async def test_host_kernel_settings_cannot_be_written(
    shared: Session, host_baseline: HostBaseline, attack_kind: str
) -> None:
    """Attack: write host sysctls through /proc/sys, sethostname, open /proc/sysrq-trigger. Host values unchanged."""
    watched = {"core-pattern": "kernel/core_pattern", "core-uses-pid": "kernel/core_uses_pid",
               "hostname": "kernel/hostname"}.get(attack_kind)
    original = read_sysctl(watched) if watched else None
    try:
        outcome = await attack(shared, """
            kind = P["kind"]
            results = {}
            if kind == "core-pattern":
                # Write back the value it already has: proves writability without changing the host.
                current = read_text("/proc/sys/kernel/core_pattern")
                results["write"] = attempt(write_text, "/proc/sys/kernel/core_pattern", current)
            elif kind == "core-uses-pid":
                current = read_text("/proc/sys/kernel/core_uses_pid").strip()
                results["write"] = attempt(write_text, "/proc/sys/kernel/core_uses_pid", "0" if current == "1" else "1")
            elif kind == "hostname":
                results["write"] = attempt(write_text, "/proc/sys/kernel/hostname", "pwned-by-sandbox")
                results["sethostname"] = libc("sethostname", b"pwned", _ctypes.c_size_t(5))
                results["setdomainname"] = libc("setdomainname", b"pwned", _ctypes.c_size_t(5))
            else:
                # Only ever open it: a write could reboot the host.
                results["open"] = attempt(lambda: os.close(os.open("/proc/sysrq-trigger", os.O_WRONLY)))
            report(results=results)
        """, kind=attack_kind)
        data = reported(outcome)
        if watched is not None:
            assert read_sysctl(watched) == original, f"the sandbox changed the host's {watched}"
        if attack_kind != "hostname":  # the kernel's own UTS namespace may be renamed; the host's may not
            assert not any(r["ok"] for r in data["results"].values()), data["results"]
    finally:
        if watched is not None and original is not None and read_sysctl(watched) != original:
            (Path("/proc/sys") / watched).write_text(original)  # undo the hole's effect on the host
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_sys_and_cgroup_limits_cannot_be_touched(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: reach /sys and the session's cgroup to lift its memory/pids limits. Host cgroup files unchanged."""
    watched = [f for f in (cgroup_file(shared, "pids.max"), cgroup_file(shared, "memory.limit_in_bytes"),
                           cgroup_file(shared, "memory.max")) if f is not None]
    before = {f: f.read_text() for f in watched}
    outcome = await attack(shared, """
        c = _ctypes
        os.makedirs("/tmp/cg", exist_ok=True)
        results = {
            "mount_sysfs": libc("mount", b"sysfs", b"/tmp/cg", b"sysfs", c.c_ulong(0), None),
            "mount_cgroup2": libc("mount", b"cgroup2", b"/tmp/cg", b"cgroup2", c.c_ulong(0), None),
            "mount_cgroup_v1": libc("mount", b"cgroup", b"/tmp/cg", b"cgroup", c.c_ulong(0), b"memory"),
        }
        for path in ("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                     "/sys/fs/cgroup/memory.max", "/sys/kernel/uevent_helper", "/sys/power/state"):
            results[path] = attempt(write_text, path, "max")
        results["cgroup_procs"] = attempt(write_text, "/sys/fs/cgroup/cgroup.procs", str(os.getpid()))
        report(results=results, sys_exists=os.path.exists("/sys"), own_cgroup=read_text("/proc/self/cgroup"))
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    assert not data["sys_exists"]
    assert {f: f.read_text() for f in watched} == before
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_clock_and_reboot_are_refused(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: set the host clock, settimeofday, reboot(2) (harmless CAD_OFF command). Refused; host clock intact."""
    wall_before, mono_before = time.time(), time.monotonic()
    outcome = await attack(shared, """
        import time
        c = _ctypes
        class Timeval(c.Structure):
            _fields_ = [("tv_sec", c.c_long), ("tv_usec", c.c_long)]
        future = Timeval(int(time.time()) + 10 * 365 * 86400, 0)
        results = {
            "clock_settime": attempt(time.clock_settime, time.CLOCK_REALTIME, time.time() + 86400),
            "settimeofday": libc("settimeofday", c.byref(future), None),
            "reboot_cad_off": libc("syscall", c.c_long(169), c.c_uint(0xfee1dead), c.c_uint(672274793), c.c_uint(0)),
        }
        report(results=results)
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    drift = (time.time() - wall_before) - (time.monotonic() - mono_before)
    assert abs(drift) < 5, f"the host's wall clock jumped by {drift:.1f} s"
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_device_nodes_cannot_be_created(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: mknod /dev/mem, /dev/kmsg and the host's root disk in the workspace and /tmp. Refused; none on host."""
    root_dev = os.stat("/").st_dev
    outcome = await attack(shared, """
        import stat
        nodes = {"mem": (stat.S_IFCHR, 1, 1), "kmsg": (stat.S_IFCHR, 1, 11),
                 "host-disk": (stat.S_IFBLK, P["major"], P["minor"])}
        results = {}
        for directory in (os.getcwd(), "/tmp", "/dev"):
            for name, (kind, major, minor) in nodes.items():
                path = f"{directory}/attack-{name}"
                results[path] = attempt(os.mknod, path, kind | 0o666, os.makedev(major, minor))
        def is_block_device(path):
            try:
                return stat.S_ISBLK(os.stat(path).st_mode)
            except OSError:
                return False
        visible = sorted(e for e in os.listdir("/dev") if is_block_device(f"/dev/{e}"))
        report(results=results, block_devices=visible)
    """, major=os.major(root_dev), minor=os.minor(root_dev))
    data = reported(outcome)
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    assert data["block_devices"] == []
    for entry in shared.workspace.rglob("*"):
        mode = entry.lstat().st_mode
        assert not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)), f"device node {entry} in the workspace"
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_terminal_injection_is_impossible(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: TIOCSTI on fds 0/1/2, /dev/tty and the sandbox init's fds. No terminal is reachable to inject into."""
    outcome = await attack(shared, """
        import fcntl, termios
        results = {}
        for fd in (0, 1, 2):
            results[f"fd{fd}"] = attempt(fcntl.ioctl, fd, termios.TIOCSTI, b"#")
        for path in ("/dev/tty", "/dev/console", "/proc/1/fd/0", "/proc/1/fd/1", "/proc/1/fd/2"):
            opened = attempt(os.open, path, os.O_RDWR | os.O_NOCTTY)
            if opened["ok"]:
                results[path] = attempt(fcntl.ioctl, opened["value"], termios.TIOCSTI, b"#")
                os.close(opened["value"])
            else:
                results[path] = opened
        report(results=results, ttys=[fd for fd in range(3) if os.isatty(fd)], sid=os.getsid(0))
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    assert data["ttys"] == []
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_setuid_binaries_grant_nothing(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: run the system's setuid binaries (su, mount). no_new_privs and nosuid mounts make them useless."""
    mounts_before = host_mountinfo()
    outcome = await attack(shared, """
        import stat, subprocess
        setuid = []
        for directory in ("/usr/bin", "/usr/sbin"):
            for name in os.listdir(directory):
                path = f"{directory}/{name}"
                if os.path.isfile(path) and os.stat(path).st_mode & stat.S_ISUID:
                    setuid.append(path)
        su = subprocess.run(["su", "-c", "grep Cap /proc/self/status"], capture_output=True, text=True, input="")
        mount = subprocess.run(["mount", "-t", "tmpfs", "none", "/tmp"], capture_output=True, text=True)
        status = read_text("/proc/self/status")
        report(setuid=setuid, su=su.returncode, mount=mount.returncode,
               no_new_privs="NoNewPrivs:\\t1" in status, cap_eff=[l for l in status.splitlines() if "CapEff" in l],
               nosuid=all("nosuid" in l.split()[5] for l in read_text("/proc/self/mountinfo").splitlines()))
    """)
    data = reported(outcome)
    assert data["no_new_privs"] and data["nosuid"]
    assert data["cap_eff"] == ["CapEff:\t0000000000000000"]
    assert data["su"] != 0 and data["mount"] != 0
    assert host_mountinfo() == mounts_before
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_setuid_root_binary_cannot_be_planted_in_the_workspace(
    shared: Session, host_baseline: HostBaseline
) -> None:
    """Attack: copy a binary into the workspace and chmod it setuid/setgid. The host must not see a setuid-root file."""
    planted = shared.workspace / f"rootshell-{TAG}"
    try:
        outcome = await attack(shared, """
            import shutil
            shutil.copy("/usr/bin/env", P["name"])
            report(chmod=attempt(os.chmod, P["name"], 0o6755), mode=oct(os.stat(P["name"]).st_mode))
        """, name=planted.name)
        reported(outcome)
        st = planted.stat()
        assert not (st.st_mode & stat.S_ISUID and st.st_uid == 0), f"setuid-root file on the host: {oct(st.st_mode)}"
        assert not (st.st_mode & stat.S_ISGID and st.st_gid == 0), f"setgid-root file on the host: {oct(st.st_mode)}"
    finally:
        planted.unlink(missing_ok=True)
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)
