"""The command line on a real Jupyter Server: ``run --server``, and ``sessions list / attach / stop``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from kernel_agent import Session
from kernel_agent.runtime.remote import JupyterServer
from kernel_agent.verify.audit import audit_notebook

from .conftest import RunningServer
from .test_sessions import TOOLS

KERNEL_AGENT = Path(sys.executable).parent / "kernel-agent"
REPO = Path(__file__).resolve().parents[2]
TOOLS_SPEC = "tests.remote.test_sessions:TOOLS"


def kernel_agent(server: RunningServer, *args: str, token: str | None = None,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command with the server's URL and token in its environment (never on its command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_"))}
    env.update(KERNEL_AGENT_SERVER=server.url, KERNEL_AGENT_SERVER_TOKEN=token or server.token,
               PYTHONPATH=str(REPO))
    return subprocess.run([str(KERNEL_AGENT), *args], cwd=REPO, env=env, input=stdin, capture_output=True,
                          text=True, timeout=180)


def test_run_puts_the_kernel_on_the_server(jupyter_server: RunningServer, tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"text": "Adding on the host.", "code": "total = tools.add(20, 22)\nprint(total)"},
        {"text": "Done.", "code": "final_answer(total)"},
    ]))
    notebook = tmp_path / "run.ipynb"
    done = kernel_agent(jupyter_server, "run", "add", "--model", f"scripted:{script}", "--tools", TOOLS_SPEC,
                        "--notebook", str(notebook))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answer:\n42" in done.stdout
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    header = json.loads(notebook.read_text())["metadata"]["kernel_agent"]["session"]
    assert header["kernel"]["kind"] == "jupyter-server" and header["kernel"]["url"] == jupyter_server.url
    assert jupyter_server.token not in notebook.read_text()


def test_list_attach_and_stop_a_detached_session(jupyter_server: RunningServer, tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir(mode=0o700)
    notebook = records / "long.ipynb"

    async def detach() -> str:
        server = JupyterServer(jupyter_server.url, token=jupyter_server.token)
        session = await Session(server=server, tools=TOOLS, notebook=notebook).start()
        await session.execute("data = [tools.add(i, 1) for i in range(3)]")
        return (await session.detach()).kernel_id

    kernel_id = asyncio.run(detach())
    listed = kernel_agent(jupyter_server, "sessions", "list", "--record-dir", str(records), "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = [row for row in json.loads(listed.stdout) if row["kernel_id"] == kernel_id]
    assert row["detached_record"] == str(notebook) and row["kernel_name"] == "kernel-agent"

    attached = kernel_agent(jupyter_server, "sessions", "attach", kernel_id, "--notebook", str(notebook),
                            "--tools", TOOLS_SPEC, stdin="print(data, tools.add(sum(data), 0))")
    assert attached.returncode == 0, attached.stderr
    assert attached.stdout == "[1, 2, 3] 6\n"
    assert f"detached again from kernel {kernel_id}" in attached.stderr

    stopped = kernel_agent(jupyter_server, "sessions", "stop", kernel_id, "--notebook", str(notebook),
                           "--tools", TOOLS_SPEC)
    assert stopped.returncode == 0, stopped.stderr
    assert kernel_id not in {k["id"] for k in jupyter_server.api("GET", "/api/kernels")}
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    assert len(report.summary.gaps) == 2 and all(gap.attached_at for gap in report.summary.gaps)


def test_a_bad_token_is_one_line_without_the_token(jupyter_server: RunningServer) -> None:
    wrong = "not-the-token-" + "x" * 16
    listed = kernel_agent(jupyter_server, "sessions", "list", token=wrong)
    assert listed.returncode == 1
    assert listed.stderr.startswith("kernel-agent: error:") and len(listed.stderr.splitlines()) == 1
    assert wrong not in listed.stderr and jupyter_server.token not in listed.stderr
