"""The record is out of the kernel's reach, and sealed only after the kernel is stopped (issue 10, points 2-3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kernel_agent import SandboxPolicy, Session
from kernel_agent.errors import RecordLocationError
from kernel_agent.record.journal import journal_path_for
from kernel_agent.verify.audit import audit_notebook


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host's record directory for this test (what KERNEL_AGENT_RECORD_DIR names)."""
    path = tmp_path / "records"
    monkeypatch.setenv("KERNEL_AGENT_RECORD_DIR", str(path))
    return path


async def test_the_kernel_cannot_see_or_write_the_default_record(workspace: Path, records: Path) -> None:
    """By default the notebook, journal and side files are in a directory the sandbox does not have at all."""
    async with Session(workspace) as session:
        notebook = session.notebook
        assert notebook is not None and notebook.parent == records
        probe = await session.execute(
            "import os, json\n"
            f"paths = [{str(notebook)!r}, {str(journal_path_for(notebook))!r}, {str(records)!r}]\n"
            "seen = [os.path.exists(p) for p in paths]\n"
            "try:\n"
            f"    open({str(notebook)!r}, 'w').write('forged')\n"
            "    wrote = True\n"
            "except OSError:\n"
            "    wrote = False\n"
            "print(json.dumps({'seen': seen, 'wrote': wrote}))")
        assert json.loads(probe.stdout) == {"seen": [False, False, False], "wrote": False}
    report = audit_notebook(notebook)
    assert report.verdict == "intact" and report.summary.record_reachable_from_sandbox is None
    assert report.summary.end_reason == "closed"


@pytest.mark.parametrize("where", ["workspace", "writable_path", "nested"])
async def test_a_record_the_sandbox_could_write_is_refused(tmp_path: Path, workspace: Path, where: str) -> None:
    """A notebook inside the workspace or a policy's writable path is refused with a named error, before any kernel."""
    extra = tmp_path / "shared"
    extra.mkdir()
    (workspace / "sub").mkdir()
    notebook = {"workspace": workspace / "run.ipynb", "writable_path": extra / "run.ipynb",
                "nested": workspace / "sub" / "run.ipynb"}[where]
    policy = SandboxPolicy(writable_paths=[extra])
    with pytest.raises(RecordLocationError, match="the session's sandbox can write"):
        await Session(workspace, policy=policy, notebook=notebook).start()
    assert not notebook.exists() and not journal_path_for(notebook).exists()


async def test_a_record_directory_owned_by_another_user_is_refused(tmp_path: Path, workspace: Path) -> None:
    """A directory someone else owns (here: the sandbox's own uid on a root host) could be rewritten by them."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory owned by another uid")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    with pytest.raises(RecordLocationError, match="belongs to uid 65534"):
        await Session(workspace, notebook=foreign / "run.ipynb").start()


async def test_a_kernel_racing_close_cannot_replace_an_allowed_reachable_record(workspace: Path, tmp_path: Path) -> None:
    """With allow_reachable_record, a kernel thread that keeps swapping the notebook and journal for forgeries (and
    for links to a host file) while the session closes loses: the kernel is stopped before the seal, the seal is
    written through a descriptor, the host file is untouched, and the audit says the record was reachable."""
    host_file = tmp_path / "host.txt"
    host_file.write_text("host data")
    notebook = workspace / "run.ipynb"
    async with Session(workspace, notebook=notebook, allow_reachable_record=True) as session:
        await session.execute("answer = 6 * 7")
        started = await session.execute(
            "import os, threading\n"
            "forgery = open('run.ipynb').read().replace('answer = 6 * 7', 'answer = 0')\n"
            "def swap():\n"
            "    n = 0\n"
            "    while True:\n"
            "        n += 1\n"
            "        for name in ('run.ipynb', 'run.journal.jsonl'):\n"
            "            tmp = f'.{name}.{n}'\n"
            "            if n % 2:\n"
            "                open(tmp, 'w').write(forgery)\n"
            "            else:\n"
            f"                os.symlink({str(host_file)!r}, tmp)\n"
            "            os.replace(tmp, name)\n"
            "threading.Thread(target=swap, daemon=True).start()\n"
            "print('racing')")
        assert started.stdout == "racing\n"
    # The journal's name may now be the kernel's (the host kept appending to the file it opened): a reachable
    # record's journal is not evidence, its sealed notebook is.
    assert host_file.read_text() == "host data"
    assert not notebook.is_symlink()
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    assert report.summary.record_reachable_from_sandbox and "can write" in report.summary.record_reachable_from_sandbox
    sources = [c["source"] for c in json.loads(notebook.read_text())["cells"]]
    assert "answer = 6 * 7" in sources and "answer = 0" not in sources


async def test_a_planted_side_file_directory_is_never_followed(workspace: Path, tmp_path: Path) -> None:
    """In an allowed reachable record, the kernel plants ``<stem>.files`` as a link to a host directory; a large
    tool result must not be written through it: it stays in the notebook, and the problem is named."""
    from kernel_agent import tool

    @tool
    def big() -> str:
        """A result over the side-file threshold."""
        return "x" * 200_000

    victim = tmp_path / "victim"
    victim.mkdir()
    notebook = workspace / "run.ipynb"
    async with Session(workspace, notebook=notebook, tools=[big], allow_reachable_record=True) as session:
        await session.execute(f"import os\nos.symlink({str(victim)!r}, 'run.files')")
        result = await session.execute("len(tools.big())")
        assert result.result == "200000"
    assert list(victim.iterdir()) == []
    cells = json.loads(notebook.read_text())["cells"]
    ours = next(c for c in cells if "tools.big()" in c["source"])["metadata"]["kernel_agent"]
    assert ours["tool_calls"][0]["result"] == "x" * 200_000
    assert "could not be written" in ours["recording_problems"][0]
    assert audit_notebook(notebook).verdict == "intact"


async def test_a_kernel_cannot_make_its_own_record_unauditable(workspace: Path, records: Path) -> None:
    """Output the strict reader would refuse (JSON nested 300 levels, a 2,000-digit integer, an unpaired surrogate)
    is replaced and named in the record, so audit and replay still read it."""
    async with Session(workspace) as session:
        result = await session.execute(
            "import json\nfrom IPython.display import display\n"
            "deep = json.loads('[' * 300 + ']' * 300)\n"
            "display({'application/json': {'deep': deep, 'big': 10 ** 2000}}, raw=True)\n"
            "print('\\ud800'.encode('utf-8', 'surrogatepass').decode('utf-8', 'surrogatepass') if False else 'done')")
        assert "done" in result.stdout
        notebook = session.notebook
    assert notebook is not None
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    cells = json.loads(notebook.read_text())["cells"]
    ours = next(c for c in cells if "deep = json.loads" in c["source"])["metadata"]["kernel_agent"]
    problems = " | ".join(ours["recording_problems"])
    assert "nested deeper than 200 levels" in problems and "integer of about 2,001 digits" in problems


async def test_audit_reads_a_linked_side_file_without_a_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """audit reads side files through the one reader: a link planted at <stem>.files/<digest>.json (to a huge
    file, or /proc/self/pagemap) is refused and named, never followed and read whole."""
    from kernel_agent import tool
    from kernel_agent.record.recorder import side_files_dir
    from kernel_agent.verify.audit import audit_notebook
    from tests.conftest import PeakRss

    @tool
    def blob(n: int) -> str:
        """A long string (stored in a side file)."""
        return "x" * n

    notebook = tmp_path / "records" / "s.ipynb"
    notebook.parent.mkdir()
    (tmp_path / "ws").mkdir()
    async with Session(tmp_path / "ws", tools=[blob], notebook=notebook, default_timeout=60) as session:
        assert (await session.execute("big = tools.blob(n=70_000)")).ok
    side_files = list(side_files_dir(notebook).iterdir())
    assert side_files
    huge = tmp_path / "huge"
    with huge.open("wb") as handle:
        handle.truncate(96 * 1024**2)  # sparse
    for path in side_files:
        path.unlink()
        path.symlink_to(huge)
    monkeypatch.setenv("KERNEL_AGENT_MAX_RECORD_BYTES", str(1024**2))
    with PeakRss() as peak:
        report = audit_notebook(notebook)
    assert peak.growth < 48 * 1024**2, f"audit read {peak.growth:,} bytes through a planted link"
    assert any("link" in problem.message for problem in report.problems), report.problems
