"""Crafted notebooks given to ``resume``: the conversation a resume rebuilds stays within its bound, whatever
field the text hides in (every field of a notebook is the author's to fill)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kernel_agent.agent.resume import MAX_CONVERSATION_CHARS, MAX_TEXT_CHARS, RunRecordError, load_agent_run
from kernel_agent.record import format as fmt

from ..agent.test_resume import first_run as first_run  # the recorded run these notebooks edit


def _crafted(notebook: Path, into: Path, edit: Any) -> Path:
    document = copy.deepcopy(json.loads(notebook.read_text()))
    edit(document)
    path = into / "crafted.ipynb"
    path.write_text(json.dumps(document))
    return path


def _ours(document: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c["metadata"][fmt.METADATA_KEY] for c in document["cells"]
                                 if c["metadata"][fmt.METADATA_KEY]["kind"] == kind)
    return found


def _malformed_flood(document: dict[str, Any]) -> None:
    """100 malformed calls of a million characters each (each within its own bound), on one message."""
    count = MAX_CONVERSATION_CHARS // MAX_TEXT_CHARS + 1
    _ours(document, "message")["malformed"] = [[f"bad-{i}", "x" * MAX_TEXT_CHARS] for i in range(count)]


def _last_observation_flood(document: dict[str, Any]) -> None:
    """The last cell's observation, past the total (the size was checked only when the next cell came)."""
    cells = document["cells"]
    last = copy.deepcopy(next(c for c in cells if c["metadata"][fmt.METADATA_KEY]["kind"] == "code"))
    for step in range(2, MAX_CONVERSATION_CHARS // MAX_TEXT_CHARS + 2):  # over the bound only at the last
        cell = copy.deepcopy(last)
        ours = cell["metadata"][fmt.METADATA_KEY]
        ours.update(step=step, call_id=f"c-{step}", observation={"text": "y" * MAX_TEXT_CHARS})
        cells.append(cell)


@pytest.mark.parametrize("edit", [_malformed_flood, _last_observation_flood])
def test_a_conversation_over_the_bound_is_refused_whatever_field_holds_it(
        first_run: tuple[Path, str], tmp_path: Path, edit: Any) -> None:
    crafted = _crafted(first_run[0], tmp_path, edit)
    with pytest.raises(RunRecordError, match="larger than a resume rebuilds"):
        load_agent_run(crafted)
