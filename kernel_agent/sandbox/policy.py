"""What a session's kernel may see and use: the typed, documented sandbox policy."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kernel_agent.errors import PythonEnvironmentError

GiB = 1024**3
MiB = 1024**2


class SandboxMode(str, Enum):
    """How the kernel process is confined."""

    #: bubblewrap: own user, pid, network, ipc, uts and mount namespaces.
    BWRAP = "bwrap"
    #: No OS sandbox at all: the kernel runs as a plain host process. Only
    #: resource limits apply. Must be chosen explicitly and is recorded as such.
    NONE = "none"


class ResourceLimits(BaseModel):
    """Per-session resource limits. ``None`` means "no limit" for that resource.

    Defaults are generous enough for numpy/pandas work on a few GB of data.
    Memory and process limits use a cgroup where one is writable (so they
    cover every process in the sandbox); otherwise rlimits on the kernel.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_bytes: int | None = Field(default=4 * GiB, ge=256 * MiB)
    cpu_seconds: int | None = Field(default=6 * 3600, ge=1)
    processes: int | None = Field(default=512, ge=16, description="processes and threads")
    file_size_bytes: int | None = Field(default=8 * GiB, ge=MiB)
    open_files: int | None = Field(default=4096, ge=64)
    tmp_size_bytes: int = Field(default=1 * GiB, ge=MiB, description="size of the private /tmp")


class SandboxPolicy(BaseModel):
    """What a session's kernel may see and do.

    The default is the strict policy: no network, a clean environment, system
    paths read-only, only the workspace and the session's private run
    directory writable. Everything that loosens it is listed by
    :meth:`loosenings` and recorded in the session's metadata.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: SandboxMode = SandboxMode.BWRAP
    network: bool = Field(default=False, description="share the host network (opt-in)")
    readonly_paths: tuple[Path, ...] = ()
    writable_paths: tuple[Path, ...] = ()
    env: dict[str, str] = Field(
        default_factory=dict, description="extra variables set inside the kernel (host ones never leak)"
    )
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    python_env: Path | None = Field(
        default=None,
        description="a venv or package directory the host prepared: bound read-only, first on the kernel's "
        "import path (see kernel_agent.sandbox.pythonenv)",
    )
    bwrap_path: Path | None = Field(default=None, description="bwrap binary; default: system >= 0.10, else bundled")
    unprivileged_uid: int | None = Field(
        default=None, ge=1,
        description="one fixed uid and gid for every kernel when the host runs as root; default: a uid of "
        "its own for each session, from uid_range",
    )
    uid_range: tuple[int, int] = Field(
        default=(2_000_000, 2_065_535),
        description="uids (first, last) leased one per session when the host runs as root; none may belong "
        "to a real user: files and processes of a leased uid are taken to be the session's",
    )

    @model_validator(mode="after")
    def _check_uid_range(self) -> SandboxPolicy:
        first, last = self.uid_range
        if not 1000 <= first <= last:
            raise ValueError("uid_range must be (first, last) with 1000 <= first <= last")
        if self.python_env is not None and not self.python_env.is_absolute():
            raise PythonEnvironmentError(f"python_env {self.python_env} must be an absolute path")
        return self

    def loosenings(self) -> list[str]:
        """Human-readable list of every way this policy is weaker than the default."""
        found: list[str] = []
        if self.mode is SandboxMode.NONE:
            found.append("no OS sandbox (mode=none): the kernel can read and write what the host user can")
        if self.network:
            found.append("network access is shared with the host")
        found.extend(f"extra read-only path {p}" for p in self.readonly_paths)
        found.extend(f"extra writable path {p}" for p in self.writable_paths)
        if self.python_env is not None:
            found.append(f"Python environment {self.python_env} readable (read-only) and first on the import path")
        found.extend(f"environment variable {k} set" for k in sorted(self.env))
        if self.unprivileged_uid is not None:
            found.append(f"every session runs as uid {self.unprivileged_uid} on a root host: without a pids "
                         "cgroup their process limit is one shared pool")
        default = ResourceLimits()
        for name in ResourceLimits.model_fields:
            value, base = getattr(self.limits, name), getattr(default, name)
            if base is not None and (value is None or value > base):
                found.append(f"limit {name} raised from {base} to {value}")
        return found
