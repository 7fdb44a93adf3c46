"""A jupyter_client kernel provisioner that launches the kernel inside the sandbox.

Being a provisioner (entry point ``kernel-agent-sandbox``) is what lets the
same confinement serve our own Session and any Jupyter frontend that opens
the kernel-agent kernelspec (JupyterLab, nbclient, nbconvert): jupyter_client
asks the provisioner to launch, signal and clean up the kernel.

Every kernel gets a private run directory (mode 0700). Only its ``sandbox/``
subdirectory (connection file and ipc sockets) is visible to the kernel; the
kernel's log and the identity files stay host-only, so nothing the host
reads back can be swapped for a symlink by code in the kernel. The transport
is forced to ``ipc`` because the kernel shares no network with the host.

A restart (jupyter_client's ``restart_kernel``: Jupyter Server's REST
restart and its automatic restart after a death) keeps the kernel's
endpoints, as a TCP kernel keeps its ports: the run directory, its
connection file path and socket paths, the uid lease and what was lent stay;
the old ``sandbox/`` directory, shaped by the dead kernel, is moved aside
and replaced by an empty one, the host's links are dropped, and the cgroup
is made afresh (see :meth:`SandboxProvisioner.cleanup`). Clients reconnect
by path (libzmq does it by itself) and reach the new kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import Dict, Unicode

from kernel_agent.errors import UnsafePathError, WorkspaceError
from kernel_agent.protocol.names import PYTHON_PATH_ENV
from kernel_agent.safe_fs import open_dir, open_subdir, remove_tree
from kernel_agent.sandbox import bwrap, hostlocks, pythonenv, scientific, seccomp
from kernel_agent.sandbox.cgroups import SessionCgroup, create_session_cgroup
from kernel_agent.sandbox.cgroups import remove_stale as remove_stale_cgroups
from kernel_agent.sandbox.ownership import Lent, give_back_all, hand_to, lend
from kernel_agent.sandbox.policy import ResourceLimits, SandboxMode, SandboxPolicy
from kernel_agent.sandbox.sockets import SOCKET_KEYS, link_sockets
from kernel_agent.sandbox.uids import UidLease, kill_uid_processes, lease_uid

RUN_DIR_PREFIX = "kernel-agent-"
RUN_AS_ENV = "KERNEL_AGENT_RUN_AS"  # read by kernel_agent.kernel.identity
SHARED_DIR, LINKS_DIR, HOME_DIR = "sandbox", "links", "home"  # in the run directory
#: Packages the host installs for the session (kernel_agent.packages), read-only to the kernel; in the run directory.
PACKAGES_DIR = "packages"
# Read by kernel_agent.kernel.replay: papermill fails a run on any error output, even a recorded one reproduced.
RUN_BY_ENV = "KERNEL_AGENT_RUN_BY"

# Runs between jupyter_client and bwrap: joins the cgroups, execs with a clean environment.
_ENTER_SCRIPT = Path(__file__).resolve().parent / "_enter.py"


def _inner_env(policy: SandboxPolicy, workspace: Path, rlimits: dict[str, int]) -> dict[str, str]:
    """The complete environment of the kernel: nothing is inherited from the host."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workspace.resolve()),
        "USER": "agent",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        # IPython's profile directory would otherwise appear in the workspace (HOME).
        "IPYTHONDIR": "/tmp/ipython",
        **scientific.kernel_env(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "KERNEL_AGENT_SANDBOX": policy.mode.value,
        "KERNEL_AGENT_WORKDIR": str(workspace.resolve()),
    }
    if rlimits:
        env["KERNEL_AGENT_RLIMITS"] = json.dumps(rlimits)
    env.update(policy.env)
    return env


def _rlimits(limits: ResourceLimits, cgroup: SessionCgroup) -> dict[str, int]:
    """rlimits for the kernel; memory and processes only where no cgroup enforces them."""
    wanted: dict[str, int | None] = {
        "RLIMIT_CPU": limits.cpu_seconds,
        "RLIMIT_FSIZE": limits.file_size_bytes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
    }
    if "memory" not in cgroup.enforced:
        wanted["RLIMIT_AS"] = limits.memory_bytes
    if "pids" not in cgroup.enforced:
        wanted["RLIMIT_NPROC"] = limits.processes
    return {name: value for name, value in wanted.items() if value is not None}


def enforcement_report(
    policy: SandboxPolicy, cgroup: SessionCgroup, sandbox_uid: int | None, leased: bool
) -> dict[str, str]:
    """How each limit is really enforced, for the session metadata (never silent)."""
    limits = policy.limits
    report: dict[str, str] = {}
    if limits.memory_bytes is None:
        report["memory_bytes"] = "unlimited"
    else:
        report["memory_bytes"] = (f"cgroup {cgroup.version}" if "memory" in cgroup.enforced
                                  else "rlimit AS (kernel process only)")
    if limits.processes is None:
        report["processes"] = "unlimited"
    elif "pids" in cgroup.enforced:
        report["processes"] = f"cgroup {cgroup.version}"
    elif sandbox_uid is not None and leased:
        report["processes"] = f"rlimit NPROC (uid {sandbox_uid}, this session only)"
    elif sandbox_uid is not None:
        report["processes"] = (f"rlimit NPROC (uid {sandbox_uid}, shared by every session that policy "
                               "runs as that uid)")
    elif os.getuid() == 0:
        report["processes"] = "NOT ENFORCED: root ignores RLIMIT_NPROC and no pids cgroup is writable"
    else:
        report["processes"] = (f"rlimit NPROC (uid {os.getuid()}, shared with every session and process "
                               "of the host user)")
    for name in ("cpu_seconds", "file_size_bytes", "open_files"):
        report[name] = "unlimited" if getattr(limits, name) is None else "rlimit"
    report["tmp_size_bytes"] = "tmpfs size"
    shared = "cpu-share" in cgroup.enforced
    report["cpu_share"] = f"cgroup {cgroup.version} (fair share per session)" if shared else "none"
    return report


def reap_stale_run_dirs() -> list[str]:
    """Remove run directories, temporary workspaces and cgroups that no live host holds (by their locks)."""
    return hostlocks.reap(on_reap=remove_stale_cgroups)


class SandboxProvisioner(LocalProvisioner):
    """Launches an ipykernel inside bubblewrap with the session's policy."""

    policy = Dict(config=True, help="SandboxPolicy as a JSON object; empty means the default policy")
    workspace = Unicode("", config=True, help=(
        "writable working directory, lent to the kernel; default: the launch directory, read-only, with a "
        "private writable home"))
    #: Longest wait for the kernel to bind its sockets after launch.
    socket_wait_seconds = 120.0

    run_dir: Path | None = None
    log_path: Path | None = None
    sandbox_uid: int | None = None  # set when a root host runs the kernel as an unprivileged uid
    cgroup: SessionCgroup | None = None
    enforcement: dict[str, str] = {}  # noqa: RUF012 - never mutated: pre_launch assigns a fresh dict first
    _lease: UidLease | None = None
    _lent: tuple[Lent, ...] = ()  # replaced by a list of this launch's in pre_launch
    #: cleanup(restart=True) kept the run directory (with a fresh sandbox/), the uid lease and the lent
    #: directories for the next pre_launch; a final cleanup removes them.
    _kept_for_restart = False

    @property
    def sandbox_policy(self) -> SandboxPolicy:
        """The policy as a typed object."""
        return SandboxPolicy.model_validate(self.policy or {})

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Prepare the run directory (a restart reuses it), cgroup and confined command line."""
        policy = self.sandbox_policy
        restart, self._kept_for_restart = self._kept_for_restart and self.run_dir is not None, False
        if not restart:
            self._lent, self.sandbox_uid = (), None
        launch_dir: Path | None = None
        if self.workspace:
            workspace = Path(self.workspace)
        else:  # started by a Jupyter frontend in a directory nobody gave us: read it, never write it
            launch_dir = Path(kwargs.get("cwd") or os.getcwd()).resolve()
            workspace = launch_dir
        if not workspace.is_dir():
            raise WorkspaceError(f"workspace {workspace} is not an existing directory")
        bwrap_binary = bwrap.find_bwrap(policy.bwrap_path) if policy.mode is SandboxMode.BWRAP else None
        env_dirs = pythonenv.checked(policy.python_env, [workspace, *policy.writable_paths])

        # A dead host's leftovers were shaped by its kernels (any size, any depth): reaped off the event loop.
        await asyncio.to_thread(reap_stale_run_dirs)
        if not restart:
            self.run_dir = hostlocks.make_held_dir(f"{RUN_DIR_PREFIX}{os.getpid()}-")
            if launch_dir is not None and self.run_dir.is_relative_to(launch_dir):
                self._remove_run_dir()
                raise WorkspaceError(
                    f"a kernel started in {launch_dir} would see the host's temporary directory read-only; start "
                    "it in a project directory, or give it a workspace (SandboxProvisioner.workspace)")
            (self.run_dir / SHARED_DIR).mkdir()
            (self.run_dir / LINKS_DIR).mkdir(mode=0o700)
            (self.run_dir / PACKAGES_DIR).mkdir(mode=0o755)
            if launch_dir is not None:
                (self.run_dir / HOME_DIR).mkdir(mode=0o700)
        assert self.run_dir is not None
        shared_dir = self.run_dir / SHARED_DIR
        if launch_dir is not None:
            workspace = self.run_dir / HOME_DIR  # a restarted kernel keeps its home, as it would keep a workspace
        km: Any = self.parent
        km.transport = "ipc"
        km.ip = str(shared_dir / "kernel")
        km.connection_file = str(shared_dir / "connection.json")
        kwargs = await super().pre_launch(**kwargs)

        limits = policy.limits
        self.cgroup = create_session_cgroup(self.run_dir.name, limits.memory_bytes, limits.processes)
        inner_env = _inner_env(policy, workspace, _rlimits(limits, self.cgroup))
        if launch_dir is not None:
            inner_env["KERNEL_AGENT_WORKDIR"] = str(launch_dir)
        python_dirs = self._python_dirs(policy, env_dirs, inner_env)
        if "papermill.execute" in sys.modules:  # this provisioner runs in the process that launches the kernel
            inner_env[RUN_BY_ENV] = "papermill"
        command: list[str] = kwargs.pop("cmd")
        spec: dict[str, Any] = {"cgroups": [str(d) for d in self.cgroup.dirs]}
        if bwrap_binary is not None:
            if os.getuid() == 0:
                if not restart:  # a restarted kernel keeps its uid: the files its predecessor made stay its own
                    self._become_unprivileged(policy, workspace if launch_dir is None else None)
                assert self.sandbox_uid is not None
                run_fd = open_dir(self.run_dir)
                try:
                    for name in (SHARED_DIR, f"{SHARED_DIR}/connection.json", *((HOME_DIR,) if launch_dir else ())):
                        parent, _, leaf = name.rpartition("/")
                        parent_fd = open_subdir(run_fd, parent) if parent else os.dup(run_fd)
                        try:
                            hand_to(parent_fd, leaf, self.sandbox_uid)
                        finally:
                            os.close(parent_fd)
                finally:
                    os.close(run_fd)
                inner_env[RUN_AS_ENV] = str(self.sandbox_uid)
            bwrap.write_identity_files(self.run_dir, workspace, uid=self.sandbox_uid)
            program = seccomp.filter_program()
            font_cache = await asyncio.to_thread(scientific.font_cache_for, self.run_dir,
                                                 [workspace, *policy.writable_paths])
            spec["argv"] = bwrap.sandbox_argv(
                bwrap_binary, policy, workspace=workspace, run_dir=self.run_dir, shared_dir=shared_dir,
                inner_env=inner_env, command=command, run_as=self.sandbox_uid, seccomp=program is not None,
                launch_dir=launch_dir, python_dirs=python_dirs,
                tmp_files={f"{scientific.MPLCONFIGDIR}/{font_cache.name}": font_cache} if font_cache else {},
            )
            if program is not None:
                spec["seccomp"] = program.hex()
        else:
            spec.update(argv=command, env=inner_env)
        self.enforcement = enforcement_report(policy, self.cgroup, self.sandbox_uid, self._lease is not None)
        if bwrap_binary is not None:
            program_ok = seccomp.filter_program() is not None
            self.enforcement["syscall_filter"] = (
                f"seccomp ({platform.machine()})" if program_ok
                else f"NONE: no seccomp filter is described for {platform.machine()}")
            self.enforcement["identity"] = (
                f"uid {self.sandbox_uid} (the host runs as root)" if self.sandbox_uid is not None
                else f"uid {os.getuid()} in a user namespace")
        self.enforcement["workspace"] = (
            f"{launch_dir} read-only (the launch directory); writable: a private home, {workspace}, removed "
            "at shutdown" if launch_dir is not None else f"{workspace} writable")
        command = [sys.executable, "-I", "-S", str(_ENTER_SCRIPT), json.dumps(spec)]
        launch_env = {"PATH": "/usr/bin:/bin"}
        self.log_path = self.run_dir / "kernel.log"
        log = self.log_path.open("ab" if restart else "wb")  # a restart keeps what the dead kernel said
        kwargs.update(cmd=command, env=launch_env, cwd=str(launch_dir or workspace), stdout=log, stderr=log)
        return kwargs

    def _python_dirs(self, policy: SandboxPolicy, env_dirs: pythonenv.EnvDirs, inner_env: dict[str, str]) -> list[Path]:
        """Put the session's package directory and the policy's python_env first on the kernel's import path.

        Returns what the sandbox binds read-only for them.
        """
        assert self.run_dir is not None
        packages = self.run_dir / PACKAGES_DIR
        inner_env[PYTHON_PATH_ENV] = os.pathsep.join(str(p) for p in [packages, *env_dirs.imported])
        return [packages, *env_dirs.bound]

    def _become_unprivileged(self, policy: SandboxPolicy, workspace: Path | None) -> None:
        """Choose the kernel's uid (a leased one unless the policy fixes it) and lend it what it must write."""
        if policy.unprivileged_uid is not None:
            self.sandbox_uid = policy.unprivileged_uid
        else:
            self._lease = lease_uid(*policy.uid_range)
            self.sandbox_uid = self._lease.uid
        for path in [*([workspace] if workspace is not None else []), *policy.writable_paths]:
            self._lent += (lend(path, self.sandbox_uid),)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        """Launch, then close our copy of the log file (the kernel holds its own)."""
        log = kwargs.get("stdout")
        try:
            return await super().launch_kernel(cmd, **kwargs)
        finally:
            if log is not None:
                log.close()

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the kernel's stdout/stderr (host-only file), for error messages."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, self.log_path.stat().st_size - limit))
            return log.read().decode(errors="replace").strip()

    async def post_launch(self, **kwargs: Any) -> None:
        """Once the kernel has bound its sockets, point every host connection at host-only links to them."""
        await super().post_launch(**kwargs)
        if self.run_dir is None:
            return
        km: Any = self.parent
        stem = Path(km.ip).name
        ports = {key: getattr(km, key) for key in SOCKET_KEYS}
        owner = self.sandbox_uid if self.sandbox_uid is not None else os.getuid()
        await link_sockets(self.run_dir / SHARED_DIR, self.run_dir / LINKS_DIR, stem, ports, owner,
                           lambda: self.process is not None and self.process.poll() is None,
                           self.socket_wait_seconds)
        km.ip = str(self.run_dir / LINKS_DIR / stem)
        # jupyter_client connected its control socket by the sandbox path before this hook: reconnect it.
        control = getattr(km, "_control_socket", None)
        if control is not None:
            control.close(linger=0)
            km._control_socket = None
            km._connect_control_socket()

    async def cleanup(self, restart: bool = False) -> None:
        """Once the kernel is gone: kill what is left of it, give back what it was lent, remove the rest.

        Before a restart (``restart=True``) the run directory, the uid lease
        and the lent directories are kept for the next launch, so the kernel
        keeps its connection file and socket paths; only what the dead kernel
        could shape (``sandbox/``) is replaced, and the host's links dropped.
        """
        await super().cleanup(restart=restart)
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.kill()
        # Scanning /proc, waiting for the cgroup to empty and walking the trees the kernel shaped (its
        # workspace, the sandbox/ dir) cost what the kernel chooses: never on the event loop all sessions share.
        await asyncio.to_thread(self._clean_host_side, restart)

    def _clean_host_side(self, restart: bool = False) -> None:
        if self._lease is not None:
            # Every process of a leased uid is this session's: none may outlive it (no cgroup needed).
            deadline = time.monotonic() + 2.0
            while kill_uid_processes(self._lease.uid) and time.monotonic() < deadline:
                time.sleep(0.01)
        if self.cgroup is not None:
            # Removed even before a restart: the next kernel gets a fresh one, whose oom_kill count is its own.
            self.cgroup.remove()
        if restart and self.run_dir is not None:
            try:
                _renew_for_restart(self.run_dir)
            except (OSError, UnsafePathError) as exc:  # the restarted kernel gets a new run directory (new endpoints)
                self.log.warning("kernel-agent: cannot keep the kernel's endpoints across the restart (%s)", exc)
            else:
                self._kept_for_restart = True
                return
        self._kept_for_restart = False
        give_back_all(list(self._lent))
        self._lent = ()
        self._remove_run_dir()
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def _remove_run_dir(self) -> None:
        if self.run_dir is not None:
            hostlocks.remove_held_dir(self.run_dir)


def _renew_for_restart(run_dir: Path) -> None:
    """Once the kernel is dead: an empty ``sandbox/`` at the same path, and no host link to its old sockets.

    Everything in the old ``sandbox/`` was the kernel's to shape (links to
    host files at the connection file's name, sockets bound anywhere), so
    none of it is reused or even opened: the directory is renamed aside and
    removed by descriptor, and a new one made in its place. Both happen in
    the host-only run directory, which no kernel can reach; a process of the
    old sandbox that somehow survived still sees the old directory, never the
    new one. The links are the host's own, removed so that no reconnection
    reaches a dead socket and a fresh link is made to each new socket.
    """
    run_fd = open_dir(run_dir)
    try:
        retired = f"{SHARED_DIR}.old-{secrets.token_hex(4)}"
        os.rename(SHARED_DIR, retired, src_dir_fd=run_fd, dst_dir_fd=run_fd)
        os.mkdir(SHARED_DIR, dir_fd=run_fd)  # as pre_launch makes it; handed to the sandbox uid there
        with contextlib.suppress(OSError):  # left for the final removal if a straggler still writes in it
            remove_tree(run_fd, retired)
        links_fd = open_subdir(run_fd, LINKS_DIR)
        try:
            for name in os.listdir(links_fd):
                os.unlink(name, dir_fd=links_fd)
        finally:
            os.close(links_fd)
    finally:
        os.close(run_fd)
