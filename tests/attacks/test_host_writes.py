"""Writing outside the workspace never reaches the host.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

import os
import sysconfig
import tempfile
from pathlib import Path

import pytest

import kernel_agent
from kernel_agent import Session

from .support import (
    REPO,
    TAG,
    HostBaseline,
    HostSecrets,
    assert_host_healthy,
    assert_session_healthy,
    attack,
    fingerprint,
    module_loop,
    reported,
)

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
