"""Real Jupyter servers on 127.0.0.1 for the remote-kernel tests: Jupyter Server and Jupyter Kernel Gateway.

:func:`start_server` starts either kind as a subprocess with token auth on
a free port, the kernel-agent kernelspec installed into a temporary Jupyter
path, and every Jupyter directory (data, runtime, config, IPython) private
to it; it returns once ``/api`` answers with the token and the kernelspecs
are listed. :func:`running_server` stops it (the whole process group, killed
if it does not exit) however the test ends. The ``jupyter_server`` and
``kernel_gateway`` fixtures are one server per test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from kernel_agent.kernelspec.spec import KERNEL_NAME, install_kernelspec, kernel_spec_dict
from kernel_agent.sandbox.policy import MiB, ResourceLimits, SandboxPolicy

ServerKind = Literal["jupyter-server", "kernel-gateway"]

#: A kernelspec the servers of the fixtures also offer: kernel-agent's with a small memory limit, so a test
#: can get its kernel killed by the sandbox (and restarted by the server) quickly.
LIMITED_KERNEL = "kernel-agent-limited"
LIMITED_MEMORY = 384 * MiB

#: Environment variables of this process that would reach into the server's configuration: removed.
_LEAKY_PREFIXES = ("JUPYTER_", "JPY_", "KG_", "IPYTHON")


def default_kernelspecs() -> dict[str, dict[str, Any]]:
    """The kernelspecs the fixtures install besides ``kernel-agent`` itself: the memory-limited one."""
    policy = SandboxPolicy(limits=ResourceLimits(memory_bytes=LIMITED_MEMORY))
    spec = kernel_spec_dict(policy=policy)
    spec["display_name"] = "kernel-agent (small memory limit)"
    return {LIMITED_KERNEL: spec}


@dataclass
class RunningServer:
    """A server subprocess: where it listens, its token, and how to talk to and stop it."""

    kind: ServerKind
    url: str  # http://127.0.0.1:PORT, no trailing slash
    token: str
    process: subprocess.Popen[bytes]
    base: Path  # everything the server was given: its root directory, Jupyter path and log
    root_dir: Path  # where its kernels start (their launch directory)
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """The token auth header, for HTTP and for the websocket handshake."""
        return {"Authorization": f"token {self.token}"}

    def ws_url(self, path: str) -> str:
        """The websocket URL of ``path`` (e.g. ``/api/kernels/ID/channels``)."""
        return "ws" + self.url.removeprefix("http") + path

    def api(self, method: str, path: str, body: Any = None, timeout: float = 120.0) -> Any:
        """Call the REST API with the token; the decoded JSON answer (None when empty). Raises on HTTP errors."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={**self.headers, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def log(self, limit: int = 6000) -> str:
        """The end of the server's output, for failure messages."""
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL to the whole process group; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group (a server stuck in shutdown, a kernel launcher) is killed.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=grace)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def install_kernelspecs(prefix: Path, extra: Mapping[str, Mapping[str, Any]]) -> Path:
    """``kernel-agent`` (as `kernel-agent kernelspec install` does) and ``extra`` into ``prefix``; the Jupyter path."""
    install_kernelspec(user=False, prefix=str(prefix))
    kernels = prefix / "share" / "jupyter" / "kernels"
    for name, spec in extra.items():
        (kernels / name).mkdir(parents=True)
        (kernels / name / "kernel.json").write_text(json.dumps(spec, indent=2))
    return prefix / "share" / "jupyter"


def _isolated_env(base: Path, jupyter_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}
    for name, sub in (("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                      ("JUPYTER_CONFIG_DIR", "config"), ("IPYTHONDIR", "ipython")):
        (base / sub).mkdir(exist_ok=True)
        env[name] = str(base / sub)
    env["JUPYTER_PATH"] = str(jupyter_path)
    env["JUPYTER_CONFIG_PATH"] = str(base / "config")
    env["JUPYTER_PLATFORM_DIRS"] = "1"  # no deprecation warning about the directory layout
    return env


def _argv(kind: ServerKind, port: int, token: str, root: Path) -> list[str]:
    if kind == "jupyter-server":
        return [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0", f"--ServerApp.token={token}", "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True", "--ServerApp.password="]
    return [sys.executable, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.port={port}", "--KernelGatewayApp.port_retries=0",
            f"--KernelGatewayApp.auth_token={token}", f"--MappingKernelManager.root_dir={root}"]


def _answers(url: str, token: str) -> bool:
    request = urllib.request.Request(url + "/api", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(
    kind: ServerKind,
    base: Path,
    *,
    kernelspecs: Mapping[str, Mapping[str, Any]] | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 90.0,
    attempts: int = 3,
) -> RunningServer:
    """Start a ``kind`` server in ``base`` (an empty directory) and wait until its API answers with the token.

    The kernel-agent kernelspec (and ``kernelspecs``, name -> kernel.json
    content; default: :func:`default_kernelspecs`) go into ``base/prefix``,
    which is the server's only JUPYTER_PATH entry besides the system ones;
    its kernels start in ``base/root`` (mode 0755: on a root host the kernel
    reads its launch directory as an unrelated uid). The port is chosen
    free just before the start; if another process takes it first, the start
    is tried again (``attempts``).
    """
    root = base / "root"
    root.mkdir()
    root.chmod(0o755)
    extra = default_kernelspecs() if kernelspecs is None else kernelspecs
    jupyter_path = install_kernelspecs(base / "prefix", extra)
    env = _isolated_env(base, jupyter_path)
    token = secrets.token_hex(16)
    log_path = base / f"{kind}.log"
    problem = ""
    for _ in range(attempts):
        port = _free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen([*_argv(kind, port, token, root), *extra_args], cwd=root, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server = RunningServer(kind, f"http://127.0.0.1:{port}", token, process, base, root, log_path)
        try:
            deadline = time.monotonic() + startup_timeout
            while not _answers(server.url, token):
                # Waiting on the process's exit paces the polls and notices a server that failed to start.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.05)
                if process.poll() is not None or time.monotonic() > deadline:
                    break
            else:
                specs = server.api("GET", "/api/kernelspecs")["kernelspecs"]
                missing = {KERNEL_NAME, *extra} - set(specs)
                if missing:
                    raise RuntimeError(f"the {kind} does not offer the kernelspecs {sorted(missing)}: {server.log()}")
                return server
        except BaseException:
            server.stop()
            raise
        problem = server.log()
        server.stop()
        if "already in use" not in problem:
            break
    raise RuntimeError(f"the {kind} did not start in {startup_timeout} s; its output:\n{problem}")


@contextlib.contextmanager
def running_server(kind: ServerKind, base: Path, **options: Any) -> Iterator[RunningServer]:
    """:func:`start_server`, stopped (killed if need be) when the block ends, whatever happened in it."""
    server = start_server(kind, base, **options)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A Jupyter Server (``python -m jupyter_server``) offering the kernel-agent kernelspecs, one per module."""
    with running_server("jupyter-server", tmp_path_factory.mktemp("jupyter-server")) as server:
        yield server


@pytest.fixture(scope="module")
def kernel_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A Jupyter Kernel Gateway (``python -m kernel_gateway``) offering the kernel-agent kernelspecs, one per module."""
    with running_server("kernel-gateway", tmp_path_factory.mktemp("kernel-gateway")) as server:
        yield server
