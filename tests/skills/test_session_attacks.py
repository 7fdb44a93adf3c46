"""Attacks on the session side of skills, from inside a kernel (and a crafted notebook).

A kernel's code is hostile: it floods proposals, sends huge or tricky ones,
writes tests that hang or reach for the library, asks for names that are
paths, and calls ``skills.load`` over and over to inflate use counts. The host
must stay bounded, refuse each with a reason, and keep the library as it was.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Session
from kernel_agent.errors import UnusableRecordError
from kernel_agent.skills import SkillLibrary, SkillsSource
from kernel_agent.skills.checks import SkillPolicy
from kernel_agent.skills.pins import pins_from_notebook

SLUG = 'def slug(text):\n    return "-".join(text.lower().split())\n'


def text(result: Any) -> str:
    return "".join(str(o.get("text", "")) for o in result.outputs) + (
        f"{result.error.ename}: {result.error.evalue}" if result.error is not None else "")


def _index(library: SkillLibrary) -> bytes:
    path = Path(library.directory) / "index.json"
    return path.read_bytes() if path.exists() else b""


@pytest.fixture
async def armed(tmp_path: Path) -> AsyncIterator[tuple[Session, SkillLibrary]]:
    library = SkillLibrary(tmp_path / "skills")
    library.add("slug", SLUG, "a slug")
    source = SkillsSource(library, approver=lambda request: True,
                          policy=SkillPolicy(max_proposals=25, test_timeout=4.0))
    async with Session(tools=[source], notebook=False) as session:
        yield session, library


async def test_a_flood_of_concurrent_proposals_runs_one_trial(armed: tuple[Session, SkillLibrary]) -> None:
    session, library = armed
    result = await session.execute(
        "import asyncio\n"
        f"source = {SLUG.replace('slug', 'flood')!r}\n"
        "async def one(i):\n"
        "    try:\n"
        "        return await tools.skills.propose.aio('flood', source + f'# {i}\\n', 'a flood', '')\n"
        "    except Exception as exc:\n"
        "        return str(exc)\n"
        "outcomes = await asyncio.gather(*(one(i) for i in range(20)))\n"
        "print(sum(isinstance(o, dict) for o in outcomes), sum('one at a time' in str(o) for o in outcomes))\n")
    assert text(result).split() == ["1", "19"], text(result)
    assert len(library.get("flood").source) > 0 and len(library.skills()) == 2


async def test_proposals_per_session_are_bounded(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    source = SkillsSource(library, approver=lambda request: True, policy=SkillPolicy(max_proposals=3))
    async with Session(tools=[source], notebook=False) as session:
        result = await session.execute(
            "for i in range(6):\n"
            "    try:\n"
            "        tools.skills.propose('bad', 'import os\\ndef bad(): pass', 'forbidden', '')\n"
            "    except Exception as exc:\n"
            "        print('limit' if 'the limit' in str(exc) else 'policy' if 'forbids' in str(exc) else exc)\n")
    assert text(result).split() == ["policy"] * 3 + ["limit"] * 3


async def test_huge_tricky_and_hanging_proposals_are_refused(armed: tuple[Session, SkillLibrary]) -> None:
    session, library = armed
    before = _index(library)
    library_dir = str(library.directory)
    writes = f"open({library_dir + '/index.json'!r}, 'w').write('{{}}')"
    lists = f"import os\nassert not os.listdir({library_dir!r})"
    cases = {
        "huge": "tools.skills.propose('huge', 'def huge(): pass\\n' + '#' * 5_000_000, 'big', '')",
        "path": "tools.skills.propose('../evil', 'def evil(): pass', 'a path', '')",
        "dunder": "tools.skills.propose('__init__', 'def __init__(): pass', 'dunder', '')",
        "keyword": "tools.skills.propose('lambda', 'lambda_ = 1', 'keyword', '')",
        "hangs": f"tools.skills.propose('hangs', {SLUG.replace('slug', 'hangs')!r}, 'hangs', 'while True: pass')",
        "writes": f"tools.skills.propose('writes', {SLUG.replace('slug', 'writes')!r}, 'writes', {writes!r})",
        "lists": f"tools.skills.propose('lists', {SLUG.replace('slug', 'lists')!r}, 'lists', {lists!r})",
    }
    reasons = {"huge": "the limit is 100,000", "path": "not a plain ASCII Python identifier",
               "dunder": "private or reserved", "keyword": "not a plain ASCII Python identifier",
               "hangs": "did not finish within 4 s", "writes": "its tests failed: FileNotFoundError",
               "lists": "its tests failed: FileNotFoundError"}
    for name, call in cases.items():
        result = await session.execute(f"try:\n    {call}\nexcept Exception as exc:\n    print(exc)\n")
        assert reasons[name] in text(result), (name, text(result))
    assert _index(library) == before  # nothing stored, nothing written by a test


async def test_names_that_are_paths_do_not_load_and_uses_do_not_inflate(
        armed: tuple[Session, SkillLibrary]) -> None:
    session, library = armed
    result = await session.execute(
        "for name in ['../slug', 'slug/../slug', '__init__', 'class', '']:\n"
        "    try:\n"
        "        tools.skills.load(name)\n"
        "    except Exception as exc:\n"
        "        print('refused' if 'not a skill name' in str(exc) else exc)\n"
        "for i in range(50):\n"
        "    tools.skills.load('slug')\n"
        "import importlib\n"
        "for name in ['skills.__init__', 'skills.slug.x']:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        print('import refused')\n")
    assert text(result).split() == ["refused"] * 5 + ["import", "refused"] * 2, text(result)
    assert library.skills()[0].uses == 1


async def test_a_crafted_notebook_gives_no_pins(tmp_path: Path) -> None:
    library = SkillLibrary(tmp_path / "skills")
    library.add("slug", SLUG, "a slug")
    notebook = tmp_path / "used.ipynb"
    async with Session(tools=[SkillsSource(library)], notebook=notebook) as session:
        await session.execute("from skills import slug")
    original = notebook.read_text()
    document = json.loads(original)
    call = document["cells"][1]["metadata"]["kernel_agent"]["tool_calls"][0]
    for forged in ({"name": "../etc", "sha256": "0" * 64}, {"name": "slug", "sha256": "../x"}, "slug", 7,
                   {"__ka__": "no such tag"}):
        call["result"] = forged
        document["metadata"]["kernel_agent"]["end"]["skills"] = {"pins": {"../etc": "0" * 64, "x": "../x"}}
        notebook.write_text(json.dumps(document))
        assert pins_from_notebook(notebook) == {}
    # A sealed pin that is not what the recorded load served: refused, naming it, rather than half-trusted.
    notebook.write_text(original)
    document = json.loads(original)
    document["metadata"]["kernel_agent"]["end"]["skills"]["pins"]["slug"] = "f" * 64
    notebook.write_text(json.dumps(document))
    with pytest.raises(UnusableRecordError, match="the sealed pin of skill 'slug'"):
        pins_from_notebook(notebook)


async def test_a_notebook_with_null_metadata_levels_is_a_named_error_or_no_catalogue(tmp_path: Path) -> None:
    """Each metadata level may be anything in a crafted notebook: never an AttributeError traceback."""
    from kernel_agent.errors import KernelAgentError
    from kernel_agent.skills.pins import recorded_catalog

    library = SkillLibrary(tmp_path / "skills")
    library.add("slug", SLUG, "a slug")
    notebook = tmp_path / "used.ipynb"
    async with Session(tools=[SkillsSource(library)], notebook=notebook) as session:
        await session.execute("from skills import slug")
    original = json.loads(notebook.read_text())
    for path in (["metadata"], ["metadata", "kernel_agent"], ["metadata", "kernel_agent", "session"],
                 ["metadata", "kernel_agent", "session", "tools"]):
        for forged in (None, 7, "text", []):
            document = json.loads(json.dumps(original))
            parent = document
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = forged
            notebook.write_text(json.dumps(document))
            try:
                assert recorded_catalog(notebook) is None
                SkillsSource.from_notebook(library, notebook)
            except KernelAgentError:
                pass  # a named refusal is as good as no catalogue
