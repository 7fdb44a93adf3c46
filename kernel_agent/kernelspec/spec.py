"""The kernel-agent kernelspec: one definition for our sessions and for Jupyter frontends."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

from kernel_agent.sandbox.policy import SandboxPolicy

KERNEL_NAME = "kernel-agent"
PROVISIONER_NAME = "kernel-agent-sandbox"
# The kernelspec folder (kernel.json template and logos): inside the package when installed from a
# wheel (force-included), at the top of the source tree in a checkout or an editable install.
_PACKAGE = Path(__file__).resolve().parent.parent
_PACKAGED_ASSETS = _PACKAGE / "_kernelspec" / KERNEL_NAME
_SOURCE_ASSETS = _PACKAGE.parent / "kernelspec" / KERNEL_NAME


def assets_dir() -> Path:
    """Where the kernelspec's logos and kernel.json template are."""
    return _PACKAGED_ASSETS if _PACKAGED_ASSETS.is_dir() else _SOURCE_ASSETS


def kernel_spec_dict(policy: SandboxPolicy | None = None, workspace: Path | None = None) -> dict[str, Any]:
    """The kernel.json content; ``policy`` and ``workspace`` go to the sandbox provisioner."""
    config: dict[str, Any] = {}
    if policy is not None:
        config["policy"] = policy.model_dump(mode="json", exclude_defaults=True)
    if workspace is not None:
        config["workspace"] = str(workspace)
    return {
        # Normalised but not resolved: a venv's python is a symlink that must stay the venv's,
        # and a path with ".." in it does not exist inside the sandbox.
        "argv": [os.path.normpath(os.path.abspath(sys.executable)), "-m", "kernel_agent.kernel",
                 "-f", "{connection_file}"],
        "display_name": "kernel-agent (sandboxed Python)",
        "language": "python",
        # SIGINT cannot cross the sandbox's pid namespace: interrupts travel
        # as control-channel messages, and the kernel signals itself.
        "interrupt_mode": "message",
        "metadata": {
            "debugger": False,
            "kernel_provisioner": {"provisioner_name": PROVISIONER_NAME, "config": config},
        },
    }


class SessionKernelSpecManager(KernelSpecManager):
    """Serves the one in-memory kernelspec of a session (no files are looked up)."""

    def __init__(self, spec: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._spec = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """Return the session's spec whatever name is asked for."""
        return KernelSpec(resource_dir="", **self._spec)


def install_kernelspec(*, user: bool = True, prefix: str | None = None, name: str = KERNEL_NAME,
                       spec: dict[str, Any] | None = None) -> str:
    """Install the kernelspec (or a variant: ``name`` and its ``spec``) for Jupyter frontends; return where it went."""
    with tempfile.TemporaryDirectory() as staging:
        source = Path(staging) / name
        source.mkdir()
        logos = sorted(assets_dir().glob("logo-*"))
        if not logos:
            raise FileNotFoundError(f"the kernelspec's logos are missing from {assets_dir()}; reinstall kernel-agent")
        for asset in logos:
            shutil.copy(asset, source / asset.name)
        (source / "kernel.json").write_text(json.dumps(spec or kernel_spec_dict(), indent=2) + "\n")
        destination: str = KernelSpecManager().install_kernel_spec(str(source), name, user=user, prefix=prefix)
    return destination
