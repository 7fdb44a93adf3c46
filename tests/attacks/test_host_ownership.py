"""kernel-agent changes the owner or mode of nothing it was not given, and gives back what it was lent.

Root hosts only (elsewhere nothing changes owner at all). Checked on the
host after the kernel is dead: the workspace and everything the kernel made
in it belong to the workspace's owner again, with the workspace's mode; the
user's files never changed; and a kernel started by Jupyter tools
(nbconvert, papermill) in a root-owned directory could not write there.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kernel_agent import Session
from kernel_agent.kernelspec.spec import KERNEL_NAME, install_kernelspec

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="only a root host lends directories to another uid")

MAKE_A_MESS = """
import os
os.makedirs('made/deeper', exist_ok=True)
open('made/deeper/out.txt', 'w').write('kernel output')
open('suid', 'w').write('#!/bin/sh\\n'); os.chmod('suid', 0o6755)
os.symlink('/etc/passwd', 'made/link')
os.chmod('.', 0o777)
try:
    open('user.txt', 'a').write('changed')
except OSError as e:
    print('user file', e.errno)
"""


def _snapshot(path: Path) -> tuple[int, int, int]:
    status = path.lstat()
    return status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)


async def test_the_workspace_and_what_the_kernel_made_are_given_back(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir(mode=0o750)
    (workspace / "user.txt").write_text("the user's")
    before = {p: _snapshot(p) for p in (workspace, workspace / "user.txt", Path("/etc/passwd"))}
    async with Session(workspace) as session:
        cell = await session.execute(MAKE_A_MESS)
        assert cell.ok and cell.stdout == "user file 13\n"  # EACCES: the user's file is not the kernel's
        sandbox_uid = session._kernel.provisioner.sandbox_uid  # type: ignore[union-attr]
        assert sandbox_uid is not None and workspace.stat().st_uid == sandbox_uid
    assert {p: _snapshot(p) for p in before} == before  # owner and mode back, the user's file untouched
    assert (workspace / "user.txt").read_text() == "the user's"
    for path in [*workspace.rglob("*")]:
        assert (path.lstat().st_uid, path.lstat().st_gid) == (0, 0), path
    assert not stat.S_IMODE((workspace / "suid").stat().st_mode) & (stat.S_ISUID | stat.S_ISGID)
    assert (workspace / "made" / "link").is_symlink()  # the link was changed itself, never followed


NOTEBOOK_CELLS = [
    "import os\nprint(os.getcwd())",
    "try:\n    open('from-kernel.txt', 'w')\nexcept OSError as e:\n    print('cwd', e.errno)",
    "try:\n    os.unlink('user.txt')\nexcept OSError as e:\n    print('unlink', e.errno)",
    "print(open('user.txt').read())",
    "open(os.path.join(os.environ['HOME'], 'scratch.txt'), 'w').write('x')\nprint('home ok')",
]


def _tool_run(tool: str, directory: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    if tool == "nbconvert":
        command = [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "nb.ipynb",
                   "--output", "out-nbconvert"]
        output = directory / "out-nbconvert.ipynb"
    else:
        command = [sys.executable, "-m", "papermill", "nb.ipynb", "out-papermill.ipynb", "-k", KERNEL_NAME,
                   "--cwd", str(directory), "--no-progress-bar"]
        output = directory / "out-papermill.ipynb"
    result = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return nbformat.read(output, as_version=4)


@pytest.mark.parametrize("tool", ["nbconvert", "papermill"])
def test_jupyter_tools_get_the_notebook_directory_read_only(tmp_path: Path, tool: str) -> None:
    prefix = tmp_path / "prefix"
    install_kernelspec(user=False, prefix=str(prefix))
    env = {**os.environ, "JUPYTER_PATH": str(prefix / "share" / "jupyter")}
    directory = tmp_path / "project"
    directory.mkdir(mode=0o755)
    (directory / "user.txt").write_text("the user's")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": KERNEL_NAME, "language": "python"}
    nbformat.write(notebook, directory / "nb.ipynb")
    before = {p.name: _snapshot(p) for p in (directory, *directory.iterdir())}
    executed = _tool_run(tool, directory, env)
    texts = ["".join(o.get("text", "") for o in cell.outputs) for cell in executed.cells]
    assert texts[0].strip() == str(directory)  # it runs in the notebook's directory ...
    assert texts[1].strip() == "cwd 30" and texts[2].strip() == "unlink 30"  # ... which is read-only (EROFS)
    assert texts[3].strip() == "the user's" and texts[4].strip() == "home ok"
    after = {p.name: _snapshot(p) for p in (directory, *directory.iterdir()) if p.name in before}
    assert after == before
    assert (directory / "user.txt").read_text() == "the user's"
    assert not (directory / "from-kernel.txt").exists() and not (directory / "scratch.txt").exists()
