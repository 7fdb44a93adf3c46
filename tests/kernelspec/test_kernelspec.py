"""The kernelspec gives any Jupyter frontend the same sandboxed kernel."""

from __future__ import annotations

import json
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from kernel_agent.kernelspec.spec import KERNEL_NAME, install_kernelspec

from ..conftest import sandbox_processes


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


def test_the_shipped_kernel_json_is_the_generated_one() -> None:
    """kernelspec/kernel-agent/kernel.json (what the wheel installs for Jupyter) is kernel_spec_dict() with a bare
    `python`, which jupyter_client replaces with the interpreter it runs in."""
    from kernel_agent.kernelspec.spec import assets_dir, kernel_spec_dict

    shipped = json.loads((assets_dir() / "kernel.json").read_text())
    expected = kernel_spec_dict()
    expected["argv"][0] = "python"
    assert shipped == expected


def test_installed_spec_has_its_logos(tmp_path: Path) -> None:
    destination = Path(install_kernelspec(user=False, prefix=str(tmp_path)))
    assert sorted(p.name for p in destination.iterdir()) == [
        "kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"]
    assert (destination / "logo-64x64.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_wheel_ships_the_kernelspec_with_its_logos(tmp_path: Path) -> None:
    """A wheel built from this tree installs share/jupyter/kernels/kernel-agent (kernel.json and logos), so
    `jupyter kernelspec list` shows kernel-agent right after `pip install`, and carries the logos in the package."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
                            str(root)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("kernel_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/")[0] for n in names if n.endswith(".data/data/share/jupyter/kernels/kernel-agent/kernel.json"))
    for name in ("kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
        assert f"{data}/data/share/jupyter/kernels/kernel-agent/{name}" in names
        assert f"kernel_agent/_kernelspec/kernel-agent/{name}" in names
