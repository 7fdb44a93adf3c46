"""Jupyter Enterprise Gateway 3.3 on 127.0.0.1 runs the sandboxed kernel through the gateway kernelspec variant.

Enterprise Gateway 3.x needs jupyter_client 6 (no provisioners) and pins
jupyter-server < 2 and pyzmq < 25, so it cannot share this venv: it is
installed from PyPI into its own venv, ``.venv-gateway/`` at the top of the
checkout, on first use (and reused after). If that fails the tests fail:
they are the only proof that the variant works with a real Enterprise
Gateway. Its local process proxy runs the kernelspec's argv, our launcher
(``python -m kernel_agent.kernelspec.gateway``), which confines the kernel
and relays the gateway's TCP ports to it.

Every wait is for a message or a process event, bounded only so that a broken
gateway fails the test instead of hanging it; nothing sleeps or measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from websockets.asyncio.client import connect

from kernel_agent.kernelspec.gateway import GATEWAY_KERNEL_NAME, gateway_kernel_spec_dict, install_gateway_kernelspec
from kernel_agent.sandbox.policy import MiB, ResourceLimits, SandboxPolicy

from .conftest import RunningServer, _free_port, _isolated_env
from .test_restart_endpoints import WAIT, KernelSocket

ENTERPRISE_GATEWAY = "jupyter-enterprise-gateway==3.3.0"
REPO = Path(__file__).resolve().parents[2]
GATEWAY_VENV = REPO / ".venv-gateway"
LIMITED_KERNEL = "kernel-agent-gateway-limited"
#: In the gateway's environment (so in the launcher's): it must not reach the kernel.
HOST_SECRET_VARIABLE = "KERNEL_AGENT_TEST_HOST_SECRET"
HOST_SECRET = "gateway-host-only-" + secrets.token_hex(8)
# Installing Enterprise Gateway from PyPI on first use takes about a minute here.
pytestmark = pytest.mark.timeout(900)


def gateway_python() -> Path:
    """The python of the Enterprise Gateway venv, created on first use (under a lock: tests may run in parallel)."""
    python = GATEWAY_VENV / "bin" / "python"
    marker = GATEWAY_VENV / "kernel-agent-installed"
    with (REPO / ".venv-gateway.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == ENTERPRISE_GATEWAY and python.exists():
            return python
        # Built beside it and renamed into place, so that no half-installed venv is ever taken for a ready one
        # (a venv's python works from its new path; only its console scripts would not, and none is used).
        staging = REPO / f".venv-gateway.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        steps = [[sys.executable, "-m", "venv", str(staging)],
                 [str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  ENTERPRISE_GATEWAY]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=800)
            if done.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                pytest.fail(f"could not install {ENTERPRISE_GATEWAY} into {GATEWAY_VENV} ({' '.join(step)}):\n"
                            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}", pytrace=False)
        (staging / "kernel-agent-installed").write_text(ENTERPRISE_GATEWAY)
        shutil.rmtree(GATEWAY_VENV, ignore_errors=True)
        staging.rename(GATEWAY_VENV)
        return python


def _install_kernelspecs(prefix: Path) -> Path:
    """The gateway variant, and one with a small memory limit (its policy travels in the launcher's argv)."""
    install_gateway_kernelspec(user=False, prefix=str(prefix))
    limited = gateway_kernel_spec_dict(policy=SandboxPolicy(limits=ResourceLimits(memory_bytes=384 * MiB)))
    limited["display_name"] = "kernel-agent (for gateways, small memory limit)"
    (prefix / "share" / "jupyter" / "kernels" / LIMITED_KERNEL).mkdir()
    (prefix / "share" / "jupyter" / "kernels" / LIMITED_KERNEL / "kernel.json").write_text(json.dumps(limited))
    return prefix / "share" / "jupyter"


@pytest.fixture(scope="module")
def enterprise_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Enterprise Gateway 3.3 on 127.0.0.1 with token auth, offering only the gateway kernelspecs."""
    python = gateway_python()
    base = tmp_path_factory.mktemp("enterprise-gateway")
    root = base / "root"
    root.mkdir(mode=0o755)
    (root / "host-secret.txt").write_text(HOST_SECRET)  # in the gateway's own directory
    env = _isolated_env(base, _install_kernelspecs(base / "prefix"))
    # This test host runs as root, and Enterprise Gateway refuses to start kernels for a user named root unless
    # told otherwise. The kernel itself never runs as root: the sandbox gives it a leased uid (checked below).
    env["EG_UNAUTHORIZED_USERS"] = ""
    env[HOST_SECRET_VARIABLE] = HOST_SECRET
    token = secrets.token_hex(16)
    port = _free_port()
    log_path = base / "enterprise-gateway.log"
    process = subprocess.Popen(
        [str(python), "-m", "enterprise_gateway", "--EnterpriseGatewayApp.ip=127.0.0.1",
         f"--EnterpriseGatewayApp.port={port}", "--EnterpriseGatewayApp.port_retries=0",
         f"--EnterpriseGatewayApp.auth_token={token}",
         f"--EnterpriseGatewayApp.default_kernel_name={GATEWAY_KERNEL_NAME}"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer("enterprise-gateway", f"http://127.0.0.1:{port}", token,  # type: ignore[arg-type]
                           process, base, root, log_path)
    listening = threading.Event()

    def copy_log() -> None:
        """Keep the gateway's output in its log (never a full pipe), and notice when it listens (or ends)."""
        assert process.stdout is not None
        with log_path.open("wb") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if b"is available at" in line:
                    listening.set()
        listening.set()

    copier = threading.Thread(target=copy_log, daemon=True)
    copier.start()
    try:
        if not listening.wait(120) or process.poll() is not None:
            pytest.fail(f"Enterprise Gateway did not start:\n{server.log()}", pytrace=False)
        yield server
    finally:
        server.stop()
        copier.join(WAIT)  # the pipe ends with the gateway's process group
        assert process.stdout is not None
        process.stdout.close()


def _launcher(kernel_id: str) -> psutil.Process:
    """The launcher the gateway started for ``kernel_id`` (its connection file is named after the kernel)."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "kernel_agent.kernelspec.gateway" in cmdline and any(kernel_id in arg for arg in cmdline):
            return process
    raise AssertionError(f"no launcher runs for kernel {kernel_id}")


@contextlib.asynccontextmanager
async def _kernel(server: RunningServer, name: str = GATEWAY_KERNEL_NAME) -> AsyncIterator[tuple[str, KernelSocket]]:
    """A kernel started through the REST API, and a websocket to it that has seen the kernel answer."""
    kernel_id = str((await asyncio.to_thread(server.api, "POST", "/api/kernels", {"name": name}))["id"])
    try:
        async with connect(server.ws_url(f"/api/kernels/{kernel_id}/channels"), additional_headers=server.headers,
                           max_size=None) as connection:
            socket = KernelSocket(connection)
            await socket.ready()
            yield kernel_id, socket
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(server.api, "DELETE", f"/api/kernels/{kernel_id}")


def _facts(secret_file: Path) -> str:
    """A cell that prints, as JSON, what the kernel can see of the host."""
    return f"""
import json, os, socket
facts = {{"sandbox": os.environ.get("KERNEL_AGENT_SANDBOX"), "uid": os.getuid(), "cwd": os.getcwd(),
         "secret_variable": {HOST_SECRET_VARIABLE!r} in os.environ,
         "secret_file": os.path.exists({str(secret_file)!r})}}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    facts["network"] = "connected"
except OSError as exc:
    facts["network"] = exc.errno
print(json.dumps(facts))
"""


async def test_the_gateway_runs_the_kernel_confined(enterprise_gateway: RunningServer) -> None:
    """A kernel started through the REST API runs in the sandbox: no network, no host secrets, not root."""
    async with _kernel(enterprise_gateway) as (kernel_id, socket):
        reply, stdout = await socket.execute(_facts(enterprise_gateway.root_dir / "host-secret.txt"))
        assert reply["content"]["status"] == "ok", reply
        facts = json.loads(stdout)
        assert facts["sandbox"] == "bwrap"
        assert facts["network"] == 101  # ENETUNREACH: the sandbox has a network namespace of its own
        assert not facts["secret_variable"] and not facts["secret_file"]
        assert facts["uid"] != 0
        assert Path(facts["cwd"]).name.startswith("kernel-agent-")  # a private workspace, not the gateway's root
        launcher = _launcher(kernel_id)
        assert "bwrap" in {child.name() for child in launcher.children(recursive=True)}

        # The host's tools are not there (no kernel-agent host attached): the SDK says so instead of failing oddly.
        reply, stdout = await socket.execute(
            "try:\n    tools.anything(1)\nexcept ToolError as e:\n    print(type(e).__name__)")
        assert stdout == "NoHostError\n", reply


@pytest.mark.serial  # a restart through the gateway's REST API ran past its timeout with three workers on 2 cores
async def test_interrupt_restart_and_shutdown_through_the_rest_api(enterprise_gateway: RunningServer) -> None:
    """Interrupt keeps the state, restart starts a fresh sandbox behind the same websocket, shutdown removes all."""
    async with _kernel(enterprise_gateway) as (kernel_id, socket):
        reply, stdout = await socket.execute("import os\nkept = 41\nprint(os.getcwd())")
        first_workspace = Path(stdout.strip())
        first_launcher = _launcher(kernel_id)

        sleeping = await socket.send("shell", "execute_request", {
            "code": "import time\nprint('sleeping', flush=True)\ntime.sleep(600)", "silent": False,
            "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        await socket.until(lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == sleeping)
        await asyncio.to_thread(enterprise_gateway.api, "POST", f"/api/kernels/{kernel_id}/interrupt")
        interrupted = await socket.until(lambda m: m["msg_type"] == "execute_reply"
                                         and m["parent_header"].get("msg_id") == sleeping)
        assert interrupted["content"]["status"] == "error"
        assert interrupted["content"]["ename"] == "KeyboardInterrupt"
        reply, stdout = await socket.execute("print(kept + 1)")
        assert (reply["content"]["status"], stdout) == ("ok", "42\n"), reply["content"]

        await asyncio.to_thread(enterprise_gateway.api, "POST", f"/api/kernels/{kernel_id}/restart")
        await socket.ready()  # the same websocket reaches the new kernel: the gateway's TCP ports did not move
        reply, stdout = await socket.execute("print('kept' in dir())")
        assert stdout == "False\n", reply
        # The old sandbox is gone with its launcher, its private workspace removed; a new launcher serves.
        await asyncio.to_thread(first_launcher.wait, WAIT)
        assert not first_workspace.exists()
        second_launcher = _launcher(kernel_id)
        assert second_launcher.pid != first_launcher.pid
        sandbox = second_launcher.children(recursive=True)

    # _kernel deleted the kernel through the REST API: the launcher and everything it started end.
    gone, alive = await asyncio.to_thread(psutil.wait_procs, [second_launcher, *sandbox], WAIT)
    assert alive == []
    assert second_launcher in gone


async def test_a_kernel_killed_for_memory_is_restarted_on_the_same_ports(enterprise_gateway: RunningServer) -> None:
    """The sandbox kills a kernel over its memory limit; the launcher says why and exits; the gateway restarts it
    on the same TCP ports, so the open websocket runs code in the new kernel."""
    async with _kernel(enterprise_gateway, LIMITED_KERNEL) as (kernel_id, socket):
        reply, _ = await socket.execute("before = 1")
        assert reply["content"]["status"] == "ok"
        launcher = _launcher(kernel_id)
        await socket.send("shell", "execute_request", {
            "code": "hog = []\nwhile True:\n    hog.append(b'\\x01' * (32 * 1024**2))", "silent": False,
            "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        await socket.until(lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "restarting")
        await asyncio.to_thread(launcher.wait, WAIT)  # the gateway reaps it: psutil cannot tell its status
        assert "the kernel was killed for exceeding its memory limit" in enterprise_gateway.log(100_000)

        await socket.ready()
        reply, stdout = await socket.execute("print('before' in dir(), 6 * 7)")
        assert reply["content"]["status"] == "ok" and stdout == "False 42\n"


async def test_an_output_connection_cut_by_an_oversized_message_is_replaced(
        enterprise_gateway: RunningServer) -> None:
    """48 MB in one frame is over the relay's 40 MiB iopub cap: libzmq cuts that connection for good, and the
    launcher replaces it, so output reaches the gateway again (what was sent meanwhile is lost)."""
    async with _kernel(enterprise_gateway) as (_, socket):
        big = await socket.send("shell", "execute_request", {
            "code": "from IPython.display import display\ndisplay({'text/plain': 'x' * (48 * 1024**2)}, raw=True)",
            "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False,
            "stop_on_error": True})
        # Only the reply is awaited: the cell's idle status may be published while iopub is being replaced.
        reply = await socket.until(lambda m: m["msg_type"] == "execute_reply"
                                   and m["parent_header"].get("msg_id") == big)
        assert reply["content"]["status"] == "ok"
        await socket.ready()  # iopub reaches the kernel again
        reply, stdout = await socket.execute("print('after the cut')")
        assert reply["content"]["status"] == "ok" and stdout == "after the cut\n"


def host_secret_digest(text: str) -> str:
    """A tool that needs the host's secret: it runs on the host, and only its answer reaches the kernel."""
    import hashlib

    return hashlib.sha256((os.environ[HOST_SECRET_VARIABLE] + text).encode()).hexdigest()[:12]


async def test_a_session_through_enterprise_gateway_calls_host_tools(
        enterprise_gateway: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Session(server=JupyterServer(...)) on Enterprise Gateway: cells run in the confined kernel, tools on this
    host with its secret, interrupt and restart through the gateway; the recorded notebook audits intact."""
    import hashlib

    from kernel_agent import CellStatus, JupyterServer, Session, tool_from_function
    from kernel_agent.verify.audit import audit_notebook

    monkeypatch.setenv(HOST_SECRET_VARIABLE, HOST_SECRET)
    server = JupyterServer(enterprise_gateway.url, token=enterprise_gateway.token, kernel_name=GATEWAY_KERNEL_NAME)
    notebook = tmp_path / "through-enterprise-gateway.ipynb"
    expected = hashlib.sha256((HOST_SECRET + "cell").encode()).hexdigest()[:12]
    async with Session(server=server, tools=[tool_from_function(host_secret_digest)], notebook=notebook) as session:
        first = await session.execute(
            "import asyncio, os\n"
            "digest = tools.host_secret_digest('cell')\n"
            "many = await asyncio.gather(*(tools.host_secret_digest.aio('cell') for _ in range(5)))\n"
            f"print(digest, len(set(many)), {HOST_SECRET_VARIABLE!r} in os.environ)")
        assert first.stdout == f"{expected} 1 False\n", first
        assert [call.status.value for call in first.tool_calls] == ["ok"] * 6

        stuck = await session.execute("import time\nwhile True: time.sleep(0.05)", timeout=1)
        assert stuck.status is CellStatus.TIMEOUT and stuck.error is not None
        assert stuck.error.ename == "KeyboardInterrupt" and not stuck.state_lost
        assert (await session.execute("print(digest == " + repr(expected) + ")")).stdout == "True\n"

        await session.restart()
        fresh = await session.execute("print('digest' in dir(), tools.host_secret_digest('cell'))")
        assert fresh.stdout == f"False {expected}\n", fresh
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    assert HOST_SECRET not in notebook.read_text() and enterprise_gateway.token not in notebook.read_text()


def test_the_shipped_kernel_json_is_the_generated_one() -> None:
    """kernelspec/gateway/kernel-agent-gateway/kernel.json is gateway_kernel_spec_dict() with a bare `python` (the
    installed one names this interpreter: the gateway's own lacks kernel-agent)."""
    shipped = json.loads((REPO / "kernelspec" / "gateway" / GATEWAY_KERNEL_NAME / "kernel.json").read_text())
    expected = gateway_kernel_spec_dict()
    assert Path(expected["argv"][0]).is_absolute()
    expected["argv"][0] = "python"
    assert shipped == expected


def test_the_command_line_installs_the_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kernel-agent kernelspec install --variant gateway` writes kernel.json naming this interpreter, and the logos."""
    from click.testing import CliRunner

    from kernel_agent.cli.main import cli

    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    result = CliRunner().invoke(cli, ["kernelspec", "install", "--variant", "gateway", "--sys-prefix"])
    assert result.exit_code == 0, result.output
    installed = tmp_path / "share" / "jupyter" / "kernels" / GATEWAY_KERNEL_NAME
    assert f"installed the {GATEWAY_KERNEL_NAME} kernelspec in {installed}" in result.output
    assert json.loads((installed / "kernel.json").read_text()) == gateway_kernel_spec_dict()
    assert sorted(p.name for p in installed.iterdir()) == [
        "kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"]


async def test_any_jupyter_client_runs_the_variant(tmp_path: Path) -> None:
    """jupyter_client 8 without our provisioner runs the argv too: TCP ports relayed to the sandboxed kernel, and
    stdin routed back to the client whose shell request asked for input."""
    destination = Path(install_gateway_kernelspec(user=False, prefix=str(tmp_path)))
    manager = AsyncKernelManager(kernel_name=GATEWAY_KERNEL_NAME,
                                 kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(destination.parent)]))
    await manager.start_kernel()
    assert manager.transport == "tcp"
    launcher = psutil.Process(getattr(manager.provisioner, "pid", 0))
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=WAIT)
        client.execute("answer = input('name? ')", allow_stdin=True)
        prompt = await client.get_stdin_msg(timeout=WAIT)
        assert prompt["content"]["prompt"] == "name? "
        client.input("kernel-agent")
        assert (await client.get_shell_msg(timeout=WAIT))["content"]["status"] == "ok"
        said: list[str] = []
        await client.execute_interactive("print(answer)", timeout=WAIT,
                                         output_hook=lambda m: said.append(m["content"].get("text", "")))
        assert "".join(said) == "kernel-agent\n"

        sandbox = launcher.children(recursive=True)
        assert "bwrap" in {child.name() for child in sandbox}
    finally:
        client.stop_channels()
        await manager.shutdown_kernel()
    gone, alive = await asyncio.to_thread(psutil.wait_procs, [launcher, *sandbox], WAIT)
    assert alive == [] and launcher in gone
