"""The spill file of a long observation vs links planted by a cell (issue 10, point 1).

The agent writes the whole output of a cell that printed more than the
observation limit to ``outputs/step-NNN-k.txt`` in the workspace, which
the kernel can write: a cell plants ``outputs`` (or the file's name) as a
link to a host place first. A real agent run (scripted model, real
sandboxed kernel); afterwards the host targets are unchanged, the
observation says what happened to the spill, and the run still finished.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kernel_agent import Agent, ScriptedModel, StopReason

LONG_OUTPUT = "for i in range(3000):\n    print(f'line {i:05d}', 'x' * 40)"


def state(path: Path) -> tuple[int, int, int, list[str]]:
    status = path.stat()
    return status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode), sorted(os.listdir(path))


async def test_outputs_planted_as_a_link_to_a_host_directory(workspace: Path, tmp_path: Path) -> None:
    target = tmp_path / "root-only"
    target.mkdir(mode=0o700)
    before = state(target)
    agent = Agent(ScriptedModel([
        f"import os\nos.symlink({str(target)!r}, 'outputs')\nprint('planted')",
        LONG_OUTPUT,
        "final_answer('done')",
    ]), workspace=workspace, notebook=tmp_path / "run.ipynb", observation_limit=2000, max_steps=3)
    result = await agent.run("Print a lot")
    assert result.stop_reason is StopReason.FINAL_ANSWER and result.answer == "done"
    assert state(target) == before  # nothing written through the link
    observation = result.steps[1].observation
    assert "cut here" in observation and "the notebook (cell In[2])" in observation
    assert "outputs/step-002-1.txt there was refused" in observation and "symbolic link" in observation
    assert result.steps[1].executions[0].spill_file is None
    assert (workspace / "outputs").is_symlink()  # the kernel's link is left as it was, never followed


async def test_the_spill_file_name_planted_as_a_link_to_a_host_file(workspace: Path, tmp_path: Path) -> None:
    host_file = tmp_path / "host-file.conf"
    host_file.write_text("the host's own content\n")
    os.chmod(host_file, 0o600)
    agent = Agent(ScriptedModel([
        f"import os\nos.mkdir('outputs')\nos.symlink({str(host_file)!r}, 'outputs/step-002-1.txt')\nprint('planted')",
        LONG_OUTPUT,
        ("import glob\n[spill] = glob.glob('outputs/step-002-1-*.txt')\n"
         "final_answer(len(open(spill).read().splitlines()))"),
    ]), workspace=workspace, notebook=tmp_path / "run.ipynb", observation_limit=2000, max_steps=3)
    result = await agent.run("Print a lot")
    assert host_file.read_text() == "the host's own content\n"
    assert stat.S_IMODE(host_file.stat().st_mode) == 0o600 and host_file.stat().st_uid == os.getuid()
    spill = result.steps[1].executions[0].spill_file
    assert spill is not None and spill.startswith("outputs/step-002-1-") and spill != "outputs/step-002-1.txt"
    assert repr(spill) in result.steps[1].observation
    # The spill went to a fresh name the kernel can read: the run finished with its line count.
    assert result.stop_reason is StopReason.FINAL_ANSWER and result.answer == 3000
    assert (workspace / "outputs" / "step-002-1.txt").is_symlink()
