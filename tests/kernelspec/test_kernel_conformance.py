"""The kernel-agent kernel passes the Jupyter kernel test suite (jupyter_kernel_test) as the stock python3 does.

The kernel runs sandboxed, started from the installed kernelspec the way a
Jupyter frontend starts it (its launch directory read-only, a private home).
History requests are answered (tail, range, search) from a history kept in
memory only: no history database is ever a file, in the launch directory,
the home, the workspace or the kernel's IPython directory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jupyter_kernel_test
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from kernel_agent import Session
from kernel_agent.kernelspec.spec import KERNEL_NAME, install_kernelspec
from kernel_agent.sandbox.provisioner import HOME_DIR, SandboxProvisioner

# Run in the kernel: where IPython keeps history, and whether any file of it exists there.
HISTORY_PROBE = """
import json, os, sqlite3
from IPython import get_ipython
history = get_ipython().history_manager
files = [row[2] for row in history.db.execute('PRAGMA database_list').fetchall()]
profile = get_ipython().profile_dir.location
print(json.dumps({'hist_file': str(history.hist_file), 'db_files': files,
                  'profile_files': sorted(os.listdir(profile)),
                  'tail': [entry[2] for entry in history.get_tail(2, include_latest=True)]}))
"""


def _history_probe(stdout: str) -> dict[str, Any]:
    probe: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return probe


class TestKernelAgentConformance(jupyter_kernel_test.KernelTests):
    """jupyter_kernel_test's message-level checks, with the samples its own python3 test uses."""

    kernel_name = KERNEL_NAME
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]  # noqa: RUF012 - the base class's field
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]  # noqa: RUF012
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]  # noqa: RUF012
    invalid_code_samples = ["import = 7q"]  # noqa: RUF012
    code_page_something = "zip?"
    code_generate_error = "raise"
    code_execute_result = [  # noqa: RUF012
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
    ]
    code_display_data = [  # noqa: RUF012
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))", "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('\\\\frac{1}{2}'))", "mime": "text/latex"},
    ]
    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"

    _scratch: Path

    @classmethod
    def setUpClass(cls) -> None:
        """Start the installed kernelspec (from a private prefix) as a frontend does, in a launch directory."""
        cls._scratch = Path(tempfile.mkdtemp(prefix="kernel-conformance-"))
        prefix, launch_dir = cls._scratch / "prefix", cls._scratch / "notebooks"
        kernels = Path(install_kernelspec(user=False, prefix=str(prefix))).parent
        launch_dir.mkdir()
        launch_dir.chmod(0o755)  # on a root host the kernel reads its launch directory as an unrelated uid
        cls.km = KernelManager(kernel_name=KERNEL_NAME,
                               kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
        cls.km.start_kernel(cwd=str(launch_dir))
        cls.kc = cls.km.client()
        cls.kc.start_channels()
        cls.kc.wait_for_ready(timeout=90)

    @classmethod
    def tearDownClass(cls) -> None:
        """Stop the kernel (its run directory goes with it) and remove the prefix and launch directory."""
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls._scratch, ignore_errors=True)

    def test_history_is_kept_in_memory_only(self) -> None:
        """Executed cells are in the history, which lives in an in-memory database: no file anywhere."""
        self.flush_channels()
        self.execute_helper("marker = 'history marker'")
        reply, outputs = self.execute_helper(HISTORY_PROBE)
        self.assertEqual(reply["content"]["status"], "ok")
        probe = _history_probe("".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream"))
        self.assertEqual(probe["hist_file"], ":memory:")
        self.assertEqual(probe["db_files"], [""])  # sqlite names no file for an in-memory database
        self.assertNotIn("history.sqlite", probe["profile_files"])
        self.assertEqual(probe["tail"][0], "marker = 'history marker'")
        # On the host: the launch directory holds nothing new, the private home no database.
        provisioner = self.km.provisioner
        assert isinstance(provisioner, SandboxProvisioner) and provisioner.run_dir is not None
        self.assertEqual(list((self._scratch / "notebooks").iterdir()), [])
        home = provisioner.run_dir / HOME_DIR
        self.assertEqual([p.name for p in home.rglob("*") if "sqlite" in p.name or "history" in p.name], [])


async def test_a_session_keeps_history_in_memory_and_no_file_in_its_workspace(workspace: Path) -> None:
    """A session's kernel answers from its history, and its workspace and home get no history file."""
    async with Session(workspace, default_timeout=60) as session:
        await session.execute("first = 1")
        result = await session.execute(HISTORY_PROBE)
    assert result.ok, result.error
    probe = _history_probe(result.stdout)
    assert probe["hist_file"] == ":memory:" and probe["db_files"] == [""]
    assert probe["tail"][0] == "first = 1"
    assert "history.sqlite" not in probe["profile_files"]
    assert not [p for p in workspace.rglob("*") if "sqlite" in p.name or "history" in p.name]
