"""Replay and resume install the recorded packages again (the same wheels), only if their own policy allows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from kernel_agent import Session
from kernel_agent.errors import PackageInstallError, PackageNotAllowedError
from kernel_agent.packages.recorded import recorded_installs
from kernel_agent.record.journal import journal_path_for
from kernel_agent.record.recording import RecordedCell
from kernel_agent.verify.replay import replay
from tests.packages.test_install import Wheelhouse, installed_names, sha256_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    return Wheelhouse(tmp_path_factory.mktemp("packages"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recorded(house: Wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording that installed tinypkg 1.0 (2.0 is in the wheelhouse too) and used it."""
    root = tmp_path_factory.mktemp("recorded")
    notebook = root / "analysis.ipynb"
    (root / "workspace").mkdir()
    async with Session(root / "workspace", package_policy=house.policy("tinypkg"), notebook=notebook) as session:
        assert (await session.execute("%pip install tinypkg==1.0")).ok
        assert (await session.execute("import tinypkg\nvalue = tinypkg.VALUE\nvalue")).result == "'one'"
    return notebook


async def test_replay_installs_the_recorded_version_when_its_policy_allows(house: Wheelhouse, recorded: Path) -> None:
    report = await replay(recorded, package_policy=house.policy("tinypkg"))  # would allow 2.0 as well
    assert report.faithful, report.divergent_cells
    assert report.cells == 2


async def test_replay_refuses_packages_its_policy_does_not_allow(house: Wheelhouse, recorded: Path) -> None:
    for policy in (None, house.policy(), house.policy("tinypkg>=2"), house.policy("otherpkg")):
        with pytest.raises(PackageNotAllowedError, match=r"tinypkg"):
            await replay(recorded, package_policy=policy)


async def test_replay_installs_only_the_recorded_file(house: Wheelhouse, recorded: Path, tmp_path: Path) -> None:
    """A notebook whose recorded hash was changed gets nothing installed, whatever the wheelhouse holds."""
    edited = tmp_path / "edited.ipynb"
    edited.write_text(recorded.read_text().replace(sha256_of(house.one), "0" * 64))
    with pytest.raises(PackageInstallError, match="pip download failed"):
        await replay(edited, package_policy=house.policy("tinypkg"))


async def test_resume_installs_the_recorded_version_then_asks_its_own_policy(
        house: Wheelhouse, recorded: Path, tmp_path: Path) -> None:
    copy = tmp_path / "resumed.ipynb"  # resume records on into the notebook: a copy, with its journal
    copy.write_bytes(recorded.read_bytes())
    journal_path_for(copy).write_bytes(journal_path_for(recorded).read_bytes())
    with pytest.raises(PackageNotAllowedError):
        await Session.resume(copy)
    session = await Session.resume(copy, package_policy=house.policy("tinypkg", "otherpkg"))
    try:
        assert session.resume_differences == []
        assert installed_names(session) == ["tinypkg-1.0.dist-info", "tinypkg.py"]
        assert (await session.execute("value")).result == "'one'"
        live = await session.execute("%pip install otherpkg\nimport otherpkg\notherpkg.VALUE")
        assert live.result == "'other'", live.error
    finally:
        await session.close()


async def test_the_replay_command_installs_only_what_its_options_allow(house: Wheelhouse, recorded: Path) -> None:
    def run(*options: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "kernel_agent.cli.main", "replay", str(recorded), *options]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    refused = await asyncio.to_thread(run)
    assert refused.returncode == 2
    assert "tinypkg==1.0" in refused.stderr and "package policy" in refused.stderr
    allowed = await asyncio.to_thread(run, "--allow-package", "tinypkg", "--find-links", str(house.dir), "--no-index")
    assert allowed.returncode == 0, allowed.stderr
    assert "faithful" in allowed.stdout


def recorded_cell(*installed: object) -> RecordedCell:
    call = {"tool": "packages.install", "status": "ok", "result": {"installed": list(installed)}}
    return RecordedCell(index=3, seq=3, source="%pip install x", status="ok", outputs=[], calls=[call],
                        final_answer=(False, None), duration=None, timed_out=False)


@pytest.mark.parametrize("crafted", [
    {"name": "--index-url=http://evil", "version": "1.0", "sha256": "a" * 64},
    {"name": "tinypkg==1.0", "version": "1.0", "sha256": "a" * 64},
    {"name": "tinypkg @ file:///etc", "version": "1.0", "sha256": "a" * 64},
    {"name": "tinypkg", "version": "1.0; rm -rf /", "sha256": "a" * 64},
    {"name": "tinypkg", "version": "1.0", "sha256": "A" * 64},
    {"name": "tinypkg", "version": "1.0", "sha256": "a" * 64 + "\n--hash=sha256:" + "b" * 64},
    "tinypkg==1.0",
], ids=["option", "pinned-name", "url", "version", "hash-case", "hash-injection", "not-an-object"])
async def test_a_crafted_install_record_is_refused_by_name(crafted: object) -> None:
    """A notebook is hostile input: what would reach pip's command line or requirements file is checked first."""
    with pytest.raises(PackageInstallError, match=r"cell 3|requirement|version|only a name"):
        recorded_installs([recorded_cell(crafted)])


async def test_the_last_recorded_install_of_a_package_wins() -> None:
    cells = [recorded_cell({"name": "TinyPkg", "version": "1.0", "sha256": "a" * 64}),
             recorded_cell({"name": "tinypkg", "version": "2.0", "sha256": "b" * 64})]
    assert [(i.name, i.version, i.sha256) for i in recorded_installs(cells)] == [("tinypkg", "2.0", "b" * 64)]
