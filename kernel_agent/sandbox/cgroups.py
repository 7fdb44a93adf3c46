"""Per-session cgroups: the memory and process limits that cover the whole sandbox.

Each sandbox also gets its own ``cpu`` cgroup (default weight) where one is
writable, so CPU time is shared fairly between sessions rather than between
processes: a session that starts 60 busy processes gets one session's share.

rlimits are per process (and RLIMIT_NPROC is not enforced for root), so the
memory and process-count limits are put on a cgroup that the sandbox is
started in. cgroup v1 (a writable ``memory`` and ``pids`` hierarchy) and v2
(a delegated subtree with those controllers enabled) are both used where
writable. Where neither is, the caller falls back to rlimits and records
that in the session metadata.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "kernel-agent-"
#: ``KERNEL_AGENT_CGROUPS=off`` makes every session fall back to rlimits (what a host without a
#: writable cgroup gets), for tests and for hosts whose cgroups misbehave; the metadata says so.
DISABLE_ENV = "KERNEL_AGENT_CGROUPS"


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of every cgroup filesystem."""
    result = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                result.append((parts[1], parts[2], set(parts[3].split(","))))
    return result


def _own_paths() -> dict[str, str]:
    """Controller name (or "" for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


@dataclass
class SessionCgroup:
    """The cgroup directories of one sandbox and the limits written to them."""

    dirs: list[Path] = field(default_factory=list)
    version: str = ""
    enforced: list[str] = field(default_factory=list)

    def oom_killed(self) -> bool:
        """Whether the memory limit has killed a process in this cgroup."""
        for directory in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError):
                    for line in (directory / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
        return False

    def kill_all(self, timeout: float = 2.0) -> None:
        """SIGKILL every process still in the cgroup.

        The sandbox normally dies with bwrap (its pid 1), but a process that
        escaped that (say, by ptrace-clearing a parent-death signal) is still
        in the cgroup it was started in, and cannot leave it.
        """
        deadline = time.monotonic() + timeout
        for directory in self.dirs:
            if (directory / "cgroup.kill").exists():  # v2: the kernel does it atomically
                with contextlib.suppress(OSError):
                    (directory / "cgroup.kill").write_text("1")
            while time.monotonic() < deadline:
                try:
                    pids = [int(p) for p in (directory / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)

    def remove(self, timeout: float = 2.0) -> None:
        """Kill what is left in the cgroups, then remove the directories."""
        self.kill_all(timeout)
        deadline = time.monotonic() + timeout
        for directory in self.dirs:
            while directory.exists():
                try:
                    directory.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)


def _parents(controllers: list[str]) -> list[Path]:
    """The cgroup directories this process's session cgroups are made in (v2 first, then v1 per controller)."""
    own = _own_paths()
    found: list[Path] = []
    for mount, fstype, options in _mounts():
        if fstype == "cgroup2" and "" in own:
            found.append(Path(mount) / own[""].lstrip("/"))
        for controller in controllers:
            if fstype == "cgroup" and controller in options and controller in own:
                found.append(Path(mount) / own[controller].lstrip("/"))
    return found


def remove_stale(name: str) -> None:
    """Remove the cgroups called ``name`` (a dead host's: the caller holds its lock), killing what is left in them.

    Stale cgroups are found through the run directory's lock (see
    ``hostlocks``), never through a pid: a pid of another pid namespace means
    nothing here.
    """
    dirs = [parent / name for parent in _parents(["memory", "pids", "cpu"]) if (parent / name).is_dir()]
    if dirs:
        SessionCgroup(dirs=dirs).remove()


def _v1_dir(controller: str, name: str) -> Path | None:
    own = _own_paths().get(controller)
    for mount, fstype, options in _mounts():
        if fstype == "cgroup" and controller in options and own is not None:
            parent = Path(mount) / own.lstrip("/")
            if _writable_dir(parent):
                child = parent / name
                with contextlib.suppress(OSError):
                    child.mkdir()
                    return child
    return None


def _v2_dir(name: str, controllers: list[str]) -> Path | None:
    own = _own_paths().get("")
    for mount, fstype, _ in _mounts():
        if fstype != "cgroup2" or own is None:
            continue
        parent = Path(mount) / own.lstrip("/")
        enabled = set((parent / "cgroup.subtree_control").read_text().split()) if parent.is_dir() else set()
        if not set(controllers) <= enabled or not _writable_dir(parent):
            continue
        child = parent / name
        with contextlib.suppress(OSError):
            child.mkdir()
            return child
    return None


def create_session_cgroup(full_name: str, memory_bytes: int | None, processes: int | None) -> SessionCgroup:
    """Create cgroups called ``full_name`` (the run directory's name) with the given limits; never raises."""
    cgroup = SessionCgroup()
    if os.environ.get(DISABLE_ENV) == "off":
        return cgroup
    wanted = [c for c, limit in (("memory", memory_bytes), ("pids", processes)) if limit is not None]
    if not wanted:
        return cgroup
    v2 = _v2_dir(full_name, wanted)
    if v2 is not None:
        cgroup.dirs, cgroup.version = [v2], "v2"
        if "cpu" in (v2.parent / "cgroup.subtree_control").read_text().split():
            cgroup.enforced.append("cpu-share")
        _write_limits(cgroup, {"memory": (v2, "memory.max"), "pids": (v2, "pids.max")}, memory_bytes, processes)
        return cgroup
    targets: dict[str, tuple[Path, str]] = {}
    for controller, file in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max")):
        if controller in wanted and (directory := _v1_dir(controller, full_name)) is not None:
            cgroup.dirs.append(directory)
            targets[controller] = (directory, file)
    if cgroup.dirs and (cpu := _v1_dir("cpu", full_name)) is not None:
        cgroup.dirs.append(cpu)
        cgroup.enforced.append("cpu-share")
    if cgroup.dirs:
        cgroup.version = "v1"
        _write_limits(cgroup, targets, memory_bytes, processes)
    return cgroup


def _write_limits(
    cgroup: SessionCgroup, targets: dict[str, tuple[Path, str]], memory_bytes: int | None, processes: int | None
) -> None:
    for controller, limit in (("memory", memory_bytes), ("pids", processes)):
        if limit is None or controller not in targets:
            continue
        directory, file = targets[controller]
        try:
            (directory / file).write_text(str(limit))
            if controller == "memory":
                # Swap must not extend the limit (v1: memory+swap; v2: swap alone).
                for swap_file, value in (("memory.memsw.limit_in_bytes", limit), ("memory.swap.max", 0)):
                    if (directory / swap_file).exists():
                        with contextlib.suppress(OSError):
                            (directory / swap_file).write_text(str(value))
            cgroup.enforced.append(controller)
        except OSError:
            continue
