"""Skills in sessions, for real: proposed from a kernel, checked, tried in a fresh kernel, stored, imported later.

Real sandboxed kernels and the real library; the models are scripted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Agent, Session
from kernel_agent.errors import SkillLibraryError
from kernel_agent.models.scripted import ScriptedModel
from kernel_agent.skills import SkillLibrary, SkillsSource
from kernel_agent.tools.policy import CallRequest

SLUG = '''\
def slug(text):
    """Lowercase words of the text joined by dashes."""
    import re
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))
'''
SLUG_TESTS = "from skills import slug\nassert slug('Hello, World!') == 'hello-world'\n"

PROPOSE = '''\
import skills
def slug(text):
    """Lowercase words of the text joined by dashes."""
    import re
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))
stored = skills.propose(slug, "a URL slug of a title", tests="from skills import slug\\nassert slug('A b') == 'a-b'")
print(stored["version"], stored["import"])
'''
USE = "from skills import slug\nfinal_answer(slug('Quarterly Revenue, 2024'))\n"


def _yes(request: CallRequest) -> bool:
    return True


def output_text(result: Any) -> str:
    return "".join(str(o.get("text", "")) for o in result.outputs) + (
        f"{result.error.ename}: {result.error.evalue}" if result.error is not None else "")


async def test_a_skill_proposed_in_one_agent_run_is_imported_in_the_next(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    source = SkillsSource(library, approver=_yes)
    first = await Agent(ScriptedModel([PROPOSE, {"text": "kept"}], spec="scripted:writer"), [source],
                        notebook=tmp_path / "first.ipynb").run("write a slug function and keep it")
    assert first.ok, first
    stored = library.get("slug")
    assert stored.version == 1 and "re.findall" in stored.source and "assert slug('A b')" in stored.tests
    provenance = stored.provenance
    header = json.loads((tmp_path / "first.ipynb").read_text())["metadata"]["kernel_agent"]["session"]
    assert (provenance.session_id, provenance.cell, provenance.model, provenance.proposed_by) == (
        header["session_id"], 0, "scripted:writer", "kernel")
    assert provenance.notebook == str((tmp_path / "first.ipynb").resolve())

    second = await Agent(ScriptedModel([USE, USE]), [source], notebook=tmp_path / "second.ipynb").run("slug it")
    assert second.answer == "quarterly-revenue-2024"
    assert library.skills()[0].uses == 1  # one use per session, whatever it imports


async def test_refusals_say_why(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    asked: list[CallRequest] = []

    def approver(request: CallRequest) -> bool:
        asked.append(request)
        return request.arguments["name"] != "denied"

    async with Session(tools=[SkillsSource(library, approver=approver)], notebook=False) as session:
        cases = {
            "failing": (SLUG.replace("slug", "failing"), "from skills import failing\nassert failing('A') == 'b'",
                        "its tests failed: AssertionError"),
            "forbidden": ("import subprocess\ndef forbidden():\n    return subprocess.run(['id'])", "",
                          "imports 'subprocess', which the skill policy forbids"),
            "broken": ("def broken(:\n", "", "cannot be parsed"),
            "missing": ("def other():\n    pass", "", "does not define 'missing'"),
            "crashes": ("def crashes():\n    pass\nraise RuntimeError('at import')", "", "RuntimeError: at import"),
            "denied": (SLUG.replace("slug", "denied"), "", "not approved: the approver said no"),
        }
        for name, (code, tests, reason) in cases.items():
            result = await session.execute(
                f"try:\n    tools.skills.propose({name!r}, {code!r}, 'one line', {tests!r})\n"
                "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
            assert "SkillRefusedError" in output_text(result) and reason in output_text(result), (name, result)
    assert [request.arguments["name"] for request in asked] == ["denied"]  # asked only once the checks passed
    assert len(library) == 0


async def test_without_an_approver_nothing_is_stored(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    async with Session(tools=[SkillsSource(library)], notebook=False) as session:
        result = await session.execute(f"tools.skills.propose('slug', {SLUG!r}, 'a slug', {SLUG_TESTS!r})")
    assert "not approved" in output_text(result) and "no approver" in output_text(result)
    assert len(library) == 0


async def test_a_session_keeps_the_version_it_first_loaded(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    first = library.add("slug", SLUG, "a slug")
    source = SkillsSource(library)
    async with Session(tools=[source], notebook=False) as session:
        await session.execute("from skills import slug")
        second = library.add("slug", SLUG.replace('"-"', '"_"'), "a slug with underscores")
        result = await session.execute(
            "import sys\ndel sys.modules['skills.slug']\nimport skills\ndel skills.slug\n"
            "from skills import slug\nprint(slug('a b'), sys.modules['skills.slug'].__skill__['version'], "
            "tools.skills.load('slug')['sha256'])")
        assert output_text(result).split() == ["a-b", "1", first.sha256]
    async with Session(tools=[source], notebook=False) as session:  # a new session takes the current version
        result = await session.execute("from skills import slug\nprint(slug('a b'))")
        assert output_text(result).strip() == "a_b"
    assert {v.sha256: v.uses for v in library.skills()[0].versions} == {first.sha256: 1, second.sha256: 1}


async def test_pins_serve_given_versions(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    old = library.add("slug", SLUG, "a slug")
    library.add("slug", SLUG.replace('"-"', '"_"'), "a slug with underscores")
    async with Session(tools=[SkillsSource(library, pins={"slug": old.sha256})], notebook=False) as session:
        result = await session.execute("from skills import slug\nprint(slug('a b'))")
    assert output_text(result).strip() == "a-b"


async def test_without_skills_an_import_says_so(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    async with Session(notebook=False) as session:
        result = await session.execute("from skills import slug")
        assert result.error is not None and result.error.ename in ("ImportError", "ModuleNotFoundError")
        assert "no skills library" in result.error.evalue
    async with Session(tools=[SkillsSource(library)], notebook=False) as session:
        result = await session.execute("from skills import slug")
        assert result.error is not None and "no skill named 'slug'" in result.error.evalue
        result = await session.execute("import skills\nprint(skills.slug)")
        assert result.error is not None and "no skill named 'slug'" in result.error.evalue


async def test_replay_imports_the_recorded_version_after_the_library_changed(tmp_path: Path) -> None:
    from kernel_agent.skills.pins import pins_from_notebook
    from kernel_agent.verify.replay import replay

    library = SkillLibrary(tmp_path / "skills")
    used = library.add("slug", SLUG, "a slug")
    notebook = tmp_path / "used.ipynb"
    async with Session(tools=[SkillsSource(library)], notebook=notebook) as session:
        result = await session.execute("from skills import slug\nprint(slug('Replay Me'))")
        assert output_text(result).strip() == "replay-me"
    assert pins_from_notebook(notebook) == {"slug": used.sha256}
    end = json.loads(notebook.read_text())["metadata"]["kernel_agent"]["end"]
    assert end["skills"] == {"pins": {"slug": used.sha256}}  # sealed with the record
    library.add("slug", SLUG.replace('"-"', '"_"'), "a slug with underscores")
    library.remove("slug", used.sha256)  # the recorded version is gone from the library
    report = await replay(notebook)
    assert report.faithful, report
    # A new session asked for the recorded versions cannot get them any more: it says so.
    async with Session(tools=[SkillsSource.from_notebook(library, notebook)], notebook=False) as session:
        result = await session.execute("from skills import slug")
        assert result.error is not None and "no longer holds" in result.error.evalue


async def test_a_library_the_sandbox_can_write_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    library = SkillLibrary(workspace / "skills")
    library.add("slug", SLUG, "a slug")
    # Refused as the session starts, before the library's descriptions reach its SDK and manifest.
    session = Session(workspace, tools=[SkillsSource(library, approver=_yes)], notebook=False)
    with pytest.raises(SkillLibraryError, match="which this session's sandbox can write"):
        await session.start()
    await session.close()
    assert library.skills()[0].uses == 0


async def test_resume_takes_the_recorded_skills_after_the_library_changed(tmp_path: Path) -> None:
    from kernel_agent.errors import RecordingError

    library = SkillLibrary(tmp_path / "skills")
    used = library.add("slug", SLUG, "a slug")
    notebook = tmp_path / "used.ipynb"
    async with Session(tools=[SkillsSource(library)], notebook=notebook) as session:
        await session.execute("from skills import slug\nfirst = slug('Resume Me')")
    library.add("slug", SLUG.replace('"-"', '"_"'), "a slug with underscores")
    library.add("other", "def other():\n    return 1\n", "another skill")
    with pytest.raises(RecordingError, match="SDK differs"):  # the live list of skills is not the recorded one
        await Session.resume(notebook, tools=[SkillsSource(library)])
    resumed = await Session.resume(notebook, tools=[SkillsSource.from_notebook(library, notebook)])
    try:
        result = await resumed.execute(
            "import sys\nprint(first, slug('a b'), tools.skills.load('slug')['sha256'])")
        assert output_text(result).split() == ["resume-me", "a-b", used.sha256]
        assert resumed.resume_differences == []
    finally:
        await resumed.close()


def test_one_source_serves_sessions_on_more_than_one_event_loop(tmp_path: Path) -> None:
    """Trials wait for a slot (max_trials=1), on one loop and then on another: a slot is per loop, never bound to
    the first loop the source met."""
    import asyncio

    from kernel_agent.tools.call_context import CallContext

    class SessionKey:  # stands for a session's bridge
        pass

    library = SkillLibrary(tmp_path / "skills")
    source = SkillsSource(library, approver=_yes, max_trials=1)
    keys = [SessionKey() for _ in range(4)]

    async def propose_two(first: int) -> list[dict[str, Any]]:
        return await asyncio.gather(*[
            source.propose(f"f{n}", f"def f{n}():\n    return {n}\n", "one", f"assert f{n}() == {n}",
                           call=CallContext(keys[n], 0)) for n in (first, first + 1)])

    assert [stored["version"] for stored in asyncio.run(propose_two(0)) + asyncio.run(propose_two(2))] == [1] * 4
    assert sorted(skill.name for skill in library.skills()) == ["f0", "f1", "f2", "f3"]
    assert library.get("f0").provenance.proposed_by == "kernel"
