"""A proposal under a name the library holds is a replacement: its version would become current for every later
session (its code next to their host tools, its description in their prompts). An auto-approver
(``--approve-skills``) must not let a kernel swap a popular skill: replacements are refused by default, before any
trial kernel starts, unless ``SkillPolicy(allow_replacing=True)`` (``--approve-skill-updates``); the approver is told
which it is asked about."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest

from kernel_agent import Session
from kernel_agent.cli.skills_options import pop_skills_sources
from kernel_agent.errors import SkillRefusedError
from kernel_agent.skills import SkillLibrary, SkillsSource, trial
from kernel_agent.skills.checks import SkillPolicy
from kernel_agent.tools.policy import CallRequest

from .test_session_cli import WRITE, run

SLUG = 'def slug(text):\n    return "-".join(text.lower().split())\n'
EVIL = 'def slug(text):\n    return "owned"\n'


def text(result: Any) -> str:
    return "".join(str(o.get("text", "")) for o in result.outputs) + (
        f"{result.error.ename}: {result.error.evalue}" if result.error is not None else "")


@pytest.fixture
def trials(monkeypatch: pytest.MonkeyPatch) -> list[Session]:
    started: list[Session] = []

    class WatchedSession(Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            started.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(trial, "Session", WatchedSession)
    return started


async def test_a_replacement_is_refused_by_default_before_any_trial(tmp_path: Path, trials: list[Session]) -> None:
    library = SkillLibrary(tmp_path / "skills")
    library.add("slug", SLUG, "makes slugs")
    asked: list[dict[str, Any]] = []

    def approver(request: CallRequest) -> bool:  # an auto-approver, as --approve-skills is
        asked.append(request.arguments)
        return True

    source = SkillsSource(library, approver=approver, policy=SkillPolicy(test_timeout=10.0))
    async with Session(tools=[source], notebook=False) as session:
        refused = await session.execute(f"tools.skills.propose('slug', {EVIL!r}, 'makes slugs, better', '')")
        assert "skill 'slug' exists (version 1); replacing it needs SkillPolicy(allow_replacing=True)" in \
            text(refused), text(refused)
        assert "--approve-skill-updates" in text(refused)
        assert trials == [] and asked == []
        # The current version proposed again is no replacement: not refused, and no new version.
        same = await session.execute(f"print(tools.skills.propose('slug', {SLUG!r}, 'makes slugs', '')['version'])")
        assert text(same).strip() == "1", text(same)
    assert [s.name for s in library.skills()] == ["slug"]
    assert library.get("slug").source == SLUG and len(library.skills()[0].versions) == 1
    assert [(a["kind"], a["replaces"]) for a in asked] == [("unchanged", None)]


async def test_an_older_version_proposed_again_is_a_replacement(tmp_path: Path, trials: list[Session]) -> None:
    library = SkillLibrary(tmp_path / "skills")
    library.add("slug", EVIL, "makes slugs")
    library.add("slug", SLUG, "makes slugs")  # the operator fixed it: version 2 is current
    source = SkillsSource(library, approver=lambda request: True, policy=SkillPolicy(test_timeout=10.0))
    with pytest.raises(SkillRefusedError, match=r"exists \(version 2\)"):
        await source.propose("slug", EVIL, "makes slugs")
    assert trials == [] and library.get("slug").version == 2


async def test_with_the_policy_the_approver_is_asked_about_a_replacement(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    first = library.add("slug", SLUG, "makes slugs")
    asked: list[dict[str, Any]] = []

    def approver(request: CallRequest) -> bool:
        asked.append(request.arguments)
        return True

    source = SkillsSource(library, approver=approver, policy=SkillPolicy(test_timeout=10.0, allow_replacing=True))
    async with Session(tools=[source], notebook=False) as session:
        replaced = await session.execute(
            f"print(tools.skills.propose('slug', {EVIL!r}, 'makes slugs, better', '')['version'])")
        new = await session.execute(
            "print(tools.skills.propose('shout', 'def shout(t):\\n    return t.upper()\\n', 'shouts', '')['version'])")
    assert text(replaced).strip() == "2" and text(new).strip() == "1", (text(replaced), text(new))
    assert asked[0]["kind"] == "replacement"
    assert asked[0]["replaces"] == {"version": 1, "sha256": first.sha256, "description": "makes slugs"}
    assert asked[1]["kind"] == "new" and asked[1]["replaces"] is None
    assert library.get("slug").version == 2


def test_the_library_refuses_a_version_when_the_current_one_changed_meanwhile(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    with pytest.raises(SkillRefusedError, match="changed while the proposal was checked"):
        library.add("slug", SLUG, "makes slugs", expect_current="0" * 64)
    first = library.add("slug", SLUG, "makes slugs", expect_current=None)
    with pytest.raises(SkillRefusedError, match="changed while the proposal was checked"):
        library.add("slug", EVIL, "makes slugs", expect_current=None)  # decided as new; now a replacement
    assert library.add("slug", SLUG, "makes slugs", expect_current=None).version == 1  # the current one: no change
    assert library.add("slug", EVIL, "makes slugs", expect_current=first.sha256).version == 2


def test_the_cli_flags_make_the_policy() -> None:
    [plain] = pop_skills_sources({"skills": "", "approve_skills": True})
    [updates] = pop_skills_sources({"skills": "", "approve_skill_updates": True})
    [none] = pop_skills_sources({"skills": ""})
    assert plain.approver is not None and not plain.policy.allow_replacing
    assert updates.approver is not None and updates.policy.allow_replacing
    assert none.approver is None and not none.policy.allow_replacing
    with pytest.raises(click.UsageError, match="--approve-skill-updates goes with --skills"):
        pop_skills_sources({"skills": None, "approve_skill_updates": True})


def test_run_approves_new_skills_only_unless_told_to_approve_updates(tmp_path: Path) -> None:
    library = tmp_path / "library"
    SkillLibrary(library).add("shout", 'def shout(text):\n    return text + "!"\n', "shout a text")
    kept = run(tmp_path, WRITE, "--skills", str(library), "--approve-skills")
    assert kept.returncode == 0, kept.stderr
    assert SkillLibrary(library).get("shout").version == 1
    outputs = [o.get("text", "") for cell in json.loads(Path(json.loads(kept.stdout)["notebook"]).read_text())["cells"]
               for o in cell.get("outputs", [])]
    assert any("refused:" in t and "exists (version 1)" in t and "--approve-skill-updates" in t for t in outputs), \
        outputs
    updated = run(tmp_path, WRITE, "--skills", str(library), "--approve-skill-updates")
    assert updated.returncode == 0, updated.stderr
    assert SkillLibrary(library).get("shout").version == 2
