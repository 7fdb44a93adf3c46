"""Adversarial tests: attacks run from INSIDE a real sandboxed kernel, checked from the HOST.

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

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import platform
import socket
import stat
import subprocess
import sysconfig
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

import kernel_agent
from kernel_agent import CellResult, CellStatus, ResourceLimits, SandboxPolicy, Session
from kernel_agent.sandbox.provisioner import SandboxProvisioner

from .conftest import LoopStallMonitor, PeakRss, sandbox_processes

MiB = 1024**2
SECRET_ENV_NAME = "ANTHROPIC_API_KEY"
SECRET_ENV_VALUE = f"sk-test-secret-{uuid.uuid4().hex}"
SECRET_FILE_TEXT = f"host-file-secret-{uuid.uuid4().hex}"
ROOT_SECRET_TEXT = f"root-home-secret-{uuid.uuid4().hex}"
TAG = uuid.uuid4().hex[:12]
REPO = Path(__file__).resolve().parent.parent

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
    """The host can still start processes promptly, and no sensitive file or sysctl changed."""
    started = time.monotonic()
    subprocess.run(["true"], check=True, timeout=30)
    assert time.monotonic() - started < 10, "the host took more than 10 s to start a process"
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


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@dataclass
class HostSecrets:
    """Secrets planted on the host before the shared session starts."""

    secret_file: Path
    root_secret: Path | None
    host_tmp_dir: Path
    host_tmp_sentinel: Path


@pytest.fixture(scope="module")
def host_baseline() -> HostBaseline:
    """Host state before any attack ran."""
    return HostBaseline.take()


@pytest.fixture(scope="module")
def host_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostSecrets]:
    """A secret file outside any workspace, one in /root, and a host tmp dir with a sentinel."""
    secret_dir = tmp_path_factory.mktemp("host-secrets")
    secret_file = secret_dir / "secret.txt"
    secret_file.write_text(SECRET_FILE_TEXT)
    host_tmp_dir = tmp_path_factory.mktemp("host-tmp-target")
    sentinel = host_tmp_dir / "sentinel.txt"
    sentinel.write_text("host sentinel")
    candidate = Path("/root") / f".kernel-agent-attack-{TAG}.secret"
    root_secret: Path | None = candidate
    try:
        candidate.write_text(ROOT_SECRET_TEXT)
    except OSError:
        root_secret = None
    yield HostSecrets(secret_file, root_secret, host_tmp_dir, sentinel)
    if root_secret is not None:
        root_secret.unlink(missing_ok=True)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory, host_secrets: HostSecrets) -> AsyncIterator[Session]:
    """One strict-policy session for the cheap attacks, started with a secret in the host's environment."""
    workspace = tmp_path_factory.mktemp("shared") / "workspace"
    workspace.mkdir()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(SECRET_ENV_NAME, SECRET_ENV_VALUE)
        async with Session(workspace, default_timeout=60) as session:
            yield session


@pytest_asyncio.fixture
async def limited(workspace: Path) -> AsyncIterator[Session]:
    """A fresh session with small memory, process, /tmp and file-size limits."""
    async with Session(workspace, policy=SandboxPolicy(limits=SMALL_LIMITS), default_timeout=60,
                       interrupt_grace=1.0) as session:
        yield session


# --------------------------------------------------------------------------
# Reading host secrets
# --------------------------------------------------------------------------


@module_loop
async def test_host_environment_is_not_visible(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: look for the host's API key in os.environ, env(1) and every /proc/*/environ. It must not appear."""
    assert os.environ.get(SECRET_ENV_NAME) == SECRET_ENV_VALUE  # the host really has the secret
    outcome = await attack(shared, """
        import glob, subprocess
        # The attacker does not know the secret: it dumps every environment it can reach.
        names = set(os.environ)
        print(dict(os.environ))
        paths = {"/proc/self/environ", "/proc/1/environ", *glob.glob("/proc/[0-9]*/environ"),
                 *glob.glob("/proc/[0-9]*/task/*/environ")}
        dumped = []
        for path in sorted(paths):
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            dumped.append(path)
            print(path, data)
            names.update(entry.split(b"=", 1)[0].decode(errors="replace") for entry in data.split(b"\\0") if entry)
        env_out = subprocess.run(["env"], capture_output=True, text=True).stdout
        print(env_out)
        names.update(line.split("=", 1)[0] for line in env_out.splitlines())
        report(names=sorted(names), dumped=dumped)
    """)
    data = reported(outcome)
    # The kernel's own environment is readable; the sandbox init's (pid 1) is readable
    # only when it runs as the kernel's user (on a root host it stays root and is not).
    assert "/proc/self/environ" in data["dumped"]
    assert "/proc/1/environ" in data["dumped"] or os.getuid() == 0
    assert SECRET_ENV_NAME not in data["names"]
    assert SECRET_ENV_VALUE not in outcome.text
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_host_processes_are_not_visible(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: enumerate /proc and read the host test process's environ, root and cwd. Only sandbox processes show."""
    host_pids = [os.getpid(), os.getppid()]
    outcome = await attack(shared, """
        visible = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    visible[name] = read_text(f"/proc/{name}/cmdline").replace("\\0", " ")[:300]
                except OSError:
                    visible[name] = None
        probes = {}
        for pid in P["host_pids"]:
            for leaf in ("environ", "cmdline", "status", "mem"):
                probes[f"{pid}/{leaf}"] = attempt(lambda: len(open(f"/proc/{pid}/{leaf}", "rb").read(4096)))["ok"]
            for leaf in ("root", "cwd", "fd"):
                probes[f"{pid}/{leaf}"] = attempt(os.listdir, f"/proc/{pid}/{leaf}")["ok"]
        report(visible=visible, probes=probes)
    """, host_pids=host_pids)
    data = reported(outcome)
    assert not any(data["probes"].values()), data["probes"]
    assert all(str(pid) not in data["visible"] for pid in host_pids if pid > 1000)
    for cmdline in data["visible"].values():  # only bwrap's init, the kernel (and zombies, with no cmdline)
        assert not cmdline or "bwrap" in cmdline.split()[0] or "kernel_agent.kernel" in cmdline, cmdline
    assert len(data["visible"]) < 20  # the sandbox's own few processes, not the host's
    assert SECRET_ENV_VALUE not in outcome.text
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@pytest.mark.parametrize("target", ["outside-workspace", "root-home", "etc-shadow"])
@module_loop
async def test_host_files_outside_the_workspace_are_unreadable(
    shared: Session, host_secrets: HostSecrets, host_baseline: HostBaseline, target: str
) -> None:
    """Attack: read a host secret directly, via /proc/*/root, and with cat(1). Nothing of it may come back."""
    if target == "outside-workspace":
        path, needle = host_secrets.secret_file, SECRET_FILE_TEXT
    elif target == "root-home":
        if host_secrets.root_secret is None:
            pytest.skip("/root is not writable for the test user")
        path, needle = host_secrets.root_secret, ROOT_SECRET_TEXT
    else:
        shadow = Path("/etc/shadow")
        if not shadow.is_file() or not shadow.read_text().strip():
            pytest.skip("no /etc/shadow on this host")
        path, needle = shadow, shadow.read_text().splitlines()[0]
    outcome = await attack(shared, """
        import subprocess
        path = P["path"]
        got = []
        for candidate in (path, "/proc/self/root" + path, "/proc/1/root" + path, "/proc/2/root" + path,
                          "/proc/1/cwd/" + os.path.relpath(path, "/")):
            r = attempt(read_text, candidate)
            if r["ok"]:
                got.append(candidate)
                print(r["value"])
        cat = subprocess.run(["cat", path], capture_output=True, text=True)
        if cat.returncode == 0:
            got.append("cat")
            print(cat.stdout)
        report(got=got, stat=attempt(lambda: os.stat(path).st_size))
    """, path=str(path))
    data = reported(outcome)
    assert data["got"] == [] and not data["stat"]["ok"]
    assert needle not in outcome.text
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_host_user_database_is_not_exposed(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: read /etc/passwd, /etc/group and getent. Only the synthetic 'agent' entry is visible, no host user."""
    outcome = await attack(shared, """
        import pwd, grp, subprocess
        print(read_text("/etc/passwd"), read_text("/etc/group"))
        print(subprocess.run(["getent", "passwd"], capture_output=True, text=True).stdout)
        report(users=[p.pw_name for p in pwd.getpwall()], groups=[g.gr_name for g in grp.getgrall()])
    """)
    data = reported(outcome)
    assert data["users"] == ["agent"] and data["groups"] == ["agent"]
    host_lines = [line for line in Path("/etc/passwd").read_text().splitlines() if line.strip()]
    assert not [line for line in host_lines if line in outcome.text]
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_other_sessions_run_dir_and_key_are_unreachable(
    shared: Session, tmp_path: Path, host_baseline: HostBaseline
) -> None:
    """Attack: session A hunts for session B's run dir, connection file, key, sockets and workspace. B is untouched."""
    workspace_b = tmp_path / "workspace-b"
    workspace_b.mkdir()
    sentinel_b = workspace_b / "b-data.txt"
    sentinel_b.write_text("belongs to session B")
    async with Session(workspace_b, default_timeout=60) as other:
        await other.execute("b_state = 'untouched'")
        run_dir_b = provisioner_of(other).run_dir
        assert run_dir_b is not None
        connection_file = run_dir_b / "sandbox" / "connection.json"
        info = json.loads(connection_file.read_text())
        key_b = info["key"]
        assert len(key_b) >= 16
        connection_before = connection_file.read_bytes()
        outcome = await attack(shared, """
            import socket
            found = {}
            roots = ["/tmp", "/root", "/etc", "/dev", "/home", "/run", "/var", "/work"]
            roots += [f"/{e}" for e in os.listdir("/") if f"/{e}" not in roots and e not in ("proc", "usr", "sys")]
            for root in roots:
                for directory, _, files in os.walk(root):
                    if "site-packages" in directory or "/.pyenv/" in directory:
                        continue
                    for name in files:
                        if name.endswith(".json") or name.startswith("kernel-"):
                            path = os.path.join(directory, name)
                            r = attempt(read_text, path, 65536)
                            if r["ok"] and "signature_scheme" in r["value"]:  # a connection file: exfiltrate it
                                found[path] = r["value"]
                                print(path, r["value"])
            direct = {
                "connection_file": attempt(read_text, P["connection_file"]),
                "run_dir": attempt(os.listdir, P["run_dir"]),
                "workspace_b": attempt(os.listdir, P["workspace_b"]),
                "write_workspace_b": attempt(write_text, P["workspace_b"] + "/from-a.txt", "pwned"),
            }
            sockets = {}
            for port in P["ports"]:
                path = f"{P['ip']}-{port}"
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sockets[path] = attempt(s.connect, path)
                s.close()
            report(found=sorted(found), direct=direct, sockets=sockets)
        """, connection_file=str(connection_file), run_dir=str(run_dir_b), workspace_b=str(workspace_b),
            ip=info["ip"], ports=[info[k] for k in ("shell_port", "iopub_port", "control_port", "hb_port")])
        data = reported(outcome)
        assert not any(r["ok"] for r in data["direct"].values()), data["direct"]
        assert not any(r["ok"] for r in data["sockets"].values()), data["sockets"]
        assert not any(str(run_dir_b) in path for path in data["found"])
        assert key_b not in outcome.text
        assert connection_file.read_bytes() == connection_before
        assert not (workspace_b / "from-a.txt").exists()
        assert sentinel_b.read_text() == "belongs to session B"
        assert (await other.execute("b_state")).result == "'untouched'"
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


# --------------------------------------------------------------------------
# Writing outside the workspace
# --------------------------------------------------------------------------


def _write_targets(secrets: HostSecrets, target: str) -> tuple[list[Path], list[Path]]:
    """(new files to create, existing host files to open for writing) for one area of the host."""
    stdlib, purelib = Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])
    package = Path(kernel_agent.__file__).resolve().parent
    if target == "usr":
        return [Path(f"/usr/lib/kernel-agent-attack-{TAG}")], [Path("/usr/bin/env").resolve()]
    if target == "etc":
        return [Path(f"/etc/kernel-agent-attack-{TAG}")], [Path("/etc/hosts"), Path("/etc/passwd")]
    if target == "python-installation":
        import ipykernel

        return ([purelib / f"kernel-agent-attack-{TAG}.pth", stdlib / f"kernel_agent_attack_{TAG}.py",
                 package / f"attack_{TAG}.py"],
                [Path(os.__file__), Path(ipykernel.__file__), package / "kernel" / "__main__.py"])
    if target == "project-checkout":
        return [REPO / "tests" / f"conftest_attack_{TAG}.py", REPO / f"sitecustomize_{TAG}.py"], [REPO / ".gitignore"]
    if target == "host-tmp":
        return [secrets.host_tmp_dir / f"new-{TAG}", Path(tempfile.gettempdir()) / f"ka-attack-{TAG}"], [
            secrets.host_tmp_sentinel]
    if target == "root-home":
        existing = [secrets.root_secret] if secrets.root_secret is not None else []
        return [Path("/root") / f".kernel-agent-attack-{TAG}-new"], [*existing, Path("/root/.bashrc")]
    raise ValueError(target)


@pytest.mark.parametrize(
    "target", ["usr", "etc", "python-installation", "project-checkout", "host-tmp", "root-home"]
)
@module_loop
async def test_writes_outside_the_workspace_never_reach_the_host(
    shared: Session, host_secrets: HostSecrets, host_baseline: HostBaseline, target: str
) -> None:
    """Attack: create files and open existing ones for writing in a host area. No host file appears or changes."""
    new, existing = _write_targets(host_secrets, target)
    existing = [p for p in existing if p.exists()]
    before = {p: fingerprint(p) for p in existing}
    try:
        outcome = await attack(shared, """
            created = {}
            for path in P["new"]:
                created[path] = attempt(lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)))
                attempt(write_text, path, "import os  # planted by the sandbox\\n")
            opened, chmodded = {}, {}
            for path in P["existing"]:
                # Open for writing and close at once: never write a byte into a real host file.
                opened[path] = attempt(lambda: os.close(os.open(path, os.O_WRONLY | os.O_APPEND)))
                chmodded[path] = attempt(lambda: os.chmod(path, os.stat(path).st_mode & 0o7777))
            report(created=created, opened=opened, chmodded=chmodded)
        """, new=[str(p) for p in new], existing=[str(p) for p in existing])
        data = reported(outcome)
        for path in new:
            assert not path.exists(), f"the sandbox created {path} on the host"
        assert {p: fingerprint(p) for p in existing} == before
        assert not any(r["ok"] for r in data["opened"].values()), data["opened"]
        assert not any(r["ok"] for r in data["chmodded"].values()), data["chmodded"]
    finally:
        for path in new:
            path.unlink(missing_ok=True)
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


# --------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port"),
    [("1.1.1.1", 443), ("8.8.8.8", 53), ("169.254.169.254", 80)],
    ids=["external-ip", "public-dns-server", "cloud-metadata"],
)
@module_loop
async def test_no_network_egress(shared: Session, host_baseline: HostBaseline, host: str, port: int) -> None:
    """Attack: TCP and UDP to an external address (and the cloud metadata service). Both must fail: no route."""
    outcome = await attack(shared, """
        import socket
        def tcp():
            with socket.create_connection((P["host"], P["port"]), timeout=3):
                return True
        def udp():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(b"\\x00" * 12, (P["host"], P["port"]))
                return s.recvfrom(512)[0].hex()
        report(tcp=attempt(tcp), udp=attempt(udp), interfaces=[name for _, name in socket.if_nameindex()])
    """, host=host, port=port)
    data = reported(outcome)
    assert not data["tcp"]["ok"] and not data["udp"]["ok"], data
    assert data["interfaces"] == ["lo"]
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_no_dns_resolution(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: resolve public names (getaddrinfo, and the host's resolver config). Resolution must fail."""
    outcome = await attack(shared, """
        import socket, subprocess
        names = {n: attempt(socket.getaddrinfo, n, 443) for n in ("example.com", "pypi.org", "metadata.google.internal")}
        report(names=names, resolv_conf=os.path.exists("/etc/resolv.conf"),
               getent=subprocess.run(["getent", "hosts", "example.com"], capture_output=True).returncode)
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["names"].values()), data["names"]
    assert data["getent"] != 0 and not data["resolv_conf"]
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_host_loopback_tcp_server_receives_nothing(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: connect to a TCP server the host runs on 127.0.0.1 (and on every host address). It gets no connection."""
    addresses = sorted({a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                        if a.family == socket.AF_INET})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("0.0.0.0", 0))
        server.listen(16)
        server.setblocking(False)
        port = server.getsockname()[1]
        outcome = await attack(shared, """
            import socket
            results = {}
            for address in P["addresses"] + ["localhost", "::1"]:
                def connect():
                    with socket.create_connection((address, P["port"]), timeout=2) as s:
                        s.sendall(b"hello from the sandbox")
                        return True
                results[address] = attempt(connect)
            report(results=results)
        """, addresses=addresses, port=port)
        await asyncio.sleep(0.3)
        with pytest.raises(BlockingIOError):
            connection, peer = server.accept()
            connection.close()
            raise AssertionError(f"the host server accepted a connection from {peer}")
    data = reported(outcome)
    assert "127.0.0.1" in data["results"]
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_host_unix_sockets_receive_nothing(
    shared: Session, tmp_path: Path, host_baseline: HostBaseline
) -> None:
    """Attack: connect to a filesystem and an abstract unix socket the host listens on. Neither accepts anything."""
    path = tmp_path / "host.sock"
    abstract = f"\0kernel-agent-attack-{TAG}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fs_server, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as abstract_server:
        for server, address in ((fs_server, str(path)), (abstract_server, abstract)):
            server.bind(address)
            server.listen(4)
            server.setblocking(False)
        outcome = await attack(shared, """
            import socket
            def connect(address):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect(address)
                    s.sendall(b"hello")
                    return True
            report(fs=attempt(connect, P["path"]), abstract=attempt(connect, P["abstract"]),
                   via_proc=attempt(connect, "/proc/1/root" + P["path"]))
        """, path=str(path), abstract=abstract)
        await asyncio.sleep(0.2)
        for server in (fs_server, abstract_server):
            with pytest.raises(BlockingIOError):
                server.accept()[0].close()
                raise AssertionError("a host unix socket accepted a connection from the sandbox")
    data = reported(outcome)
    assert not data["fs"]["ok"] and not data["abstract"]["ok"] and not data["via_proc"]["ok"], data
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


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


# --------------------------------------------------------------------------
# Resource exhaustion
# --------------------------------------------------------------------------


async def test_fork_bomb_is_contained(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: a fork bomb. The pids cgroup caps it, the host stays responsive, the session answers, all reaped."""
    run_dir = provisioner_of(limited).run_dir
    pids_current = cgroup_file(limited, "pids.current")
    outcome = await attack(limited, """
        import time
        forked, error = 0, None
        try:
            while True:
                if os.fork() == 0:
                    try:
                        while True:
                            try:
                                os.fork()
                            except OSError:
                                time.sleep(0.2)
                    finally:
                        os._exit(0)
                forked += 1
        except OSError as exc:
            error = _errno.errorcode.get(exc.errno)
        report(forked=forked, error=error)
    """, timeout=30)
    data = reported(outcome)
    assert data["error"] == "EAGAIN" and data["forked"] < PROCESS_LIMIT
    if pids_current is not None:
        assert int(pids_current.read_text()) <= PROCESS_LIMIT
    assert len(sandbox_processes(run_dir)) <= PROCESS_LIMIT + 2
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)
    procs = sandbox_tree(limited)
    await limited.close()
    assert wait_until_gone(procs) == []


async def test_thread_bomb_is_contained(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: start threads until it fails. The pids cgroup caps it; the host and the session stay responsive."""
    pids_current = cgroup_file(limited, "pids.current")
    outcome = await attack(limited, """
        import threading
        release = threading.Event()
        started, error = 0, None
        try:
            while started < 100_000:
                threading.Thread(target=release.wait, daemon=True).start()
                started += 1
        except RuntimeError as exc:
            error = str(exc)
        report(started=started, error=error)
    """, timeout=30)
    data = reported(outcome)
    assert data["error"] is not None and data["started"] < PROCESS_LIMIT
    if pids_current is not None:
        assert int(pids_current.read_text()) <= PROCESS_LIMIT
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)


async def test_memory_bomb_kills_only_the_kernel(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: allocate without end. The kernel dies naming the memory limit; the host is fine; a fresh kernel runs."""
    await limited.execute("before_bomb = 1")
    with PeakRss() as rss:
        cell = await limited.execute("hog = []\nwhile True:\n    hog.append(b'\\x01' * (64 * 1024**2))", timeout=60)
    assert cell.status is CellStatus.KERNEL_DIED, describe(cell)
    assert cell.error is not None and "memory limit" in cell.error.evalue
    assert cell.kernel_restarted and cell.state_lost
    assert rss.growth < 100 * MiB
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)
    assert (await limited.execute("'before_bomb' in dir()")).result == "False"


async def test_filling_tmp_stops_at_the_tmpfs_size(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: fill /tmp. Writes stop with ENOSPC at tmp_size_bytes; nothing lands in the host's temp dir."""
    host_tmp = Path(tempfile.gettempdir())
    outcome = await attack(limited, """
        written, error = 0, None
        try:
            for i in range(16):
                with open(f"/tmp/fill-{P['tag']}-{i}", "wb") as f:
                    for _ in range(7):
                        f.write(b"\\1" * (1024 * 1024))
                        f.flush()
                        written += 1024 * 1024
        except OSError as exc:
            error = _errno.errorcode.get(exc.errno)
        report(written=written, error=error)
    """, tag=TAG)
    data = reported(outcome)
    assert data["error"] == "ENOSPC"
    assert data["written"] <= TMP_LIMIT
    assert list(host_tmp.glob(f"fill-{TAG}-*")) == []
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)


async def test_filling_dev_shm_is_bounded_by_the_memory_limit(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: fill the RAM-backed /dev and /dev/shm (not covered by the /tmp size). The memory cgroup bounds it."""
    shmem_before = psutil.virtual_memory().shared
    outcome = await attack(limited, """
        written, error = 0, None
        try:
            for i in range(160):  # 1.1 GiB in files below the per-file size limit
                for directory in ("/dev/shm", "/dev"):
                    with open(f"{directory}/fill-{i}", "wb") as f:
                        f.write(b"\\1" * (7 * 1024 * 1024))
                    written += 7 * 1024 * 1024
        except OSError as exc:
            error = _errno.errorcode.get(exc.errno)
        report(written=written, error=error)
    """)
    cell = outcome.cell
    if cell.status is CellStatus.KERNEL_DIED:
        assert cell.error is not None and "memory limit" in cell.error.evalue
    else:
        data = reported(outcome)
        assert data["error"] is not None and data["written"] <= MEMORY_LIMIT
    await assert_session_healthy(limited)
    held = psutil.virtual_memory().shared - shmem_before
    assert held < 256 * MiB, f"host RAM still held by the sandbox's tmpfs after the attack: {held / MiB:.0f} MiB"
    assert_host_healthy(host_baseline)


async def test_workspace_file_size_is_capped(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: write, truncate and fallocate huge workspace files. Each stops at file_size_bytes on the host disk."""
    outcome = await attack(limited, """
        results = {}
        def write_big():
            with open("big.bin", "wb") as f:
                for _ in range(32):
                    f.write(b"\\1" * (1024 * 1024))
        results["write"] = attempt(write_big)
        open("sparse.bin", "wb").close()
        results["truncate"] = attempt(os.truncate, "sparse.bin", 1 << 40)
        fd = os.open("alloc.bin", os.O_WRONLY | os.O_CREAT)
        results["fallocate"] = attempt(os.posix_fallocate, fd, 0, 1 << 30)
        os.close(fd)
        report(results=results)
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    assert data["results"]["write"]["errno"] == "EFBIG"
    for name in ("big.bin", "sparse.bin", "alloc.bin"):
        assert (limited.workspace / name).stat().st_size <= FILE_SIZE_LIMIT
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)


async def test_kernel_log_flood_is_capped(limited: Session, host_baseline: HostBaseline) -> None:
    """Attack: write straight to fd 1/2, which end in the host-side kernel log. The log stops at file_size_bytes."""
    log_path = provisioner_of(limited).log_path
    assert log_path is not None
    cell = await limited.execute(
        "import os\nchunk = b'y' * (1024 * 1024)\nfor i in range(32):\n    os.write(1 + i % 2, chunk)", timeout=3
    )
    assert cell.status in (CellStatus.OK, CellStatus.ERROR, CellStatus.TIMEOUT), describe(cell)
    assert log_path.stat().st_size <= FILE_SIZE_LIMIT
    assert_host_healthy(host_baseline)
    await assert_session_healthy(limited)


# --------------------------------------------------------------------------
# Output floods and huge messages
# --------------------------------------------------------------------------


@dataclass
class FloodOutcome:
    """What the host observed while a kernel flooded it with output."""

    cell: CellResult
    rss_growth_after: int
    peak_rss_growth: int
    max_loop_gap: float
    elapsed: float
    health: CellResult


async def _flood(root: Path, code: str, timeout: float) -> FloodOutcome:
    workspace = root / "workspace"
    workspace.mkdir()
    async with Session(workspace, default_timeout=60) as session:
        await session.execute("1")
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        started = time.monotonic()
        async with LoopStallMonitor() as stalls:
            with PeakRss() as rss:
                cell = await session.execute(code, timeout=timeout)
        elapsed = time.monotonic() - started
        health = await session.execute("1 + 1", timeout=30)
    gc.collect()
    return FloodOutcome(cell, psutil.Process().memory_info().rss - rss_before, rss.growth, stalls.max_gap,
                        elapsed, health)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def print_flood(tmp_path_factory: pytest.TempPathFactory) -> FloodOutcome:
    """The kernel prints 1 MB lines forever; the cell has a 5 s timeout."""
    return await _flood(tmp_path_factory.mktemp("print-flood"), "while True:\n    print('x' * 10**6)", timeout=5)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def message_flood(tmp_path_factory: pytest.TempPathFactory) -> FloodOutcome:
    """The kernel sends 60 MB display messages (just under the host's 64 MiB cap); the cell has a 3 s timeout."""
    code = "from IPython.display import display\nfor i in range(4):\n    display({'text/plain': 'x' * 60_000_000}, raw=True)"
    return await _flood(tmp_path_factory.mktemp("message-flood"), code, timeout=3)


@module_loop
async def test_output_flood_does_not_balloon_host_memory(print_flood: FloodOutcome, host_baseline: HostBaseline) -> None:
    """Attack: `while True: print('x' * 10**6)`. Host RSS stays bounded, the timeout stops it, the session works."""
    assert print_flood.cell.status is CellStatus.TIMEOUT and print_flood.cell.timed_out, describe(print_flood.cell)
    assert print_flood.rss_growth_after < 300 * MiB
    assert print_flood.peak_rss_growth < 300 * MiB
    assert print_flood.health.result == "2", describe(print_flood.health)
    assert_host_healthy(host_baseline)


@module_loop
async def test_output_flood_loss_is_reported(print_flood: FloodOutcome) -> None:
    """Attack: `while True: print('x' * 10**6)`. The result must say that output was dropped (dropped_output_bytes)."""
    assert print_flood.cell.dropped_output_bytes > 0


@module_loop
async def test_huge_output_messages_do_not_stall_the_host(message_flood: FloodOutcome) -> None:
    """Attack: four 60 MB display messages. The host's event loop keeps running and the 3 s timeout is enforced."""
    assert message_flood.max_loop_gap < 2.0, f"host event loop stalled for {message_flood.max_loop_gap:.1f} s"
    assert message_flood.elapsed < 3 + 3 + 3, f"3 s timeout enforced only after {message_flood.elapsed:.1f} s"
    assert message_flood.health.result == "2", describe(message_flood.health)


RAW_IOPUB_FLOOD = """
# Skip ipykernel's output path: sign one 60 MB stream message with the kernel's own key and push
# the same frames again and again, far faster than the host can verify them.
kernel = get_ipython().kernel
message = kernel.session.msg("stream", {"name": "stdout", "text": "x" * 60_000_000}, parent=kernel.get_parent())
frames = kernel.session.serialize(message)
for _ in range(16):
    kernel.iopub_socket.send_multipart(frames)
"""


async def test_huge_output_messages_do_not_balloon_host_memory(tmp_path: Path, host_baseline: HostBaseline) -> None:
    """Attack: re-send one signed 60 MB iopub message 16 times. The host's peak RSS grows by less than 300 MB."""
    flood = await _flood(tmp_path, RAW_IOPUB_FLOOD, timeout=10)
    assert flood.health.result == "2", describe(flood.health)
    assert_host_healthy(host_baseline)
    assert flood.rss_growth_after < 300 * MiB
    assert flood.peak_rss_growth < 300 * MiB, f"host RSS peaked {flood.peak_rss_growth / MiB:.0f} MB up"


async def test_oversized_output_message_does_not_break_the_session(
    session: Session, host_baseline: HostBaseline
) -> None:
    """Attack: one 80 MB display message (over the host's cap). It is dropped and counted; later cells still work."""
    cell = await session.execute(
        "from IPython.display import display\ndisplay({'text/plain': 'x' * 80_000_000}, raw=True)", timeout=30
    )
    assert cell.status is CellStatus.OK, describe(cell)
    assert_host_healthy(host_baseline)
    await assert_session_healthy(session)
    assert cell.dropped_output_bytes > 0


# --------------------------------------------------------------------------
# Cells that will not stop
# --------------------------------------------------------------------------


async def test_infinite_loop_is_interrupted_and_state_survives(session: Session, host_baseline: HostBaseline) -> None:
    """Attack: `while True: pass`. The timeout interrupts it; the kernel and its variables survive."""
    await session.execute("kept = 42")
    cell = await session.execute("while True:\n    pass", timeout=2)
    assert cell.status is CellStatus.TIMEOUT and cell.timed_out and not cell.state_lost, describe(cell)
    assert cell.duration < 2 + 3 + 3
    assert (await session.execute("kept")).result == "42"
    assert_host_healthy(host_baseline)


@pytest.mark.parametrize(
    "stubborn",
    [
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass",
        "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)",
    ],
    ids=["ignores-SIGINT", "swallows-KeyboardInterrupt", "stops-itself"],
)
async def test_uninterruptible_cell_is_killed_after_grace(
    workspace: Path, host_baseline: HostBaseline, stubborn: str
) -> None:
    """Attack: a cell that defeats the interrupt. Killed after the grace; state_lost; old sandbox gone; session works."""
    async with Session(workspace, default_timeout=60, interrupt_grace=1.0) as session:
        await session.execute("kept = 1")
        old = sandbox_tree(session)
        cell = await session.execute(stubborn, timeout=1)
        assert cell.status is CellStatus.TIMEOUT and cell.timed_out, describe(cell)
        assert cell.kernel_restarted and cell.state_lost
        assert cell.duration < 1 + 1 + 13  # timeout, grace, then a fresh kernel's start
        assert wait_until_gone(old) == []
        await assert_session_healthy(session)
        assert (await session.execute("'kept' in dir()")).result == "False"
    assert_host_healthy(host_baseline)


# --------------------------------------------------------------------------
# Symlink tricks against the host's cleanup
# --------------------------------------------------------------------------


def _victims(root: Path) -> tuple[Path, Path, dict[Path, tuple[int, int, int, int, str] | None]]:
    """A host file and a host directory (with files) that symlinks will point at, and their fingerprints."""
    victim_dir = root / "victim-dir"
    (victim_dir / "nested").mkdir(parents=True)
    (victim_dir / "data.txt").write_text("victim data")
    (victim_dir / "nested" / "deep.txt").write_text("deep victim data")
    victim_file = root / "victim-secret.txt"
    victim_file.write_text(SECRET_FILE_TEXT)
    watched = [victim_file, victim_dir / "data.txt", victim_dir / "nested" / "deep.txt", Path("/etc/shadow")]
    return victim_file, victim_dir, {p: fingerprint(p) for p in watched}


SYMLINK_ATTACK = """
    targets = {"file": P["victim_file"], "dir": P["victim_dir"], "shadow": "/etc/shadow"}
    created, resolves = [], {}
    for where in P["dirs"]:
        for name, target in targets.items():
            link = os.path.join(where, f"evil-{name}")
            os.symlink(target, link)
            created.append(link)
            resolves[link] = os.path.exists(link)
        os.makedirs(os.path.join(where, "sub"), exist_ok=True)
        os.symlink(P["victim_dir"], os.path.join(where, "sub", "evil-dir"))
    if P.get("connection_file"):
        # Swap the connection file and the ipc socket paths for links into the host.
        for path in [P["connection_file"], *P["sockets"]]:
            tmp = path + ".swap"
            os.symlink(P["victim_file"] if path == P["connection_file"] else P["victim_dir"], tmp)
            os.replace(tmp, path)
    report(created=created, resolves=resolves)
"""


async def test_symlinks_in_the_run_dir_do_not_redirect_cleanup(tmp_path: Path, host_baseline: HostBaseline) -> None:
    """Attack: links in the run dir (and a swapped connection file/sockets) to host files. Close leaves them intact."""
    victim_file, victim_dir, before = _victims(tmp_path)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    async with Session(workspace, default_timeout=60) as session:
        run_dir = provisioner_of(session).run_dir
        assert run_dir is not None
        sandbox_dir = run_dir / "sandbox"
        sockets = [str(p) for p in sandbox_dir.iterdir() if p.is_socket()]
        outcome = await attack(session, SYMLINK_ATTACK, victim_file=str(victim_file), victim_dir=str(victim_dir),
                               dirs=[str(sandbox_dir)], connection_file=str(sandbox_dir / "connection.json"),
                               sockets=sockets)
        data = reported(outcome)
        assert len(data["created"]) == 3
        assert not any(data["resolves"].values()), "a link to a host path resolved inside the sandbox"
        await assert_session_healthy(session)
    assert not run_dir.exists()
    assert {p: fingerprint(p) for p in before} == before
    assert sorted(p.name for p in victim_dir.rglob("*")) == ["data.txt", "deep.txt", "nested"]
    assert SECRET_FILE_TEXT not in outcome.text
    assert_host_healthy(host_baseline)


async def test_symlinks_in_an_owned_workspace_do_not_redirect_its_removal(
    tmp_path: Path, host_baseline: HostBaseline
) -> None:
    """Attack: links in a session-owned workspace to host files and dirs. Removing the workspace spares the targets."""
    victim_file, victim_dir, before = _victims(tmp_path)
    async with Session(default_timeout=60) as session:
        workspace = session.workspace
        outcome = await attack(session, SYMLINK_ATTACK, victim_file=str(victim_file), victim_dir=str(victim_dir),
                               dirs=[str(workspace)])
        data = reported(outcome)
        assert len(data["created"]) == 3
        assert not any(data["resolves"].values()), "a link to a host path resolved inside the sandbox"
        assert (workspace / "evil-dir").is_symlink()  # the links really exist on the host side
        await assert_session_healthy(session)
    assert not workspace.exists()
    assert {p: fingerprint(p) for p in before} == before
    assert sorted(p.name for p in victim_dir.rglob("*")) == ["data.txt", "deep.txt", "nested"]
    assert_host_healthy(host_baseline)
