"""``kernel-agent run`` as a real subprocess, against fake Anthropic and OpenAI servers running in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from ..conftest import sandbox_processes
from ..models.fake_providers import (
    FakeProvider,
    anthropic_message,
    anthropic_usage,
    closed_port,
    openai_completion,
    openai_tool_call,
    openai_usage,
    sent_key,
    text_block,
    tool_use_block,
)

KERNEL_AGENT = Path(sys.executable).parent / "kernel-agent"
TASK = "How warm is it in Paris?"
TOOLS_MODULE = '''\
from kernel_agent import tool


@tool
def weather(city: str) -> dict:
    """The current weather of a city."""
    return {"city": city, "temp_c": 21, "sky": "clear"}


TOOLS = [weather]
'''
STEP_1 = "w = tools.weather('Paris')\nprint('temperature:', w['temp_c'], w['sky'])"
STEP_2 = "final_answer(f\"{w['temp_c']} °C in {w['city']}\")"


def environment(**extra: str) -> dict[str, str]:
    """This environment without the developer's provider settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_"))}
    return {**env, **extra}


def kernel_agent(*args: str, cwd: Path, env: dict[str, str] | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KERNEL_AGENT), *args], cwd=cwd, env=env or environment(), capture_output=True,
                          text=True, timeout=timeout)


def line_starting(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(prefix))


def assert_intact(notebook: Path, cwd: Path) -> None:
    audit = kernel_agent("audit", str(notebook), cwd=cwd)
    assert audit.returncode == 0 and audit.stdout.startswith("INTACT"), audit.stdout + audit.stderr


def test_run_with_anthropic(tmp_path: Path) -> None:
    """A tool from --tools, two steps through the Messages API, live output, the summary, an intact notebook."""
    (tmp_path / "mytools.py").write_text(TOOLS_MODULE)
    fake = FakeProvider(
        anthropic_message(text_block("I'll ask the weather tool."), tool_use_block(STEP_1, id="toolu_1"),
                          usage=anthropic_usage(1830, 64, cache_write=1700)),
        anthropic_message(tool_use_block(STEP_2, id="toolu_2"),
                          usage=anthropic_usage(95, 41, cache_read=1700, cache_write=160)),
    )
    with fake.serve() as url:
        run = kernel_agent("run", TASK, "--model", "anthropic:claude-test", "--base-url", url,
                           "--tools", "mytools:weather", "--notebook", "run.ipynb", cwd=tmp_path,
                           env=environment(ANTHROPIC_API_KEY="test-key"))
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for shown in (f"task: {TASK}", "── step 1 ", "I'll ask the weather tool.", "  │ w = tools.weather('Paris')",
                  "  ⚙ 1 tool call: weather", "  temperature: 21 clear", "── step 2 ", "  │ final_answer(",
                  "  [final_answer() was called.]", "stop reason: final_answer", "answer:\n21 °C in Paris"):
        assert shown in out, shown
    assert line_starting(out, "steps:").split(None, 1)[1].startswith("2 (1 tool call")
    assert "5,590" in line_starting(out, "tokens:")  # 1830+64+1700 + 95+41+1700+160
    notebook = tmp_path / "run.ipynb"
    assert line_starting(out, "notebook:").split(None, 1)[1] in (str(notebook), "run.ipynb")
    assert notebook.is_file()
    assert_intact(notebook, tmp_path)
    assert [r.path for r in fake.requests] == ["/v1/messages"] * 2
    assert [sent_key(r) for r in fake.requests] == ["test-key"] * 2
    assert "temperature: 21 clear" in json.dumps(fake.bodies[1]["messages"][-1])


def test_run_with_an_openai_compatible_server(tmp_path: Path) -> None:
    """openai:MODEL@URL needs no key; --json prints only the summary on stdout (live display on stderr); the
    notebook goes to the host's record directory (never the current directory)."""
    (tmp_path / "mytools.py").write_text(TOOLS_MODULE)
    fake = FakeProvider(
        openai_completion("Asking the tool.", openai_tool_call(STEP_1, id="call_1"), usage=openai_usage(1500, 60)),
        openai_completion(None, openai_tool_call(STEP_2, id="call_2"), usage=openai_usage(1650, 30, cached=1280)),
    )
    with fake.serve() as url:
        run = kernel_agent("run", TASK, "--model", f"openai:gpt-test@{url}/v1", "--tools", "mytools:TOOLS",
                           "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "  ⚙ 1 tool call: weather" in run.stderr and "── step 2 " in run.stderr  # the live display
    summary = json.loads(run.stdout)  # standard output is the JSON document alone
    assert summary["stop_reason"] == "final_answer" and summary["answer"] == "21 °C in Paris"
    assert (summary["steps"], summary["tool_calls"], summary["total_tokens"]) == (2, 1, 1500 + 60 + 1650 + 30)
    assert summary["usage"]["cache_read_tokens"] == 1280
    assert summary["model"] == f"openai:gpt-test@{url}/v1"
    notebook = Path(summary["notebook"])
    assert notebook.is_file() and notebook.parent == Path(os.environ["KERNEL_AGENT_RECORD_DIR"])
    assert list(tmp_path.iterdir()) == [tmp_path / "mytools.py"]
    assert_intact(notebook, tmp_path)
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"] * 2
    assert fake.requests[1].body["messages"][-1]["tool_call_id"] == "call_1"


def test_failures_exit_1_with_a_clear_message(tmp_path: Path) -> None:
    """No key, an unknown provider, a missing tools module (before any kernel starts), and a server nobody
    answers at (after the SDK's retries): exit 1, one line saying why, no traceback. The runs go in parallel.
    (Every spec mistake has its message tested in tests/models/test_model_spec.py.)"""
    unreachable = f"http://127.0.0.1:{closed_port()}"
    cases = [
        (["--model", "anthropic:claude-test"], "no API key. Set ANTHROPIC_API_KEY"),
        (["--model", "gemini:pro"], "unknown model provider 'gemini'"),
        (["--model", "openai:m@http://127.0.0.1:9/v1", "--tools", "nosuchmodule:TOOLS"], "nosuchmodule"),
        (["--model", f"openai:gpt-test@{unreachable}/v1", "--notebook", "unreachable.ipynb"],
         f"openai: could not reach {unreachable}/v1"),
    ]
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = list(pool.map(lambda case: kernel_agent("run", "a task", *case[0], cwd=tmp_path), cases))
    for (args, message), run in zip(cases, runs):
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        assert run.stderr.startswith("kernel-agent: error: ") and message in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr
    # Only the run that got as far as a session left a record, where it was told to.
    assert {p.name for p in tmp_path.iterdir()} == {"unreachable.ipynb", "unreachable.journal.jsonl"}
    assert "stop reason: model_error" in runs[-1].stdout
    assert_intact(tmp_path / "unreachable.ipynb", tmp_path)


class LineReader:
    """Collects a process's stdout lines in a thread, so the test can wait for one with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} in {''.join(self.lines)!r}"
            time.sleep(0.05)

    def join(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_the_run_and_keeps_the_notebook(tmp_path: Path, signum: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM) while a cell spins: exit 130, 'interrupted', an intact notebook, no sandbox left."""
    script = tmp_path / "spin.json"
    script.write_text(json.dumps([{"text": "Spinning.",
                                   "code": "progress('spinning')\nimport time\nwhile True:\n    time.sleep(0.1)"}]))
    with subprocess.Popen([str(KERNEL_AGENT), "run", "spin", "--model", f"scripted:{script}", "--notebook",
                           "run.ipynb"], cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            reader = LineReader(process)
            reader.wait_for("⋯ spinning", timeout=30)  # the cell is running in the kernel
            ours = {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
            assert set(sandbox_processes()) & ours, "no sandboxed kernel under the run"
            process.send_signal(signum)
            assert process.wait(timeout=20) == 130
            assert process.stderr is not None
            stderr = process.stderr.read()
            reader.join()
        finally:
            if process.poll() is None:
                process.kill()
    assert "interrupted" in stderr and "stop reason: interrupted" in stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while (left := [pid for pid in ours if psutil.pid_exists(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes of the run still alive: {left}"
    notebook = tmp_path / "run.ipynb"
    assert "Run interrupted in step 1 while this code was running" in notebook.read_text()
    assert_intact(notebook, tmp_path)
