"""The README's examples run exactly as written (the front door must stay true)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"block-{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme_python_example_runs(code: str, tmp_path: Path) -> None:
    """Each python block runs in a fresh process, from an empty directory, and prints what its comments say."""
    (tmp_path / "work").mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip(), "the example printed nothing"
    for expected in re.findall(r"#\s+'?([^'#\n]+?)'?\s+/\s+'?([^'#\n]+?)'?$", code, re.M):
        for fragment in expected:
            assert fragment.strip().replace("\\n", "") in run.stdout, (fragment, run.stdout)


def test_readme_names_the_two_commands() -> None:
    """The two front-door commands are in the README and .ci/run calls the test one."""
    text = README.read_text()
    assert "./dev.sh example" in text and "./dev.sh test" in text
    assert "./dev.sh test" in (README.parent / ".ci" / "run").read_text()
