"""An experiment killed with SIGKILL (no chance to clean up) continues where it stopped.

``kernel-agent experiment`` runs a Python spec in a subprocess; three runs
answer, the next ones hang in their cell; once the third is reported the
whole process group is killed. Running it again (the hang released) runs only
the unfinished runs: the journal's lines and the finished runs' notebooks
are untouched, and the killed runs' partial notebooks are set aside.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from kernel_agent.experiment import ExperimentResults
from tests.cli.test_run import KERNEL_AGENT, LineReader, environment

SPEC = """\
from pathlib import Path

from kernel_agent import ScriptedModel
from kernel_agent.experiment import Configuration, Experiment, Task

HERE = Path(__file__).parent


def model(task, repeat):
    if repeat >= 3 and not (HERE / "release").exists():
        return ScriptedModel(["import threading\\nthreading.Event().wait()"], spec="scripted:hangs")
    return ScriptedModel(["print('working')", f"final_answer({repeat})"])


experiment = Experiment("killed", [Task("t", "Give the repeat.", check=lambda answer: answer in range(6))],
                        [Configuration("c", model)], repeats=6, concurrency=2, directory=HERE / "runs")
"""


def test_a_killed_experiment_resumes_without_running_finished_runs_again(tmp_path: Path) -> None:
    (tmp_path / "spec.py").write_text(SPEC)
    with subprocess.Popen([str(KERNEL_AGENT), "experiment", "spec.py"], cwd=tmp_path, env=environment(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            reader = LineReader(process)
            reader.wait_for("[3/6]", timeout=180)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            reader.join()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    runs = tmp_path / "runs"
    journal_before = (runs / "runs.jsonl").read_bytes()
    finished = ExperimentResults.load(runs).table
    assert sorted(finished["repeat"]) == [0, 1, 2]
    kept = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in
            (runs / notebook for notebook in finished["notebook"])}

    (tmp_path / "release").touch()
    again = subprocess.run([str(KERNEL_AGENT), "experiment", "spec.py"], cwd=tmp_path, env=environment(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "(3 done before)" in again.stdout and "[4/6]" in again.stdout and "[1/6]" not in again.stdout
    assert (runs / "runs.jsonl").read_bytes().startswith(journal_before)
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in kept} == kept
    table = ExperimentResults.load(runs).table
    assert list(table["repeat"]) == [0, 1, 2, 3, 4, 5] and table["stop_reason"].eq("final_answer").all()
    # A run killed once it had started recording has its partial record set aside, not overwritten.
    folder = runs / "notebooks" / "c" / "t"
    set_aside = {path.name.split(".")[0] for path in folder.glob("*.interrupted-1.*")}
    assert set_aside <= {"repeat-3", "repeat-4"}
    assert all((folder / f"{name}.interrupted-1.journal.jsonl").exists() for name in set_aside)
