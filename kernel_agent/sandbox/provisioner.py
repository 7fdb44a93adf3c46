"""A jupyter_client kernel provisioner that launches the kernel inside the sandbox.

Being a provisioner (entry point ``kernel-agent-sandbox``) is what lets the
same confinement serve our own Session and any Jupyter frontend that opens
the kernel-agent kernelspec (JupyterLab, nbclient, nbconvert): jupyter_client
asks the provisioner to launch, signal and clean up the kernel.

Every launch gets a private run directory (mode 0700). Only its ``sandbox/``
subdirectory (connection file and ipc sockets) is visible to the kernel; the
kernel's log and the identity files stay host-only, so nothing the host
reads back can be swapped for a symlink by code in the kernel. The transport
is forced to ``ipc`` because the kernel shares no network with the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner
from traitlets import Dict, Unicode

from kernel_agent.errors import WorkspaceError
from kernel_agent.sandbox import bwrap, seccomp
from kernel_agent.sandbox.cgroups import SessionCgroup, create_session_cgroup
from kernel_agent.sandbox.policy import ResourceLimits, SandboxMode, SandboxPolicy

RUN_DIR_PREFIX = "kernel-agent-"
RUN_AS_ENV = "KERNEL_AGENT_RUN_AS"  # read by kernel_agent.kernel.identity

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
        "MPLCONFIGDIR": "/tmp/matplotlib",
        # IPython's profile directory would otherwise appear in the workspace (HOME).
        "IPYTHONDIR": "/tmp/ipython",
        # Native thread pools sized to the sandbox, and glibc arenas kept
        # few, so memory limits measure data rather than allocator slack.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
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


def enforcement_report(limits: ResourceLimits, cgroup: SessionCgroup) -> dict[str, str]:
    """How each limit is enforced, for the session metadata (never silent)."""
    report: dict[str, str] = {}
    for name, controller, fallback in (("memory_bytes", "memory", "rlimit AS (kernel process only)"),
                                       ("processes", "pids", "rlimit NPROC (per uid)")):
        if getattr(limits, name) is None:
            report[name] = "unlimited"
        elif controller in cgroup.enforced:
            report[name] = f"cgroup {cgroup.version}"
        elif name == "processes" and os.getuid() == 0:
            report[name] = "NOT ENFORCED: root ignores RLIMIT_NPROC and no pids cgroup is writable"
        else:
            report[name] = fallback
    for name in ("cpu_seconds", "file_size_bytes", "open_files"):
        report[name] = "unlimited" if getattr(limits, name) is None else "rlimit"
    report["tmp_size_bytes"] = "tmpfs size"
    report["cpu_share"] = f"cgroup {cgroup.version} (fair share per session)" if "cpu-share" in cgroup.enforced else "none"
    return report


def _hand_over(uid: int, paths: list[Path]) -> None:
    """Give the unprivileged sandbox uid what it must write (root hosts only).

    Only these directories (and the connection file) change owner: the
    workspace, the policy's writable paths, the socket directory. Files
    already inside keep theirs, so the kernel can read them (if their mode
    allows) but not change them.
    """
    for path in paths:
        os.chown(path, uid, uid)


def reap_stale_run_dirs() -> None:
    """Remove run directories of host processes that died without cleaning up."""
    for path in Path(tempfile.gettempdir()).glob(RUN_DIR_PREFIX + "*-*"):
        host_pid = path.name[len(RUN_DIR_PREFIX) :].split("-", 1)[0]
        if host_pid.isdigit() and not Path(f"/proc/{host_pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


class SandboxProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Launches an ipykernel inside bubblewrap with the session's policy."""

    policy = Dict(config=True, help="SandboxPolicy as a JSON object; empty means the default policy")
    workspace = Unicode("", config=True, help="writable working directory; default: the launch cwd")

    run_dir: Path | None = None
    log_path: Path | None = None
    sandbox_uid: int | None = None  # set when a root host runs the kernel as an unprivileged uid
    cgroup: SessionCgroup | None = None
    enforcement: dict[str, str] = {}

    @property
    def sandbox_policy(self) -> SandboxPolicy:
        """The policy as a typed object."""
        return SandboxPolicy.model_validate(self.policy or {})

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Prepare the run directory, cgroup and confined command line."""
        policy = self.sandbox_policy
        workspace = Path(self.workspace or kwargs.get("cwd") or os.getcwd())
        if not workspace.is_dir():
            raise WorkspaceError(f"workspace {workspace} is not an existing directory")
        bwrap_binary = bwrap.find_bwrap(policy.bwrap_path) if policy.mode is SandboxMode.BWRAP else None

        reap_stale_run_dirs()
        suffix = uuid.uuid4().hex[:10]
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-{suffix}-"))
        shared_dir = self.run_dir / "sandbox"
        shared_dir.mkdir()
        km = self.parent
        km.transport = "ipc"
        km.ip = str(shared_dir / "kernel")
        km.connection_file = str(shared_dir / "connection.json")
        kwargs = await super().pre_launch(**kwargs)

        limits = policy.limits
        self.cgroup = create_session_cgroup(suffix, limits.memory_bytes, limits.processes)
        self.enforcement = enforcement_report(limits, self.cgroup)
        inner_env = _inner_env(policy, workspace, _rlimits(limits, self.cgroup))
        command: list[str] = kwargs.pop("cmd")
        spec: dict[str, Any] = {"cgroups": [str(d) for d in self.cgroup.dirs]}
        if bwrap_binary is not None:
            if os.getuid() == 0:
                self.sandbox_uid = policy.unprivileged_uid
                _hand_over(policy.unprivileged_uid,
                           [workspace, *policy.writable_paths, shared_dir, Path(km.connection_file)])
                inner_env[RUN_AS_ENV] = str(policy.unprivileged_uid)
            bwrap.write_identity_files(self.run_dir, workspace, uid=self.sandbox_uid)
            program = seccomp.filter_program()
            spec["argv"] = bwrap.sandbox_argv(
                bwrap_binary, policy, workspace=workspace, run_dir=self.run_dir, shared_dir=shared_dir,
                inner_env=inner_env, command=command, run_as=self.sandbox_uid, seccomp=program is not None,
            )
            if program is not None:
                spec["seccomp"] = program.hex()
            self.enforcement["syscall_filter"] = (
                f"seccomp ({platform.machine()})" if program is not None
                else f"NONE: no seccomp filter is described for {platform.machine()}")
            self.enforcement["identity"] = (
                f"uid {self.sandbox_uid} (the host runs as root)" if self.sandbox_uid is not None
                else f"uid {os.getuid()} in a user namespace")
        else:
            spec.update(argv=command, env=inner_env)
        command = [sys.executable, "-I", "-S", str(_ENTER_SCRIPT), json.dumps(spec)]
        launch_env = {"PATH": "/usr/bin:/bin"}
        self.log_path = self.run_dir / "kernel.log"
        log = self.log_path.open("wb")
        kwargs.update(cmd=command, env=launch_env, cwd=str(workspace), stdout=log, stderr=log)
        return kwargs

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

    async def cleanup(self, restart: bool = False) -> None:
        """Remove the run directory and the cgroup once the kernel is gone."""
        await super().cleanup(restart=restart)
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.run_dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.run_dir)
