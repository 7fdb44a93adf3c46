"""``kernel-agent experiment``: a TOML spec run live in real sandboxed kernels, summarised with its intervals;
``--report`` re-summarises without running; a Python spec; Ctrl-C keeps the journal; bad specs exit 2 in one line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from kernel_agent.cli.main import main

from .test_run import KERNEL_AGENT, LineReader, environment

SPEC = """\
[experiment]
name = "capitals"
repeats = 2
concurrency = 2
directory = "runs"

[[tasks]]
name = "add"
prompt = "What is 2 + 2?"
check = { equals = 4 }

[[tasks]]
name = "capital"
prompt = "What is the capital of France?"
check = { contains = "paris", ignore_case = true }

[[configurations]]
name = "careful"
model = "scripted:careful/{task}.json"

[[configurations]]
name = "sloppy"
model = "scripted:sloppy/{task}-{repeat}.json"
max_steps = 3
"""
SCRIPTS = {
    "careful/add.json": ["final_answer(2 + 2)"],
    "careful/capital.json": ["final_answer('Paris')"],
    "sloppy/add-0.json": ["final_answer(4)"],
    "sloppy/add-1.json": ["final_answer(5)"],  # wrong
    # wrong, and hostile: a title and clipboard write for the terminal, in the answer and in a failing cell
    "sloppy/capital-0.json": ["print('\\x1b]0;pwned\\x07')\nraise ValueError('\\x1b]52;c;cm0gLXJmIH4=\\x07')",
                              "final_answer('Lyon\\x1b[2J\\x1b]0;pwned\\x07')"],
    "sloppy/capital-1.json": ["final_answer('The capital is PARIS.')"],
}


def write_spec(folder: Path, spec: str = SPEC, scripts: dict[str, list[str]] = SCRIPTS) -> Path:
    for name, replies in scripts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(replies))
    (folder / "spec.toml").write_text(spec)
    return folder / "spec.toml"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KERNEL_AGENT), *args], cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    folder = tmp_path_factory.mktemp("experiment")
    write_spec(folder)
    return folder, cli("experiment", "spec.toml", cwd=folder)


def test_a_toml_experiment_runs_live_and_prints_its_summary(ran: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, run = ran
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "2 configurations x 2 tasks x 2 repeats = 8 runs, 2 at once" in out
    assert sum(line.startswith("[") for line in out.splitlines()) == 8 and "[8/8]" in out
    assert "FAIL sloppy / add / repeat 1: final_answer" in out
    # 4/4 and 2/4 at 95%, by hand: Wilson (1 / (1 + z^2/4), 1) = (0.5101, 1) and 0.5 -+ 0.3500 = (0.15, 0.85)
    assert re.search(r"careful +4 +4/4 = 100% +51% - 100%", out) and re.search(r"sloppy +4 +2/4 = 50% +15% - 85%", out)
    assert "careful vs sloppy: 4 paired runs" in out
    assert "both right 2, only careful 2, only sloppy 0, neither 0" in out
    assert "exact McNemar p = 0.5" in out  # 2 * P(X <= 0), X ~ Binomial(2, 1/2)
    rows = (folder / "runs" / "results.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("configuration,task,repeat,success,")
    assert len(list((folder / "runs" / "notebooks").rglob("repeat-*.ipynb"))) == 8
    assert f"results: {folder / 'runs' / 'results.csv'}" in out
    assert not any((ord(char) < 32 and char not in "\n\t") or 0x7f <= ord(char) <= 0x9f for char in out)
    assert "Lyon" in (folder / "runs" / "results.csv").read_text()  # the answer was recorded, not printed raw
    plots = [folder / "runs" / "plots" / name for name in ("success.png", "tasks.png", "tokens.png", "seconds.png")]
    assert all(path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for path in plots)
    assert "plots: " + ", ".join(str(path) for path in plots) in out


def test_report_summarises_and_a_rerun_runs_nothing(ran: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, first = ran
    report = cli("experiment", "--report", "runs", "--compare", "sloppy,careful", cwd=folder)
    assert report.returncode == 0, report.stderr
    assert "\x1b" not in report.stdout and "\x07" not in report.stdout
    assert re.search(r"2/4 = 50% +15% - 85%", report.stdout) and "sloppy vs careful: 4 paired runs" in report.stdout
    again = cli("experiment", "spec.toml", cwd=folder)
    assert again.returncode == 0, again.stderr
    assert "(8 done before)" in again.stdout and "[1/" not in again.stdout and "[9/" not in again.stdout
    summary = again.stdout.split("\n", 1)[1]  # after the header line: the same summary as the first time
    assert summary == first.stdout.split("[8/8]")[1].split("\n", 1)[1]


def test_a_python_spec_with_options_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "spec.py").write_text(
        "from kernel_agent import ScriptedModel\n"
        "from kernel_agent.experiment import Configuration, Experiment, Task\n"
        "experiment = Experiment('py', [Task('t', 'Say hi.', expected='hi')],\n"
        "    [Configuration('c', lambda task, repeat: ScriptedModel(['final_answer(\"hi\")']))], repeats=5)\n")
    run = cli("experiment", "spec.py", "--repeats", "1", "--directory", "out", "--no-cache", "--quiet",
              "--format", "parquet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "= 1 run, 2 at once" in run.stdout and "[1/1]" not in run.stdout  # --quiet: no line per run
    assert "1/1 = 100%" in run.stdout and f"results: {tmp_path / 'out' / 'results.parquet'}" in run.stdout
    assert not (tmp_path / "out" / "cache").exists()


def test_ctrl_c_keeps_the_finished_runs_and_says_how_to_continue(tmp_path: Path) -> None:
    """Repeat 0 answers; repeat 1's cell waits forever: Ctrl-C once repeat 0 is reported."""
    spec = SPEC.replace("concurrency = 2", "concurrency = 1").split("[[tasks]]\nname = \"capital\"")[0] + (
        '[[configurations]]\nname = "only"\nmodel = "scripted:wait/{repeat}.json"\n')
    write_spec(tmp_path, spec, {"wait/0.json": ["final_answer(4)"],
                                "wait/1.json": ["import threading\nthreading.Event().wait()"]})
    with subprocess.Popen([str(KERNEL_AGENT), "experiment", "spec.toml"], cwd=tmp_path, env=environment(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            reader = LineReader(process)
            reader.wait_for("[1/2] ok", timeout=120)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 130
            reader.join()
            assert process.stderr is not None
            error = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
    assert "interrupted: 1 of 2 runs are finished" in error and "run the same command again to continue" in error
    assert "Traceback" not in error
    journal = (tmp_path / "runs" / "runs.jsonl").read_text().splitlines()
    assert len(journal) == 1 and json.loads(journal[0])["repeat"] == 0


BAD_SPECS = {
    "not TOML": ("[experiment\n", "not valid TOML"),
    "unknown key": ('[experiment]\nname = "x"\nrepets = 3\n', "unknown key 'repets'"),
    "no tasks": ('[[configurations]]\nname = "c"\nmodel = "scripted:x.json"\n', "tasks is required"),
    "wrong type": (SPEC.replace("repeats = 2", 'repeats = "two"'), "[experiment].repeats: expected an integer"),
    "bool for int": (SPEC.replace("max_steps = 3", "max_steps = true"), "expected an integer, got a boolean"),
    "two checks": (SPEC.replace("{ equals = 4 }", "{ equals = 4, contains = '4' }"), "give exactly one of"),
    "bad regex": (SPEC.replace("{ equals = 4 }", "{ regex = '(' }"), "tasks[0] (add).check: missing )"),
    "stray option": (SPEC.replace("{ equals = 4 }", "{ equals = 4, tolerance = 1 }"), "tolerance does not go with"),
    "unknown provider": (SPEC.replace("scripted:careful/{task}.json", "gpt:4"), "is not PROVIDER:MODEL"),
    "missing script": (SPEC.replace("careful/{task}.json", "nowhere.json"), "no script file at"),
    "bad placeholder": (SPEC.replace("{task}.json", "{__class__}.json"), "only {task} and {repeat}"),
    "path name": (SPEC.replace('name = "add"', 'name = "../../etc"'), "cannot be used: it becomes a directory name"),
    "input file from elsewhere": (SPEC.replace("{ equals = 4 }", '{ equals = 4 }\nfiles = { "x.txt" = { path = "/etc/passwd" } }'),
                                  "must be a relative path inside the spec's folder"),
    "input file up the tree": (SPEC.replace("{ equals = 4 }", '{ equals = 4 }\nfiles = { "x.txt" = { path = "../x" } }'),
                               "must be a relative path inside the spec's folder"),
    "directory elsewhere": (SPEC.replace('directory = "runs"', 'directory = "/etc/cron.d"'), "[experiment].directory"),
    "script elsewhere": (SPEC.replace("scripted:careful/{task}.json", "scripted:/etc/passwd"),
                         "must be a relative path inside the spec's folder"),
    "backtracking regex": (SPEC.replace("{ equals = 4 }", "{ regex = '(?<=a)b' }"), "cannot be matched in linear time"),
    "bad tools": (SPEC.replace('repeats = 2', 'repeats = 2\ntools = ["no_such_module:x"]'), "ModuleNotFoundError"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_a_bad_spec_exits_2_with_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    text, expected = BAD_SPECS[case]
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path, text)
    assert main(["experiment", str(tmp_path / "spec.toml")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("kernel-agent experiment: error: ") and expected in error, error
    assert error.count("\n") == 1


def test_bad_python_specs_and_directories_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {"raises.py": ("raise RuntimeError('boom')\n", "running it raised RuntimeError: boom"),
             "syntax.py": ("def (:\n", "line 1: invalid syntax"),
             "none.py": ("experiment = 42\n", "defines a int as `experiment`")}
    for name, (source, expected) in cases.items():
        (tmp_path / name).write_text(source)
        assert main(["experiment", str(tmp_path / name)]) == 2
        error = capsys.readouterr().err
        assert expected in error and error.count("\n") == 1, error
    assert main(["experiment", "--report", str(tmp_path)]) == 2  # not an experiment's directory
    assert "has no experiment.json" in capsys.readouterr().err
    assert main(["experiment", str(tmp_path / "absent.toml")]) == 2
    assert "no such spec file" in capsys.readouterr().err
