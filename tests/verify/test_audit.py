"""``kernel-agent audit``: one real recorded session, then every way of damaging a copy of it.

The session is recorded once per module (a sandboxed kernel, real tools, a
side file); each test audits its own copy through the real command line, and
every audit checks that it left the notebook's bytes (and side files) alone.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kernel_agent import CellResult, SyncSession, tool
from kernel_agent.cli.audit import main as audit_main
from kernel_agent.record.format import AUDIT_KEY_ENV, SIDE_FILE_KEY, cell_hash, genesis_hash, seal_hash
from kernel_agent.record.signing import generate_keypair, public_hex
from kernel_agent.tools.policy import CallRequest, Decision
from kernel_agent.verify.audit import audit_notebook

KEY = "audit-test-key"
SIGNING_KEY = Ed25519PrivateKey.generate()


@tool(read_only=True)
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@tool(destructive=True)
def wipe(confirm: bool) -> str:
    """Delete everything (the policy below never lets it run)."""
    return "wiped"


def fail(message: str) -> None:
    """Always raises."""
    raise ValueError(message)


def big(size: int) -> str:
    """A result large enough to go to a side file."""
    return "x" * size


def deny_destructive(request: CallRequest) -> Decision:
    """Refuse destructive tools outright (the audit must count the refusal)."""
    return Decision.DENY if request.tool.destructive else Decision.ALLOW


TOOL_CELL = """\
print(tools.add(2, b=3))
try:
    tools.wipe(True)
except Exception as e:
    print(type(e).__name__)
try:
    tools.fail('disk full')
except Exception as e:
    print(type(e).__name__)
len(tools.big(100_000))"""

# How to find each recorded cell (by the start of its source): positions are looked up in the
# recorded notebook, so a recorder that adds cells (such as its setup cell) does not break the tests.
CELL_SOURCES = {
    "task": "Add the numbers.", "hello": "print('hello')", "raises": "1/0", "html": "from IPython.display",
    "tools": "print(tools.add", "message": "Now something slow.", "timeout": "while True",
    "dies": "import os; os._exit", "answer": "final_answer(",
}


@dataclass(frozen=True)
class Recording:
    """The recorded session: where it is and what the host saw while recording it."""

    notebook: Path
    results: list[CellResult]
    index: dict[str, int]  # CELL_SOURCES name -> index in the notebook (= its seq)
    cells: int
    public_key: Ed25519PublicKey

    @property
    def side_files(self) -> Path:
        return self.notebook.with_name(f"{self.notebook.stem}.files")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """One real session: prints, raises, HTML, tool calls (ok, denied, error, a >64 KiB result), a
    timeout, a kernel death, token usage, messages and a final answer; signed with KEY."""
    root = tmp_path_factory.mktemp("recording")
    (root / "workspace").mkdir()
    notebook = root / "session.ipynb"
    results = []
    with SyncSession(root / "workspace", notebook=notebook, tools=[add, wipe, fail, big],
                     tool_policy=deny_destructive, audit_key=KEY, signing_key=SIGNING_KEY,
                     record_metadata={"model": "test-model"}) as s:
        s.session.record_message("task", "Add the numbers.\nThen report the total.")
        results.append(s.execute("print('hello')", record_extras={
            "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 50}}))
        results.append(s.execute("1/0"))
        results.append(s.execute("from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))"))
        results.append(s.execute(TOOL_CELL, record_extras={"usage": {"input_tokens": 200, "output_tokens": 30}}))
        s.session.record_message("message", "Now something slow.")
        results.append(s.execute("while True: pass", timeout=1))
        results.append(s.execute("import os; os._exit(1)"))
        results.append(s.execute("final_answer({'total': 5})"))
    assert [r.status.value for r in results] == ["ok", "error", "ok", "ok", "timeout", "kernel_died", "ok"]
    assert len(list((root / "session.files").iterdir())) == 1
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    index = {name: next(i for i, c in enumerate(cells) if c["source"].startswith(start))
             for name, start in CELL_SOURCES.items()}
    assert list(index.values()) == sorted(index.values())
    return Recording(notebook, results, index, len(cells), SIGNING_KEY.public_key())


@pytest.fixture
def ix(recording: Recording) -> dict[str, int]:
    """Where each recorded cell is in the notebook."""
    return recording.index


@pytest.fixture
def nb(recording: Recording, tmp_path: Path) -> Path:
    """This test's own copy of the recorded notebook and its side files."""
    target = tmp_path / recording.notebook.name
    shutil.copy2(recording.notebook, target)
    shutil.copytree(recording.side_files, tmp_path / recording.side_files.name)
    return target


def snapshot(notebook: Path) -> dict[str, bytes]:
    """The bytes of the notebook and of every side file next to it."""
    files = [notebook] if notebook.is_file() else []
    side = notebook.with_name(f"{notebook.stem}.files")
    files += sorted(side.iterdir()) if side.is_dir() else []
    return {str(f): f.read_bytes() for f in files}


def audit(notebook: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``kernel-agent audit`` as a subprocess (no key in its environment unless given) and check it
    changed nothing."""
    before = snapshot(notebook)
    environment = {k: v for k, v in os.environ.items() if k != AUDIT_KEY_ENV} | (env or {})
    run = subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", "audit", str(notebook), *args],
                         capture_output=True, text=True, env=environment, timeout=60)
    assert snapshot(notebook) == before, "the audit modified its input"
    assert "Traceback" not in run.stderr, run.stderr
    return run


def audit_json(notebook: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The --json report from the command line (its exit status checked against the report's own)."""
    run = audit(notebook, "--json", *args, env=env)
    report: dict[str, Any] = json.loads(run.stdout)
    assert run.returncode == report["exit_code"]
    return report


def report(notebook: Path, key: str | None = None) -> dict[str, Any]:
    """The same report in-process (the command line is slow to start on a busy machine), as JSON data."""
    before = snapshot(notebook)
    found = audit_notebook(notebook, key.encode() if key else None).model_dump(mode="json")
    assert snapshot(notebook) == before, "the audit modified its input"
    return found


def edit(notebook: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the notebook's JSON and write it back."""
    document = json.loads(notebook.read_text(encoding="utf-8"))
    change(document)
    notebook.write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")


def cell(notebook: Path, index: int) -> dict[str, Any]:
    """One cell of the notebook as stored."""
    return json.loads(notebook.read_text(encoding="utf-8"))["cells"][index]  # type: ignore[no-any-return]


def verdict_line(run: subprocess.CompletedProcess[str]) -> str:
    return run.stdout.splitlines()[0]


# -- intact -------------------------------------------------------------------------------


def test_intact_notebook_verifies_and_is_summarised_from_its_cells(nb: Path, recording: Recording) -> None:
    """Exit 0, INTACT first, and every summary value recomputed from the cells."""
    found = audit_json(nb)
    assert found["exit_code"] == 0 and found["verdict"] == "intact" and found["problems"] == []
    assert found["headline"].startswith(f"INTACT: {recording.cells} cells verified")
    s = found["summary"]
    results = recording.results
    assert s["task"] == "Add the numbers.\nThen report the total."
    assert s["model"] == "test-model"
    assert (s["cells"], s["steps"], s["messages"]) == (recording.cells, 7, 1)
    assert (s["errors"], s["timeouts"], s["kernel_deaths"]) == (1, 1, 1)
    assert s["kernel_restarts"] == sum(r.kernel_restarted for r in results) >= 1
    assert s["state_losses"] == sum(r.state_lost for r in results) >= 1
    assert s["tool_calls"] == 4
    assert s["tools"]["add"] == {"calls": 1, "ok": 1, "errors": 0, "denied": 0, "statuses": {"ok": 1},
                                 "destructive": False}
    assert s["tools"]["wipe"] == {"calls": 1, "ok": 0, "errors": 0, "denied": 1, "statuses": {"denied": 1},
                                  "destructive": True}
    assert s["tools"]["fail"]["errors"] == 1 and s["tools"]["big"]["ok"] == 1
    assert s["destructive_tools"] == ["wipe"]
    assert s["tokens"] == {"input_tokens": 300, "output_tokens": 50, "cache_read_input_tokens": 50}
    assert s["seconds_in_cells"] == pytest.approx(sum(r.duration for r in results), abs=1e-3)
    assert s["wall_seconds"] >= s["seconds_in_cells"]
    assert s["has_final_answer"] and s["final_answer"] == {"total": 5}
    assert s["sandbox_mode"] == "bwrap" and s["confined"] is True and s["loosenings"] == []
    assert found["chain"]["hmac"] == "not_checked" and found["chain"]["chained_cells"] == recording.cells


def test_text_report_reads_like_the_json(nb: Path) -> None:
    """The text report and --json say the same: same verdict line, same numbers."""
    run, found = audit(nb), audit_json(nb)
    assert run.returncode == found["exit_code"] == 0
    assert verdict_line(run) == found["headline"]
    assert f"tool calls:   {found['summary']['tool_calls']}: " in run.stdout
    text = run.stdout
    assert "7 code cells, 1 message; 1 error, 1 timeout, 1 kernel death" in text
    assert "wipe (1 denied, DESTRUCTIVE)" in text
    assert "cache_read_input_tokens 50, input_tokens 300, output_tokens 50" in text
    assert 'final answer: {"total": 5}' in text
    assert "bwrap (confined); loosenings: none" in text
    assert "task:         Add the numbers. Then report the total." in text


def test_resaved_by_nbformat_is_still_intact(nb: Path, recording: Recording, ix: dict[str, int]) -> None:
    """nbformat.read + nbformat.write (text split into lines, keys reordered) changes nothing the chain covers."""
    nbformat.write(nbformat.read(nb, as_version=4), nb)
    assert isinstance(cell(nb, ix["task"])["source"], list)  # the re-save really did rewrite the text
    run = audit(nb, env={AUDIT_KEY_ENV: KEY})
    assert run.returncode == 0, run.stdout
    assert verdict_line(run) == (f"INTACT: {recording.cells} cells verified, sealed (sha256 chain, HMAC valid, "
                                 "signature not checked (no public key))")


def test_editor_ui_metadata_is_a_note_not_tampering(nb: Path, ix: dict[str, int]) -> None:
    """Collapsing a cell in JupyterLab adds metadata outside kernel_agent: the recorded content is unchanged."""
    edit(nb, lambda d: d["cells"][ix["hello"]]["metadata"].update({"collapsed": True, "trusted": True}))
    found = report(nb)
    assert found["verdict"] == "intact"
    note = next(n for n in found["notes"] if n["kind"] == "ui_metadata")
    assert note["cell"]["index"] == ix["hello"] and "collapsed, trusted" in note["message"]


# -- tampered -------------------------------------------------------------------------------


def assert_names_cell(line: str, index: int, source_line: str, notebook: Path) -> None:
    """The verdict line names the cell by index, seq, id and first line."""
    stored = cell(notebook, index)
    assert f"the cell at index {index} (seq {index}, id {stored['id']}" in line, line
    assert source_line in line, line


def test_one_character_source_edit_names_the_cell(nb: Path, ix: dict[str, int]) -> None:
    edit(nb, lambda d: d["cells"][ix["hello"]].update(source="print('hellO')"))
    run = audit(nb)
    assert run.returncode == 1
    assert verdict_line(run).startswith("TAMPERED: ") and "was changed" in verdict_line(run)
    assert_names_cell(verdict_line(run), ix["hello"], "print('hellO')", nb)


def test_edited_output_names_the_cell(nb: Path, ix: dict[str, int]) -> None:
    edit(nb, lambda d: d["cells"][ix["html"]]["outputs"][0]["data"].update({"text/html": "<b>bolder</b>"}))
    found = report(nb)
    assert found["exit_code"] == 1 and found["headline"].startswith("TAMPERED: ")
    assert_names_cell(found["headline"], ix["html"], "from IPython.display import HTML, display", nb)


def test_edited_tool_call_result_names_the_cell(nb: Path, ix: dict[str, int]) -> None:
    def change(document: dict[str, Any]) -> None:
        calls = document["cells"][ix["tools"]]["metadata"]["kernel_agent"]["tool_calls"]
        assert calls[0]["tool"] == "add" and calls[0]["result"] == 5
        calls[0]["result"] = 6

    edit(nb, change)
    found = report(nb)
    assert found["exit_code"] == 1 and found["headline"].startswith("TAMPERED: ")
    assert_names_cell(found["headline"], ix["tools"], "print(tools.add(2, b=3))", nb)


def test_only_the_edited_cells_are_reported(nb: Path, ix: dict[str, int]) -> None:
    """Each cell links to its predecessor's recorded hash, so two edits give two problems, not a cascade."""
    def change(document: dict[str, Any]) -> None:
        document["cells"][ix["hello"]]["source"] = "print('hullo')"
        document["cells"][ix["answer"]]["source"] = "final_answer({'total': 6})"

    edit(nb, change)
    assert [(p["kind"], p["cell"]["index"]) for p in report(nb)["problems"]] == [
        ("content_changed", ix["hello"]), ("content_changed", ix["answer"])]


def test_removed_cell(nb: Path, ix: dict[str, int]) -> None:
    removed = ix["raises"]
    edit(nb, lambda d: d["cells"].pop(removed))
    run = audit(nb)
    assert run.returncode == 1
    line = verdict_line(run)
    assert line.startswith(f"TAMPERED: a cell was removed (seq {removed}): expected seq {removed}, "
                           f"found seq {removed + 1} at the cell at index {removed}"), line
    assert [p["kind"] for p in report(nb)["problems"]] == ["cell_removed"]  # the broken link is explained


def test_inserted_foreign_cell(nb: Path, ix: dict[str, int]) -> None:
    injected = dict(nbformat.v4.new_code_cell("print('injected')"))
    edit(nb, lambda d: d["cells"].insert(ix["html"], injected))
    run = audit(nb)
    assert run.returncode == 1
    line = verdict_line(run)
    assert line.startswith(f"TAMPERED: a cell was inserted: the cell at index {ix['html']}"), line
    assert "print('injected')" in line and "no kernel-agent metadata" in line
    assert [p["kind"] for p in report(nb)["problems"]] == ["cell_inserted"]


def test_inserted_copy_of_a_recorded_cell(nb: Path, ix: dict[str, int]) -> None:
    """A recorded cell pasted elsewhere repeats a seq: the copy, not the original, is named."""
    def change(document: dict[str, Any]) -> None:
        duplicate = copy.deepcopy(document["cells"][ix["hello"]])
        duplicate["id"] = "pastedcopy01"
        document["cells"].insert(ix["message"], duplicate)

    edit(nb, change)
    found = report(nb)
    assert found["exit_code"] == 1
    line = found["headline"]
    hello = ix["hello"]
    assert f"a cell was inserted: the cell at index {ix['message']} (seq {hello}, id pastedcopy01" in line, line
    assert f"repeats seq {hello}, which belongs to the cell at index {hello}" in line


def test_swapped_cells(nb: Path, ix: dict[str, int]) -> None:
    first, second = ix["raises"], ix["html"]

    def change(document: dict[str, Any]) -> None:
        cells = document["cells"]
        cells[first], cells[second] = cells[second], cells[first]

    edit(nb, change)
    run = audit(nb)
    assert run.returncode == 1
    line = verdict_line(run)
    assert line.startswith(f"TAMPERED: cells were reordered: the cell at index {second} (seq {first}"), line
    assert f"comes after seq {second} (at index {first})" in line


def test_changed_header(nb: Path) -> None:
    """Loosening the recorded sandbox policy is caught by the genesis."""
    def change(document: dict[str, Any]) -> None:
        document["metadata"]["kernel_agent"]["session"]["sandbox"]["policy"]["network"] = True

    edit(nb, change)
    run = audit(nb)
    assert run.returncode == 1
    assert verdict_line(run).startswith("TAMPERED: the session header (metadata.kernel_agent.session) was changed")
    assert [p["kind"] for p in report(nb)["problems"]] == ["header_changed"]


def test_changed_header_with_genesis_updated_breaks_the_first_cell(nb: Path) -> None:
    """Recomputing chain.genesis too just moves the break to the first cell."""
    def change(document: dict[str, Any]) -> None:
        ours = document["metadata"]["kernel_agent"]
        ours["session"]["sandbox"]["mode"] = "none"
        ours["chain"]["genesis"] = genesis_hash(ours["session"])

    edit(nb, change)
    found = report(nb)
    assert found["exit_code"] == 1
    line = found["headline"]
    assert "the cell at index 0 (seq 0" in line and "or the session header was changed" in line, line


def test_edited_genesis_alone_is_named(nb: Path) -> None:
    edit(nb, lambda d: d["metadata"]["kernel_agent"]["chain"].update(genesis="0" * 64))
    assert [p["kind"] for p in report(nb)["problems"]] == ["genesis_changed"]


def test_truncated_notebook_is_incomplete(nb: Path, recording: Recording, ix: dict[str, int]) -> None:
    edit(nb, lambda d: d["cells"].__delitem__(slice(ix["dies"], None)))
    run = audit(nb)
    assert run.returncode == 1
    line = verdict_line(run)
    assert line.startswith(f"INCOMPLETE: the notebook is truncated: the chain records {recording.cells} cells "
                           f"but its last chained cell is seq {ix['dies'] - 1}; 2 cell(s) at the end are missing"), line


def truncate_and_fix_chain(document: dict[str, Any], keep: int, *, reseal: bool) -> None:
    """Drop the cells from ``keep`` on and rewrite length and head (and, with ``reseal``, the end and its seal)."""
    del document["cells"][keep:]
    ours = document["metadata"]["kernel_agent"]
    chain = ours["chain"]
    chain["length"], chain["head"] = keep, document["cells"][-1]["metadata"]["kernel_agent"]["hash"]
    if reseal:
        ours["end"].update(cells=keep, head=chain["head"])
        chain["seal"] = seal_hash(chain["head"], ours["end"])


def test_truncated_with_a_rewritten_head_breaks_the_seal(nb: Path, ix: dict[str, int]) -> None:
    """Dropping cells and fixing length/head leaves a sealed end that no longer fits, even without a key."""
    edit(nb, lambda d: truncate_and_fix_chain(d, ix["dies"], reseal=False))
    found = report(nb)
    assert found["exit_code"] == 1 and [p["kind"] for p in found["problems"]] == ["end_changed"]


def test_truncated_and_resealed_is_caught_by_the_hmac_and_the_signature(
        nb: Path, ix: dict[str, int], recording: Recording) -> None:
    """A complete rewrite (cells, length, head, end, seal) is consistent without a key, TAMPERED with the HMAC key
    and with the public key."""
    edit(nb, lambda d: truncate_and_fix_chain(d, ix["dies"], reseal=True))
    assert report(nb)["exit_code"] == 0
    found = report(nb, key=KEY)
    assert found["exit_code"] == 1 and found["headline"].startswith("TAMPERED: the chain's HMAC does not match the key")
    signed = audit_notebook(nb, None, recording.public_key)
    assert signed.exit_code == 1 and [p.kind for p in signed.problems] == ["signature_invalid"]


def test_the_signature_verifies_with_the_public_key_only(nb: Path, tmp_path: Path) -> None:
    """`audit --public-key` checks the Ed25519 signature: valid with the recording's key, TAMPERED with another."""
    public = tmp_path / "recording.pub"
    public.write_text(public_hex(SIGNING_KEY.public_key()) + "\n")
    good = audit_json(nb, "--public-key", str(public))
    assert good["exit_code"] == 0 and good["chain"]["signature"] == "valid", good["headline"]
    assert "signature valid" in good["headline"]
    unchecked = audit_json(nb)
    assert unchecked["chain"]["signature"] == "not_checked"
    assert any(n["kind"] == "signature_not_checked" for n in unchecked["notes"])
    other = tmp_path / "other"
    generate_keypair(other)
    wrong = audit_json(nb, "--public-key", f"{other}.pub")
    assert wrong["exit_code"] == 1 and [p["kind"] for p in wrong["problems"]] == ["signature_invalid"]


def test_changed_settings_in_the_sealed_end_are_tampering(nb: Path) -> None:
    """The end records the session's settings; raising a limit there after the fact breaks the seal."""
    edit(nb, lambda d: d["metadata"]["kernel_agent"]["end"]["settings"].update(max_tool_calls=10**6))
    found = report(nb)
    assert found["exit_code"] == 1 and [p["kind"] for p in found["problems"]] == ["end_changed"]


def test_session_that_never_closed_is_incomplete(nb: Path) -> None:
    """No end and no seal: the session never closed (or both were cut off): INCOMPLETE."""
    def unseal(document: dict[str, Any]) -> None:
        document["metadata"]["kernel_agent"].pop("end")
        document["metadata"]["kernel_agent"]["chain"].pop("seal")

    edit(nb, unseal)
    found = report(nb)
    assert found["exit_code"] == 1 and found["headline"].startswith("INCOMPLETE: the session has no sealed end")


def test_removed_end_of_a_sealed_chain_is_tampering(nb: Path) -> None:
    edit(nb, lambda d: d["metadata"]["kernel_agent"].pop("end"))
    found = report(nb)
    assert found["exit_code"] == 1 and [p["kind"] for p in found["problems"]] == ["end_removed"]


def side_file(notebook: Path) -> Path:
    [path] = notebook.with_name(f"{notebook.stem}.files").iterdir()
    return path


def test_missing_side_file_is_incomplete(nb: Path, ix: dict[str, int]) -> None:
    reference = cell(nb, ix["tools"])["metadata"]["kernel_agent"]["tool_calls"][3]["result"]
    assert reference[SIDE_FILE_KEY] == side_file(nb).stem and reference["bytes"] == 100_002
    side_file(nb).unlink()
    run = audit(nb)
    assert run.returncode == 1
    line = verdict_line(run)
    assert line.startswith(f"INCOMPLETE: side file {reference[SIDE_FILE_KEY]}.json (the result of tool call 3 (big)")
    assert f"the cell at index {ix['tools']}" in line and "is missing" in line


def test_modified_side_file_is_tampered(nb: Path) -> None:
    path = side_file(nb)
    path.write_text(path.read_text().replace("x", "y", 1))
    run = audit(nb)
    assert run.returncode == 1
    assert verdict_line(run).startswith(f"TAMPERED: side file {path.name}") and "does not match its hash" in run.stdout


# -- the HMAC ---------------------------------------------------------------------------------


def test_hmac_with_the_right_key(nb: Path, tmp_path: Path) -> None:
    by_env = audit(nb, "--key-env", "MY_KEY", env={"MY_KEY": KEY})
    assert by_env.returncode == 0 and "HMAC valid" in verdict_line(by_env)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    by_file = audit(nb, "--key-file", str(key_file))
    assert by_file.returncode == 0 and "HMAC valid" in verdict_line(by_file)
    assert report(nb, key=KEY)["chain"]["hmac"] == "valid"


def test_hmac_with_a_wrong_key(nb: Path) -> None:
    run = audit(nb, env={AUDIT_KEY_ENV: "not-the-key"})
    assert run.returncode == 1 and verdict_line(run).startswith("TAMPERED: the chain's HMAC does not match")


def test_rewritten_chain_with_a_stale_hmac_is_tampered(nb: Path) -> None:
    """An edit with every later hash recomputed passes the chain, not the HMAC."""
    def change(document: dict[str, Any]) -> None:
        ours = document["metadata"]["kernel_agent"]
        document["cells"][1]["source"] = "print('forged')"
        head = ours["chain"]["genesis"]
        for stored in document["cells"]:
            head = cell_hash(head, stored)
            stored["metadata"]["kernel_agent"]["hash"] = head
        ours["chain"]["head"] = ours["end"]["head"] = head
        ours["chain"]["seal"] = seal_hash(head, ours["end"])

    edit(nb, change)
    assert report(nb)["exit_code"] == 0  # consistent: only the key can tell
    found = report(nb, key=KEY)
    assert found["exit_code"] == 1 and "HMAC does not match" in found["headline"]


def test_unsigned_notebook_with_a_key_is_not_intact(nb: Path) -> None:
    edit(nb, lambda d: d["metadata"]["kernel_agent"]["chain"].update(hmac=None))
    without_key = report(nb)
    assert without_key["verdict"] == "intact" and without_key["chain"]["hmac"] == "unsigned"
    run = audit(nb, env={AUDIT_KEY_ENV: KEY})
    assert run.returncode == 1 and verdict_line(run).startswith("TAMPERED: the chain is unsigned but a key was given")


def test_named_key_variable_that_is_unset_is_an_error(nb: Path) -> None:
    run = audit(nb, "--key-env", "NO_SUCH_KEY_VARIABLE")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == ("kernel-agent audit: error: the environment variable NO_SUCH_KEY_VARIABLE is "
                                  "not set (or empty): no key to check with")


# -- unusable input ------------------------------------------------------------------------------


def not_json(path: Path) -> None:
    path.write_text("{ this is not json")


def plain_notebook(path: Path) -> None:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)


def future_format(path: Path) -> None:
    plain_notebook(path)
    edit(path, lambda d: d["metadata"].update(kernel_agent={"format": 99}))


def json_list(path: Path) -> None:
    path.write_text("[1, 2, 3]")


def directory(path: Path) -> None:
    path.mkdir()


def missing(path: Path) -> None:
    pass


@pytest.mark.parametrize(("make", "message"), [
    (not_json, "is not valid JSON"),
    (json_list, "is not a Jupyter notebook"),
    (plain_notebook, "is a Jupyter notebook but was not recorded by kernel-agent (no metadata.kernel_agent)"),
    (future_format, "uses recording format 99; this kernel-agent reads format 1"),
    (missing, "does not exist"),
    (directory, "is a directory, not a notebook file"),
])
def test_unusable_input_exits_2_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "input.ipynb"
    make(path)
    run = audit(path)
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith("kernel-agent audit: error: ") and message in run.stderr, run.stderr
    assert audit_main(str(path), json_output=True) == 2
    unusable = json.loads(capsys.readouterr().out)
    assert unusable["verdict"] == "unusable" and message in unusable["error"]



def test_a_closed_pipe_never_looks_like_tampering(nb: Path) -> None:
    """`kernel-agent audit NB | head`: the reader goes away before the report is written; the status is still the
    verdict's (0: intact), with no BrokenPipe traceback."""
    environment = {k: v for k, v in os.environ.items() if k != AUDIT_KEY_ENV}
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written: every write gets EPIPE
    try:
        run = subprocess.run([sys.executable, "-m", "kernel_agent.cli.main", "audit", str(nb)], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, env=environment, timeout=60)
    finally:
        os.close(write_end)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr
