"""The README's examples run exactly as written (the front door must stay true)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
# The first Session example (it records into the host's record directory): the end-to-end audit/replay test uses it.
SESSION_BLOCK = next(block for block in PYTHON_BLOCKS if 'Session("./work"' in block)


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"block-{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme_python_example_runs(code: str, tmp_path: Path) -> None:
    """Each python block runs in a fresh process, from an empty directory, and prints what its comments say."""
    (tmp_path / "work").mkdir()
    env = example_env(tmp_path)
    with contextlib.ExitStack() as stack:
        if "KERNEL_AGENT_SERVER" in code:  # the server example: a real Jupyter Server, as the README starts it
            from .remote.conftest import running_server

            (tmp_path / "server").mkdir()
            server = stack.enter_context(running_server("jupyter-server", tmp_path / "server"))
            env.update(KERNEL_AGENT_SERVER=server.url, KERNEL_AGENT_SERVER_TOKEN=server.token)
        if "PETSTORE_URL" in code:  # the OpenAPI example: a real HTTP API on 127.0.0.1 that wants the token
            from .tools.openapi_fixtures.server import serve

            api = stack.enter_context(serve(token="readme-token"))
            env.update(PETSTORE_URL=f"{api.url}/v1", PETSTORE_TOKEN="readme-token")
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip(), "the example printed nothing"
    for expected in re.findall(r"#\s+'?([^'#\n]+?)'?\s+/\s+'?([^'#\n]+?)'?$", code, re.M):
        for fragment in expected:
            assert fragment.strip().replace("\\n", "") in run.stdout, (fragment, run.stdout)


def example_env(tmp_path: Path) -> dict[str, str]:
    """The environment an example runs in: this venv first on PATH, recordings under ``tmp_path/records``."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "KERNEL_AGENT_RECORD_DIR": str(tmp_path / "records")}


def test_readme_names_the_two_commands() -> None:
    """The two front-door commands are in the README and .ci/run calls the test one."""
    text = README.read_text()
    assert "./dev.sh demo" in text and "./dev.sh test" in text
    assert "./dev.sh test" in (README.parent / ".ci" / "run").read_text()


def test_readme_session_is_audited_replayed_and_reexecuted(tmp_path: Path) -> None:
    """The README's first Session example leaves a notebook that audits, fails audit after a one-character edit
    (naming the cell), replays faithfully and re-executes under nbclient with the kernelspec."""
    import json

    import nbformat
    from nbclient import NotebookClient

    from kernel_agent.kernelspec.spec import install_kernelspec

    (tmp_path / "work").mkdir()
    env = example_env(tmp_path)
    first = subprocess.run([sys.executable, "-c", SESSION_BLOCK], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    (notebook,) = (tmp_path / "records").glob("kernel-agent-*.ipynb")
    assert list((tmp_path / "work").iterdir()) == []  # nothing of the record is where the kernel could write

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    assert cli("audit", str(notebook)).returncode == 0
    assert cli("replay", str(notebook)).returncode == 0

    original = notebook.read_text()
    document = json.loads(original)
    index = next(i for i, c in enumerate(document["cells"]) if "statistics.mean" in "".join(c["source"]))
    source = "".join(document["cells"][index]["source"])
    document["cells"][index]["source"] = source.replace("mean", "meaN", 1)
    notebook.write_text(json.dumps(document))
    tampered = cli("audit", str(notebook))
    assert tampered.returncode == 1 and f"index {index}" in tampered.stdout
    notebook.write_text(original)

    kernels = Path(install_kernelspec(user=False, prefix=str(tmp_path / "prefix"))).parent
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    recorded = nbformat.read(notebook, as_version=4)
    executed = nbformat.read(notebook, as_version=4)
    manager = KernelManager(kernel_name="kernel-agent", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(executed, km=manager, kernel_name="kernel-agent", timeout=120, allow_errors=True,
                            resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute(cwd=str(notebook.parent))
    finally:  # nbclient leaves running a kernel manager it was given
        if client.kc is not None:
            client.kc.stop_channels()
        manager.shutdown_kernel(now=True)
    streams = lambda nb: [[o.get("text") for o in c.get("outputs", []) if o["output_type"] == "stream"]  # noqa: E731
                          for c in nb.cells if c.cell_type == "code"]
    assert streams(executed) == streams(recorded)
