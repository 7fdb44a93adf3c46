"""Packages a kernel asks for, installed by the host as its policy allows: real pip, real sandbox, offline.

The wheels are built by the tests into a local directory; the host's policy
points pip at it (``--no-index --find-links``, isolated from the machine's
pip configuration). The kernel never names a source.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_agent import Session
from kernel_agent.errors import PackageInstallError, PackageNotAllowedError
from kernel_agent.packages import PackagePolicy
from kernel_agent.packages.policy import parse_requirement
from kernel_agent.protocol import wire
from kernel_agent.record import format as fmt
from tests.packages.wheels import build_sdist, build_wheel, sha256_of


class Wheelhouse:
    def __init__(self, root: Path) -> None:
        self.dir = root / "wheelhouse"
        self.dir.mkdir()
        self.one = build_wheel(self.dir, "tinypkg", "1.0", "VALUE = 'one'\n")
        self.two = build_wheel(self.dir, "tinypkg", "2.0", "VALUE = 'two'\n")
        self.other = build_wheel(self.dir, "otherpkg", "1.0", "VALUE = 'other'\n")
        self.marker = root / "sdist-was-built"
        build_sdist(self.dir, "sdistonly", "1.0", self.marker)

    def policy(self, *allow: str, **options: object) -> PackagePolicy:
        return PackagePolicy(allow=allow, no_index=True, find_links=[str(self.dir)], isolated=True,
                             **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    return Wheelhouse(tmp_path_factory.mktemp("packages"))


def installed_names(session: Session) -> list[str]:
    assert session.packages_dir is not None
    return sorted(p.name for p in session.packages_dir.iterdir() if p.name != "__pycache__")


async def test_an_allowed_package_is_installed_by_the_host_recorded_and_importable(
        house: Wheelhouse, tmp_path: Path, workspace: Path) -> None:
    notebook = tmp_path / "record.ipynb"
    async with Session(workspace, package_policy=house.policy("tinypkg<2"), notebook=notebook) as session:
        result = await session.execute("%pip install tinypkg\nimport tinypkg\nprint(tinypkg.VALUE)")
        assert result.ok, result.error
        assert result.stdout.splitlines() == [f"Installed tinypkg 1.0 (sha256 {sha256_of(house.one)[:12]})", "one"]
        assert installed_names(session) == ["tinypkg-1.0.dist-info", "tinypkg.py"]
        # The kernel reads the package directory but cannot change it, however it tries.
        attack = await session.execute(
            "import os, tinypkg\nd = os.path.dirname(tinypkg.__file__)\nrefused = []\n"
            "for attempt in (lambda: open(tinypkg.__file__, 'a'), lambda: open(os.path.join(d, 'evil.py'), 'w'),\n"
            "                lambda: os.rename(tinypkg.__file__, os.path.join(d, 'x.py')),\n"
            "                lambda: os.unlink(tinypkg.__file__), lambda: os.chmod(d, 0o777)):\n"
            "    try:\n        attempt()\n    except OSError:\n        refused.append(True)\n"
            "print(len(refused))")
        assert attack.stdout.strip() == "5"
        await session.restart()  # a fresh kernel (a new run directory) gets the session's packages again
        assert (await session.execute("import tinypkg\ntinypkg.VALUE")).result == "'one'"
    assert installed_names_after(notebook) == [
        {"name": "tinypkg", "version": "1.0", "wheel": house.one.name, "sha256": sha256_of(house.one)}]


def installed_names_after(notebook: Path) -> list[dict[str, str]]:
    """The installs the notebook records, from its cells' tool calls (results as the bridge encoded them)."""
    document = json.loads(notebook.read_text())
    found = []
    for cell in document["cells"]:
        for call in cell["metadata"].get(fmt.METADATA_KEY, {}).get("tool_calls", []):
            if call["tool"] == "packages.install" and call["status"] == "ok":
                found += wire.decode(call["result"], [])["installed"]
    return found


async def test_refusals_are_named_in_the_kernel_and_install_nothing(house: Wheelhouse, workspace: Path) -> None:
    async with Session(workspace, package_policy=house.policy("tinypkg", "sdistonly")) as session:
        refused = await session.execute("%pip install otherpkg")
        assert refused.error is not None and refused.error.ename == "PackageNotAllowedError"
        assert "otherpkg is not allowed" in refused.error.evalue
        sdist = await session.execute("%pip install sdistonly")
        assert sdist.error is not None and sdist.error.ename == "PackageInstallError"
        assert not house.marker.exists()  # no build code ran on the host
        for line, expected in [("%pip install --index-url http://example.invalid tinypkg", "UsageError"),
                               ("%pip install 'tinypkg @ file:///etc/passwd'", "PackageInstallError"),
                               ("%pip install 'tinypkg[extra]'", "PackageInstallError"),
                               ("%pip download tinypkg", "UsageError"),
                               ("tools.packages.install(requirements=['-r/etc/passwd'])", "ToolError")]:
            bad = await session.execute(line)
            assert bad.error is not None and bad.error.ename == expected, (line, bad.error)
        assert installed_names(session) == []


async def test_a_session_without_a_package_policy_says_so(house: Wheelhouse, workspace: Path) -> None:
    async with Session(workspace) as session:
        result = await session.execute("%pip install tinypkg")
        assert result.error is not None and result.error.ename == "PackagesUnavailableError"
        assert "no package policy" in result.error.evalue


async def test_an_approver_decides_what_the_allowlist_does_not_cover(house: Wheelhouse, workspace: Path) -> None:
    asked: list[str] = []

    async def approve(requirement: object) -> bool:
        asked.append(str(requirement))
        return str(requirement) == "otherpkg"

    async with Session(workspace, package_policy=house.policy(approve=approve)) as session:
        assert (await session.execute("%pip install otherpkg\nimport otherpkg\notherpkg.VALUE")).result == "'other'"
        assert (await session.execute("%pip install tinypkg")).error.ename == "PackageNotAllowedError"  # type: ignore[union-attr]
    assert asked == ["otherpkg", "tinypkg"]


def test_requirements_are_names_and_versions_only() -> None:
    assert str(parse_requirement("Tiny_Pkg >=1, <2")) == "tiny-pkg<2,>=1"
    for bad in ["", "-e .", "--index-url=x", "pkg @ https://x/y.whl", "pkg; python_version>'3'", "pkg[all]",
                "x" * 300, "./local/dir", None, 3]:
        with pytest.raises(PackageInstallError):
            parse_requirement(bad)


async def test_the_allowlist_narrows_a_request_to_the_allowed_versions() -> None:
    policy = PackagePolicy(allow=["tinypkg<2"])
    assert str(await policy.grant(parse_requirement("tinypkg>=1"))) == "tinypkg<2,>=1"
    with pytest.raises(PackageNotAllowedError):
        await PackagePolicy().grant(parse_requirement("tinypkg"))


async def test_kernel_agent_run_allows_the_packages_it_is_told_to(house: Wheelhouse, tmp_path: Path) -> None:
    """`kernel-agent run --allow-package`: the model's %pip reaches the host, which installs the allowed wheel."""
    script = tmp_path / "steps.json"
    script.write_text(json.dumps([
        {"text": "Install and use it.", "code": "%pip install tinypkg\nimport tinypkg\nfinal_answer(tinypkg.VALUE)"}]))
    command = [sys.executable, "-m", "kernel_agent.cli.main", "run", "use tinypkg", "--model", f"scripted:{script}",
               "--notebook", str(tmp_path / "run.ipynb"), "--quiet", "--allow-package", "tinypkg<2",
               "--find-links", str(house.dir), "--no-index"]
    run = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=300,
                                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("answer:\none")
