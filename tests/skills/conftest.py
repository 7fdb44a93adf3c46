"""Skills tests never touch the user's own library: the default one is a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def default_skills_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "default-skills"
    monkeypatch.setenv("KERNEL_AGENT_SKILLS_DIR", str(path))
    yield path
