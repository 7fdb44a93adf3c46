"""The skills library: versions, content hashes, use counts, removal, several processes at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from kernel_agent.errors import SkillNotFoundError, SkillRefusedError
from kernel_agent.skills import Provenance, SkillLibrary, default_library_dir
from kernel_agent.skills.versions import MAX_SOURCE_BYTES, content_hash

PARSE = "def parse_amount(text):\n    return float(text.replace(',', ''))\n"
PARSE_2 = "def parse_amount(text):\n    return float(text.replace(',', '').strip())\n"
TESTS = "assert parse_amount('1,000') == 1000.0\n"
FROM_KERNEL = Provenance(session_id="s-1", cell=3, notebook="/records/s-1.ipynb", model="scripted",
                         proposed_by="kernel")


def test_a_skill_is_stored_with_its_hash_and_provenance(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "lib")
    stored = library.add("parse_amount", PARSE, "Parse an amount with thousands separators",
                         tests=TESTS, provenance=FROM_KERNEL)
    assert stored.version == 1
    assert stored.sha256 == content_hash("parse_amount", PARSE, TESTS)
    again = SkillLibrary(tmp_path / "lib").get("parse_amount")  # a second handle reads what the first wrote
    assert again == stored
    assert again.provenance == FROM_KERNEL and again.tests == TESTS
    assert library.version(stored.sha256) == stored
    [skill] = library.skills()
    assert (skill.name, skill.version, skill.sha256, skill.uses) == ("parse_amount", 1, stored.sha256, 0)
    assert skill.import_line == "from skills import parse_amount"


def test_the_library_is_private_to_its_user(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "lib")
    library.add("parse_amount", PARSE, "Parse an amount")
    assert stat.S_IMODE(os.stat(tmp_path / "lib").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "lib" / "versions").st_mode) == 0o700
    for path in [tmp_path / "lib" / "index.json", *(tmp_path / "lib" / "versions").iterdir()]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_new_content_is_a_new_current_version_and_the_old_one_stays(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path)
    first = library.add("parse_amount", PARSE, "Parse an amount")
    second = library.add("parse_amount", PARSE_2, "Parse an amount, spaces allowed")
    assert (first.version, second.version) == (1, 2)
    assert library.get("parse_amount") == second
    assert library.get("parse_amount", first.sha256) == first
    assert library.get("parse_amount", first.sha256[:8]) == first  # a prefix, as a person types it
    [skill] = library.skills()
    assert (skill.version, skill.description) == (2, "Parse an amount, spaces allowed")
    assert [v.version for v in skill.versions] == [1, 2]
    # The same content again is the same version: no third one; it becomes current again.
    again = library.add("parse_amount", PARSE, "Parse an amount")
    assert again.sha256 == first.sha256 and again.version == 1
    assert library.get("parse_amount").sha256 == first.sha256
    assert len(list((tmp_path / "versions").iterdir())) == 2
    # Tests are part of the content: other tests, another version.
    assert library.add("parse_amount", PARSE, "Parse an amount", tests=TESTS).version == 3


def test_uses_are_counted_per_version_and_summed_per_skill(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path)
    first = library.add("parse_amount", PARSE, "Parse an amount")
    second = library.add("parse_amount", PARSE_2, "Parse an amount")
    assert library.count_use("parse_amount", first.sha256) == 1
    assert library.count_use("parse_amount", second.sha256) == 2
    [skill] = library.skills()
    assert skill.uses == 2 and [v.uses for v in skill.versions] == [1, 1]
    with pytest.raises(SkillNotFoundError):
        library.count_use("parse_amount", "0" * 64)


def test_removing_a_version_or_a_skill(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path)
    first = library.add("parse_amount", PARSE, "Parse an amount")
    second = library.add("parse_amount", PARSE_2, "Parse an amount")
    library.add("slugify", "def slugify(s):\n    return s.lower()\n", "Make a slug")
    [removed] = library.remove("parse_amount", second.sha256)
    assert removed.sha256 == second.sha256
    assert library.get("parse_amount") == first  # the newest one left is current
    assert not (tmp_path / "versions" / f"{second.sha256}.json").exists()
    with pytest.raises(SkillNotFoundError):
        library.get("parse_amount", second.sha256)
    library.remove("parse_amount")
    assert [s.name for s in library.skills()] == ["slugify"]
    assert "parse_amount" not in library and len(library) == 1
    with pytest.raises(SkillNotFoundError, match="no skill named 'parse_amount'"):
        library.remove("parse_amount")
    # Added again after removal: a version file is written afresh, numbered from 1.
    assert library.add("parse_amount", PARSE_2, "Parse an amount").version == 1


@pytest.mark.parametrize("name", ["", "1abc", "with space", "__init__", "_private", "class", "a" * 65, "naïve",
                                  "a.b", "../x", 3])
def test_names_must_be_plain_identifiers(tmp_path: Path, name: object) -> None:
    with pytest.raises(SkillRefusedError, match="name"):
        SkillLibrary(tmp_path).add(name, PARSE, "Parse")  # type: ignore[arg-type]
    assert not (tmp_path / "index.json").exists()


def test_sizes_types_and_descriptions_are_bounded(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path)
    with pytest.raises(SkillRefusedError, match="source is"):
        library.add("big", "x" * (MAX_SOURCE_BYTES // 2) + "é" * (MAX_SOURCE_BYTES // 2), "Big")
    with pytest.raises(SkillRefusedError, match="string"):
        library.add("code", b"def f(): pass", "Bytes")  # type: ignore[arg-type]
    with pytest.raises(SkillRefusedError, match="surrogate"):
        library.add("code", "x = '\ud800'", "Surrogate")
    with pytest.raises(SkillRefusedError, match="one-line description"):
        library.add("code", PARSE, " \n\t ")
    with pytest.raises(SkillRefusedError, match="one line"):
        library.add("code", PARSE, "word " * 100)
    with pytest.raises(SkillRefusedError, match="Provenance"):
        library.add("code", PARSE, "Parse", provenance={"session_id": "x"})  # type: ignore[arg-type]
    with pytest.raises(SkillRefusedError, match="proposed_by"):
        Provenance(proposed_by="someone")
    # Control characters and escape sequences leave the description; what is left is one line.
    stored = library.add("code", PARSE, "Parse\x1b]52;c;ZXZpbA==\x07 an\namount\u202e\x9b2J")
    assert stored.description == "Parse an amount"
    assert len(library) == 1


def test_unknown_names_and_hashes_are_named_errors(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path)
    library.add("parse_amount", PARSE, "Parse")
    library.add("parse_amount", PARSE_2, "Parse")
    with pytest.raises(SkillNotFoundError, match="no skill named 'nope'"):
        library.get("nope")
    with pytest.raises(SkillNotFoundError, match="no version"):
        library.get("parse_amount", "f" * 64)
    with pytest.raises(SkillNotFoundError, match="at least 4"):
        library.get("parse_amount", "ab")
    with pytest.raises(SkillNotFoundError):
        library.version("0" * 64)


def test_the_default_library_is_under_the_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KERNEL_AGENT_SKILLS_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_library_dir() == tmp_path / "data" / "kernel-agent" / "skills"
    library = SkillLibrary()
    assert library.directory == tmp_path / "data" / "kernel-agent" / "skills"
    assert stat.S_IMODE(os.stat(library.directory).st_mode) == 0o700


def _add_many(directory: str, writer: int, count: int) -> None:
    library = SkillLibrary(directory)
    for number in range(count):
        library.add(f"skill_{writer}_{number}", f"def f():\n    return {number}\n", f"Skill {number} of {writer}")
        library.add("shared", f"def shared():\n    return {writer * 1000 + number}\n", "Shared by everyone")
        library.count_use("shared", library.get("shared").sha256)


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    count = 15
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_add_many, args=(str(tmp_path), writer, count)) for writer in range(2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join()
        assert process.exitcode == 0
    library = SkillLibrary(tmp_path)
    skills = {s.name: s for s in library.skills()}
    assert len(skills) == 2 * count + 1
    shared = skills["shared"]
    assert len(shared.versions) == 2 * count and shared.uses == 2 * count
    assert [v.version for v in shared.versions] == list(range(1, 2 * count + 1))
    assert len(list((tmp_path / "versions").iterdir())) == 4 * count
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    index = json.loads((tmp_path / "index.json").read_text())
    assert set(index["skills"]) == set(skills)


def test_a_handle_sees_what_another_handle_wrote(tmp_path: Path) -> None:
    """Each handle keeps the index it last checked; a change by anyone else is read (and checked) again."""
    first, second = SkillLibrary(tmp_path), SkillLibrary(tmp_path)
    version = first.add("parse_amount", PARSE, "Parse an amount")
    assert [s.name for s in first.search("amount")] == ["parse_amount"]
    second.count_use("parse_amount", version.sha256)
    second.add("slugify", "def slugify(s):\n    return s\n", "Make a slug out of an amount")
    assert first.skills()[0].uses == 1
    assert [s.name for s in first.search("slug")] == ["slugify"]
    second.remove("parse_amount")
    with pytest.raises(SkillNotFoundError):
        first.get("parse_amount")
