"""SandboxPolicy(python_env=...): another environment the host prepared, importable in the kernel, read-only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kernel_agent import SandboxPolicy, Session
from kernel_agent.errors import PythonEnvironmentError, UnconfinedWarning

MINOR = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def make_venv(path: Path) -> Path:
    """A venv of the host's Python (offline: no pip), holding one module and a .pth naming a directory outside."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = path / "lib" / MINOR / "site-packages"
    (site / "envonly.py").write_text("VALUE = 'from the venv'\n")
    extra = path.parent / f"{path.name}-extra"
    extra.mkdir()
    (extra / "viapth.py").write_text("VALUE = 'via pth'\n")
    (site / "extra.pth").write_text(f"{extra}\n")
    return path


async def test_a_venv_is_importable_first_and_read_only(tmp_path: Path, workspace: Path) -> None:
    venv = make_venv(tmp_path / "venv")
    policy = SandboxPolicy(python_env=venv)
    assert any("Python environment" in item for item in policy.loosenings())
    with pytest.warns(UnconfinedWarning, match="Python environment"):
        session = await Session(workspace, policy=policy).start()
    try:
        result = await session.execute(
            "import envonly, viapth, sys, os\nprint(envonly.VALUE, '|', viapth.VALUE)\nrefused = 0\n"
            "for path in (envonly.__file__, os.path.join(os.path.dirname(envonly.__file__), 'planted.py'),\n"
            "             viapth.__file__):\n"
            "    try:\n        open(path, 'a').close()\n    except OSError:\n        refused += 1\n"
            "print(refused)")
        assert result.ok, result.error
        assert result.stdout.splitlines() == ["from the venv | via pth", "3"]
        assert "Python environment" in str(session.metadata())
    finally:
        await session.close()
    assert not (venv / "lib" / MINOR / "site-packages" / "planted.py").exists()


async def test_a_plain_package_directory_is_importable(tmp_path: Path, workspace: Path) -> None:
    packages = tmp_path / "packages"
    (packages / "plainpkg").mkdir(parents=True)
    (packages / "plainpkg" / "__init__.py").write_text("VALUE = 7\n")
    with pytest.warns(UnconfinedWarning):
        session = await Session(workspace, policy=SandboxPolicy(python_env=packages)).start()
    try:
        assert (await session.execute("import plainpkg\nplainpkg.VALUE")).result == "7"
    finally:
        await session.close()


def test_a_relative_environment_is_refused_by_the_policy() -> None:
    with pytest.raises(PythonEnvironmentError, match="absolute"):
        SandboxPolicy(python_env=Path("env"))


@pytest.mark.parametrize("problem", ["missing", "other-python", "in-workspace", "pth-into-workspace"])
async def test_unusable_environments_are_refused_by_name(problem: str, tmp_path: Path, workspace: Path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    if problem == "missing":
        env = tmp_path / "absent"
    elif problem == "other-python":
        (env / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.2.1\n")
    elif problem == "in-workspace":
        env = workspace / "env"
        env.mkdir()
    else:
        (env / "workspace.pth").write_text(f"{workspace}\n")
    with pytest.raises(PythonEnvironmentError, match=str(env)):
        async with Session(workspace, policy=SandboxPolicy(python_env=env)):
            pass
