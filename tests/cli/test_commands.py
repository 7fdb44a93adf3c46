"""The kernel-agent command line, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kernel_agent


def kernel_agent_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``kernel-agent ARGS`` with this interpreter."""
    return subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_version_and_help() -> None:
    """--version prints the package version; --help lists the commands."""
    version = kernel_agent_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"kernel-agent {kernel_agent.__version__}"
    usage = kernel_agent_cli("--help")
    assert usage.returncode == 0
    for command in ("example", "kernelspec"):
        assert command in usage.stdout


def test_example_runs_a_sandboxed_session() -> None:
    """The README's main job: state persists, errors and timeouts are reported, the sandbox holds."""
    run = kernel_agent_cli("example")
    assert run.returncode == 0, run.stderr
    assert "=> 10000" in run.stdout  # state from the first cell
    assert "!! error: IndexError" in run.stdout
    assert "Network is unreachable" in run.stdout
    assert "!! timeout: KeyboardInterrupt" in run.stdout
    assert run.stdout.count("=> 10000") == 2  # the data survived the interrupt


def test_unknown_command_is_a_usage_error() -> None:
    """A wrong command exits 2 with argparse's message."""
    run = kernel_agent_cli("no-such-command")
    assert run.returncode == 2 and "invalid choice" in run.stderr


def test_demo_runs_offline_without_keys_and_leaves_an_auditable_notebook(tmp_path: Path) -> None:
    """The README's main job: no API key in the environment, a scripted model, a real sandboxed session."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "OPENAI_BASE_URL"}
    cli = str(Path(sys.executable).with_name("kernel-agent"))
    run = subprocess.run([cli, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "── step 1" in out and "3 tool calls: shop.orders ×3" in out and "KeyError: 'amount'" in out
    assert "stop reason: final_answer" in out and '"category": "computing"' in out
    assert "tokens:" in out and "estimated" in out
    assert f"audit {DEMO_NOTEBOOK}" in out and f"replay {DEMO_NOTEBOOK}" in out
    audit = subprocess.run([cli, "audit", DEMO_NOTEBOOK], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0 and audit.stdout.startswith("INTACT"), audit.stdout


DEMO_NOTEBOOK = "kernel-agent-demo.ipynb"
