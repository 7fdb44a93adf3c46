"""Seeded sessions: random and NumPy draw the same values again on replay and on resume; a changed seed is named."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kernel_agent import Session
from kernel_agent.errors import SessionOptionError, UnusableRecordError
from kernel_agent.record import format as fmt
from kernel_agent.record.recorder import Recorder
from kernel_agent.verify.replay import replay

NUMPY_AT_START = "import sys\nprint('numpy' in sys.modules, 'numpy.random' in sys.modules)"
DRAW_RANDOM = "import random\na = random.random()\nprint(a)"
DRAW_NUMPY = "import numpy as np\nb = np.random.rand(3)\nprint(b.tolist(), np.random.randint(1000))"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A session with a fixed seed that draws from random and NumPy; (its notebook, what each cell printed)."""
    import asyncio

    place = tmp_path_factory.mktemp("seeded")
    notebook = place / "seeded.ipynb"

    (place / "ws").mkdir()

    async def record() -> list[str]:
        async with Session(place / "ws", notebook=notebook, seed=1234) as session:
            return [(await session.execute(code)).stdout for code in (NUMPY_AT_START, DRAW_RANDOM, DRAW_NUMPY)]

    return notebook, asyncio.run(record())


def test_the_seed_seeds_random_now_and_numpy_at_its_first_import(recorded: tuple[Path, list[str]]) -> None:
    """The values are those of the seed (computed here), NumPy was not imported to seed it, the header says so."""
    notebook, printed = recorded
    assert printed[0] == "False False\n"  # no session pays NumPy's import unless it uses NumPy
    assert printed[1] == f"{random.Random(1234).random()}\n"
    state = np.random.RandomState(1234)
    assert printed[2] == f"{state.rand(3).tolist()} {state.randint(1000)}\n"
    header = json.loads(notebook.read_text())["metadata"][fmt.METADATA_KEY]["session"]
    assert header["seed"]["value"] == 1234 and header["seed"]["generators"][0] == "random"


async def test_replay_and_resume_draw_the_recorded_values(recorded: tuple[Path, list[str]], tmp_path: Path) -> None:
    notebook, printed = recorded
    report = await replay(notebook)
    assert report.faithful and report.cells == 3, report.first_divergence
    copy = copy_record(notebook, tmp_path)
    session = await Session.resume(copy)
    try:
        assert session.resume_differences == [] and session.seed == 1234
        assert (await session.execute("print(a)")).stdout == printed[1]
    finally:
        await session.close()


async def test_a_changed_seed_is_a_divergence_naming_the_cell(recorded: tuple[Path, list[str]],
                                                              tmp_path: Path) -> None:
    """A record rewritten with another seed (chain recomputed, as anyone can without the keys): replay and resume
    name the first cell whose random value came out different, and its first differing line."""
    notebook, printed = recorded
    crafted = copy_record(notebook, tmp_path, edit=lambda header: header["seed"].update(value=4321))
    Recorder.check_resumable(crafted)  # a consistent rewrite: only the seed tells it from the original
    report = await replay(crafted)
    cells = json.loads(crafted.read_text())["cells"]
    random_cell = next(i for i, cell in enumerate(cells) if cell["source"] == DRAW_RANDOM)
    assert not report.faithful and report.first_divergence is not None
    assert report.first_divergence.cell_index == random_cell and "outputs differ" in report.first_divergence.reason
    assert report.divergent_cells == [random_cell, random_cell + 1]  # the NumPy cell too
    session = await Session.resume(crafted)
    try:
        first, second = session.resume_differences
        assert first.startswith(f"cell {random_cell} (import random): outputs differ; first difference: ")
        assert f"-{printed[1].strip()}" in first and f"+{random.Random(4321).random()}" in first
        assert second.startswith(f"cell {random_cell + 1} (import numpy as np)")
    finally:
        await session.close()


@pytest.mark.parametrize("seed", ["1234", 12.0, True, -1, 2**32, 2**200, None, [1], {"value": 1}])
async def test_a_crafted_seed_is_refused_before_any_kernel_starts(recorded: tuple[Path, list[str]], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, seed: Any) -> None:
    """Only an int from 0 to 2**32-1 is formatted into the code that seeds the kernel: anything else is a named
    error, for replay and resume alike, and no kernel starts."""
    notebook, _ = recorded
    crafted = copy_record(notebook, tmp_path, edit=lambda header: header["seed"].update(value=seed))

    async def no_kernel(self: Session) -> None:
        raise AssertionError("a kernel was started for a crafted notebook")

    monkeypatch.setattr(Session, "start", no_kernel)
    for attempt in (replay(crafted), Session.resume(crafted)):
        with pytest.raises(UnusableRecordError, match=r"seed\.value must be an int from 0 to 4,294,967,295"):
            await attempt


@pytest.mark.parametrize("seed", [-1, 2**32, True, 1.5, "7"])
def test_the_seed_option_is_checked(seed: Any) -> None:
    with pytest.raises(SessionOptionError, match="seed must be an int from 0 to"):
        Session(seed=seed)


async def test_resume_takes_no_seed_of_its_own(recorded: tuple[Path, list[str]]) -> None:
    with pytest.raises(SessionOptionError, match="recorded seed"):
        await Session.resume(recorded[0], seed=1)


def copy_record(notebook: Path, into: Path, edit: Any = None) -> Path:
    """The record copied (no journal: the notebook is the record), its header edited and its chain recomputed."""
    document = json.loads(notebook.read_text())
    ours = document["metadata"][fmt.METADATA_KEY]
    if edit is not None:
        edit(ours["session"])
        head = ours["chain"]["genesis"] = fmt.genesis_hash(ours["session"])
        for cell in document["cells"]:
            head = fmt.cell_hash(head, cell)
            cell["metadata"][fmt.METADATA_KEY]["hash"] = head
        ours["chain"]["head"] = ours["end"]["head"] = head
        ours["chain"]["seal"] = fmt.seal_hash(head, ours["end"])
    copy = into / notebook.name
    copy.write_text(json.dumps(document))
    return copy

