"""The kernelspec gives any Jupyter frontend the same sandboxed kernel."""

from __future__ import annotations

import json
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from kernel_agent.kernelspec import KERNEL_NAME, install_kernelspec

from .conftest import sandbox_processes


def test_installed_spec_names_the_sandbox_provisioner(tmp_path: Path) -> None:
    """kernel.json uses message interrupts and the kernel-agent-sandbox provisioner."""
    destination = Path(install_kernelspec(user=False, prefix=str(tmp_path)))
    spec = json.loads((destination / "kernel.json").read_text())
    assert spec["interrupt_mode"] == "message"
    assert spec["metadata"]["kernel_provisioner"]["provisioner_name"] == "kernel-agent-sandbox"
    assert spec["argv"][1:] == ["-m", "kernel_agent.kernel", "-f", "{connection_file}"]


async def test_plain_jupyter_client_gets_a_sandboxed_kernel(tmp_path: Path) -> None:
    """jupyter_client (what JupyterLab and nbclient use) launches the kernelspec confined, and cleans up."""
    destination = Path(install_kernelspec(user=False, prefix=str(tmp_path / "prefix")))
    notebook_dir = tmp_path / "notebooks"
    notebook_dir.mkdir()
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                 kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(destination.parent)]))
    await manager.start_kernel(cwd=str(notebook_dir))
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        outputs: list[str] = []
        code = ("import os, socket\nprint(os.environ.get('KERNEL_AGENT_SANDBOX'), os.getcwd())\n"
                "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\nexcept OSError as e:\n    print(e.errno)")
        reply = await client.execute_interactive(
            code, timeout=60, output_hook=lambda m: outputs.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        lines = "".join(outputs).split()
        assert lines[:2] == ["bwrap", str(notebook_dir)]
        assert lines[2] == "101"  # ENETUNREACH: no network namespace in common with the host
        run_dir = manager.provisioner.run_dir
        assert sandbox_processes(run_dir)
        no_host: list[str] = []
        code = "try:\n    tools.anything(1)\nexcept ToolError as e:\n    print(type(e).__name__, '|', e.message)"
        await client.execute_interactive(code, timeout=60,
                                         output_hook=lambda m: no_host.append(m["content"].get("text", "")))
        name, message = "".join(no_host).split(" | ")
        assert name == "NoHostError" and "no kernel-agent host is attached" in message
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
    assert not run_dir.exists()
    assert sandbox_processes(run_dir) == []
