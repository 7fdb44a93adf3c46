"""`kernel-agent mcp` writes --port-file and --record-dir by path: never inside the sessions' --workspace root."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .support import server_argv, server_env


@pytest.mark.parametrize("option", ["--port-file", "--record-dir"])
def test_a_path_inside_the_workspace_root_is_refused(option: str, tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    root.mkdir()
    inside = root / "a-session" / ".." / "a-session" / "written-here"  # however it is spelled
    started = subprocess.run(server_argv("--http", "--port", "0", "--workspace", str(root), option, str(inside)),
                             env=server_env(tmp_path), capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
    assert started.returncode == 2 and option in started.stderr and "--workspace" in started.stderr, started.stderr
    assert "Traceback" not in started.stderr
    assert sorted(root.iterdir()) == []  # nothing was created there
