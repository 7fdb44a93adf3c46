"""Attacks on the skills library and what reads it on the host: exports into hostile targets, library files
others can write, oversized versions, a listing racing a removal, and a source lying about what its entries are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel_agent.cli.main import main
from kernel_agent.errors import SkillError
from kernel_agent.skills import SkillLibrary

from .fake_source import PARSE, SLUG

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")


@pytest.fixture
def library(tmp_path: Path) -> SkillLibrary:
    library = SkillLibrary(tmp_path / "lib")
    library.add("parse_amount", PARSE, "Parse an amount")
    library.add("slugify", SLUG, "Turn a title into a URL slug")
    return library


# -- export into a target someone else controls ------------------------------------------------------------------


def test_export_into_a_directory_every_user_can_write_is_refused(library: SkillLibrary, tmp_path: Path) -> None:
    # `kernel-agent skills export /tmp --force` as root: another user who made /tmp/skills first, or who can
    # write the target, swaps the exported modules after they are written, and root imports them later.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(SkillError, match="every user can write it"):
        library.export(shared, force=True)
    assert list(shared.iterdir()) == []


def test_a_skills_directory_planted_writable_in_the_target_is_refused(library: SkillLibrary, tmp_path: Path) -> None:
    target = tmp_path / "out"
    (target / "skills").mkdir(parents=True)
    os.chmod(target / "skills", 0o777)
    with pytest.raises(SkillError, match="every user can write it"):
        library.export(target, force=True)
    assert list((target / "skills").iterdir()) == []


@needs_root
def test_export_into_a_directory_of_another_user_is_refused(library: SkillLibrary, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 12345, 12345)
    with pytest.raises(SkillError, match="belongs to user 12345"):
        library.export(theirs)
    mine = tmp_path / "mine"
    (mine / "skills").mkdir(parents=True)
    os.chown(mine / "skills", 12345, 12345)  # planted by them before the export
    with pytest.raises(SkillError, match="belongs to user 12345"):
        library.export(mine, force=True)
    assert list((mine / "skills").iterdir()) == []


def test_the_cli_names_a_hostile_export_target_in_one_line(library: SkillLibrary, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert main(["skills", "export", str(shared), "--force", "--library", str(library.directory)]) == 2
    err = capsys.readouterr().err
    assert "every user can write it" in err and len(err.strip().splitlines()) == 1
