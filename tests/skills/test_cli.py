"""`kernel-agent skills` end to end, as a real subprocess: list, show, remove, export, and their errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_agent.skills import Provenance, SkillLibrary

from .fake_source import PARSE, SLUG

PARSE_2 = PARSE.replace("''))", "'').strip())")


def skills_cli(*args: str, library: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--library", str(library)] if library is not None else []
    return subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", "skills", *args, *extra],
                          capture_output=True, text=True, timeout=60, input=stdin, env=os.environ.copy())


@pytest.fixture
def library(tmp_path: Path) -> SkillLibrary:
    library = SkillLibrary(tmp_path / "lib")
    library.add("parse_amount", PARSE, "Parse an amount \x1b]0;title\x07with separators", tests="assert True\n",
                provenance=Provenance(session_id="s-7", cell=4, notebook="/r/s-7.ipynb", model="scripted",
                                      proposed_by="kernel"))
    library.add("parse_amount", PARSE_2, "Parse an amount, spaces allowed")
    library.add("slugify", SLUG, "Turn a title into a URL slug")
    return library


def test_list_shows_each_skill_in_one_line(library: SkillLibrary) -> None:
    run = skills_cli("list", library=library.directory)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "USES", "HASH", "DESCRIPTION"]
    parse = library.get("parse_amount")
    assert lines[1].split()[:4] == ["parse_amount", "v2", "0", parse.sha256[:12]]
    assert lines[2].startswith("slugify ") and lines[2].endswith("Turn a title into a URL slug")
    listed = json.loads(skills_cli("list", "--json", library=library.directory).stdout)
    assert [(s["name"], s["versions"]) for s in listed] == [("parse_amount", 2), ("slugify", 1)]


def test_list_uses_the_default_library(default_skills_dir: Path) -> None:
    SkillLibrary().add("slugify", SLUG, "Turn a title into a URL slug")
    run = skills_cli("list")
    assert run.returncode == 0 and "slugify" in run.stdout
    assert SkillLibrary(default_skills_dir).get("slugify").source == SLUG


def test_show_lists_versions_with_provenance_and_the_source_on_request(library: SkillLibrary) -> None:
    first = library.skills()[0].versions[0]
    run = skills_cli("show", "parse_amount", library=library.directory)
    assert run.returncode == 0, run.stderr
    assert "proposed by kernel, session s-7, cell 4, model scripted, notebook /r/s-7.ipynb" in run.stdout
    assert "Parse an amount with separators" in run.stdout and "\x1b" not in run.stdout
    assert "def parse_amount" not in run.stdout  # the code only with --source
    source = skills_cli("show", "parse_amount", "--source", "--version", first.sha256[:10], library=library.directory)
    assert source.returncode == 0, source.stderr
    assert PARSE.strip() in source.stdout and "# tests of parse_amount v1" in source.stdout


def test_a_hostile_library_prints_nothing_to_the_terminal_but_text(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path)
    library.add("evil", "print('\x1b]52;c;ZXZpbA==\x07\x1b[2J')\n", "Looks harmless",
                provenance=Provenance(session_id="\x1b]0;pwned\x07", notebook="/r/x.ipynb\n *v9 fake line",
                                      proposed_by="kernel"))
    run = skills_cli("show", "evil", "--source", library=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stdout and "\x07" not in run.stdout
    assert "print('\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J')" in run.stdout  # the code as it is, escapes shown
    assert "notebook /r/x.ipynb *v9 fake line" in run.stdout


def test_errors_are_one_line_with_status_2(library: SkillLibrary, tmp_path: Path) -> None:
    for args, message in [(("show", "nope"), "no skill named 'nope'"),
                          (("show", "parse_amount", "--version", "ffff"), "no version whose hash starts with"),
                          (("remove", "nope", "--yes"), "no skill named 'nope'")]:
        run = skills_cli(*args, library=library.directory)
        assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
        assert message in run.stderr and "Traceback" not in run.stderr
    (library.directory / "index.json").write_text('{"format": "kernel-agent-skills/1", "skills": {"a": 1}}')
    run = skills_cli("list", library=library.directory)
    assert run.returncode == 2 and "index.json" in run.stderr and "Traceback" not in run.stderr
    (tmp_path / "link").symlink_to(library.directory)
    run = skills_cli("list", library=tmp_path / "link")
    assert run.returncode == 2 and "symbolic link" in run.stderr


def test_remove_asks_first_and_removes_a_version_or_the_skill(library: SkillLibrary) -> None:
    first = library.skills()[0].versions[0]
    refused = skills_cli("remove", "slugify", library=library.directory, stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "slugify" in library
    run = skills_cli("remove", "parse_amount", "--version", first.sha256[:8], "--yes", library=library.directory)
    assert run.returncode == 0 and "removed version v1" in run.stdout, run.stderr
    assert [v.version for v in library.skills()[0].versions] == [2]
    assert skills_cli("remove", "slugify", "--yes", library=library.directory).returncode == 0
    assert [s.name for s in library.skills()] == ["parse_amount"]


def test_export_writes_a_package_python_imports_without_kernel_agent(library: SkillLibrary, tmp_path: Path) -> None:
    target = tmp_path / "out"
    run = skills_cli("export", str(target), library=library.directory)
    assert run.returncode == 0, run.stderr
    package = target / "skills"
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "parse_amount.py", "provenance.json",
                                                         "slugify.py"]
    assert (package / "parse_amount.py").read_text() == PARSE_2
    records = json.loads((package / "provenance.json").read_text())["skills"]
    assert [(r["name"], r["version"]) for r in records] == [("parse_amount", 2), ("slugify", 1)]
    check = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import skills; from skills import slugify; "
                            "print(skills.__all__, slugify('Hello World'), sys.modules['skills.slugify'].__name__)",
                            str(target)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "['parse_amount', 'slugify'] hello-world skills.slugify"
    again = skills_cli("export", str(target), "slugify", library=library.directory)
    assert again.returncode == 2 and "not empty" in again.stderr
    forced = skills_cli("export", str(target), "slugify", "--force", library=library.directory)
    assert forced.returncode == 0 and "exported 1 skill(s)" in forced.stdout


def test_export_follows_no_link(library: SkillLibrary, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "linked").symlink_to(victim)
    run = skills_cli("export", str(tmp_path / "linked"), library=library.directory)
    assert run.returncode == 2 and "symbolic link" in run.stderr
    assert list(victim.iterdir()) == []
    # A link planted inside the target, at the package's name or at a module's name, is never written through.
    target = tmp_path / "target"
    (target / "skills").mkdir(parents=True)
    secret = tmp_path / "secret.py"
    secret.write_text("keep = 1\n")
    (target / "skills" / "slugify.py").symlink_to(secret)
    run = skills_cli("export", str(target), "--force", library=library.directory)
    assert run.returncode == 0, run.stderr
    assert secret.read_text() == "keep = 1\n" and not (target / "skills" / "slugify.py").is_symlink()
    (target / "skills" / "slugify.py").unlink()
    for path in (target / "skills").iterdir():
        path.unlink()
    (target / "skills").rmdir()
    (target / "skills").symlink_to(victim)
    run = skills_cli("export", str(target), "--force", library=library.directory)
    assert run.returncode == 2 and list(victim.iterdir()) == []


def test_no_description_becomes_code_in_the_package(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "lib")
    library.add("evil", "x = 1\n", '""" + __import__("os").system("touch PWNED") + """ \\ \' end')
    library.export(tmp_path / "out")
    check = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import skills; print(skills.__doc__.splitlines()[-1])", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert not (tmp_path / "PWNED").exists()
    assert check.stdout.strip().endswith('""" + __import__("os").system("touch PWNED") + """ \\ \' end')
