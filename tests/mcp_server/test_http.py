"""``kernel-agent mcp --http``: the official streamable-HTTP client, two clients isolated, a long cell in one
not stalling the other, recordings that audit, no kernel left after shutdown; and a hostile client's requests."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest
from mcp import MCPError
from mcp_types import ElicitRequestParams, ElicitResult

from kernel_agent.verify.audit import audit_notebook
from tests.conftest import sandbox_processes
from tests.mcp_server.support import HttpServer, http_client, notebooks, run, server_argv, server_env, text

TOKEN = secrets.token_urlsafe(24)
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """One server for the module's tests (with a bearer token and a short cell timeout)."""
    started = HttpServer(tmp_path_factory.mktemp("records"), "--cell-timeout", "4", "--pool-size", "2",
                         "--observation-limit", "1000", env={"KERNEL_AGENT_MCP_TOKEN": TOKEN})
    yield started
    assert started.stop() == 0, "".join(started.stderr)


async def test_two_clients_are_isolated_and_their_recordings_audit_after_shutdown(tmp_path: Path) -> None:
    records = tmp_path / "records"
    own = HttpServer(records, "--max-cells", "3", "--ask-destructive")
    asked: list[str] = []

    async def approve(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"approve": True})

    try:
        async with http_client(own.url) as first, http_client(own.url, elicitation_callback=approve) as second:
            assert text(await run(first, "secret = 'first'\nopen('mine.txt', 'w').write('1')")) == "Out[1]: 1"
            leaked = await run(second, "secret")
            assert leaked.is_error and "NameError" in text(leaked)
            assert "mine.txt" not in text(await second.call_tool("list_files", {}))
            gone = await second.call_tool("read_file", {"path": "mine.txt"})
            assert gone.is_error and text(gone).startswith("BadArgumentError")
            notebook_of = [json.loads(text(await client.call_tool("session_info", {})))["notebook"]
                           for client in (first, second)]
            assert notebook_of[0] != notebook_of[1]
            # Approval over HTTP: the question travels on the in-flight call's event stream.
            approved = await run(second, "tools.files.delete_record('x')")
            assert text(approved) == "Out[2]: 'deleted x'" and len(asked) == 1

            # A budget: the fourth cell of a session is refused by name; a reset gives a fresh session.
            await run(first, "a = 1")
            await run(first, "b = 2")
            spent = await run(first, "c = 3")
            assert spent.is_error and text(spent).startswith("BudgetSpentError: this session has run its 3 cells")
            reset = text(await first.call_tool("reset_session", {}))
            assert "fresh session" in reset
            fresh = await run(first, "secret")
            assert fresh.is_error and "NameError" in text(fresh)  # the reset's session starts empty
            kernels = psutil.Process(own.process.pid).children(recursive=True)
            assert any("kernel_agent.kernel" in " ".join(kernel.cmdline()) for kernel in kernels)
    finally:
        assert own.stop() == 0, "".join(own.stderr)
    # Shut down: every client's notebook sealed (the reset one, its successor, the second client's), no kernel left.
    recorded = list(notebooks(records))
    assert len(recorded) == 3
    for notebook in recorded:
        report = audit_notebook(notebook, None)
        assert report.verdict == "intact", (notebook, report.problems)
    assert not [kernel for kernel in kernels if kernel.is_running() and kernel.status() != psutil.STATUS_ZOMBIE]


async def test_a_long_cell_in_one_session_does_not_stall_another_client(server: HttpServer) -> None:
    async with http_client(server.url, TOKEN) as waiting, http_client(server.url, TOKEN) as other:
        await run(other, "ready = True")  # its kernel is acquired before the long cell starts
        # The first client's cell runs until the other client's call sets the flag on the host: it can
        # only end if the server answered the other client while this cell was running.
        long_cell = asyncio.create_task(run(waiting, "import time\nwhile not tools.host.flag_is_set('go'):\n"
                                                      "    time.sleep(0.05)\nprint('released')"))
        answered = await run(other, "tools.host.set_flag('go'); 'other done'")
        assert text(answered) == "Out[2]: 'other done'"
        assert text(await long_cell) == "released"


async def test_a_client_that_ends_its_session_has_its_kernel_stopped(server: HttpServer) -> None:
    async with http_client(server.url, TOKEN) as client:
        await run(client, "1")
        workspace = json.loads(text(await client.call_tool("session_info", {})))["workspace"]
        kernel = [psutil.Process(pid) for pid in sandbox_processes(Path(workspace))]
        assert kernel
    # The client sent DELETE on leaving: the server stops that session's kernel (waited for, not slept on).
    _gone, alive = psutil.wait_procs(kernel, timeout=60)
    assert not [process for process in alive if process.status() != psutil.STATUS_ZOMBIE]


async def test_a_cell_that_never_ends_is_interrupted_and_the_session_goes_on(server: HttpServer) -> None:
    async with http_client(server.url, TOKEN) as client:
        await run(client, "kept = 7")
        stuck = await run(client, "while True:\n    pass")
        assert stuck.is_error and "hit its time limit" in text(stuck)
        assert text(await run(client, "kept")) == "Out[3]: 7"


async def test_a_call_the_client_abandons_interrupts_its_cell(server: HttpServer) -> None:
    """The client gives up on a call (its read timeout): the SDK sends notifications/cancelled, the cell is
    interrupted at once (not left running to the cell timeout) and the session goes on."""
    async with http_client(server.url, TOKEN) as client:
        await run(client, "kept = 'still here'")
        with pytest.raises(MCPError, match="timed out"):
            await client.call_tool("run_python", {"code": "while True:\n    pass"}, read_timeout_seconds=0.5)
        assert text(await run(client, "kept")) == "Out[3]: 'still here'"  # In[2] was the abandoned cell
        totals = json.loads(text(await client.call_tool("session_info", {})))["totals"]
        assert totals["timeouts"] == 0  # it was interrupted by the cancel, not by the 4 s time limit


async def test_a_huge_output_comes_back_bounded_with_the_whole_of_it_in_the_workspace(server: HttpServer) -> None:
    async with http_client(server.url, TOKEN) as client:
        flood = text(await run(client, "print('\\n'.join(f'line {i}' for i in range(50_000)))"))
        assert len(flood) < 1500 and "line 0\n" in flood and "line 49999" in flood
        assert "cut here" in flood and "outputs/mcp-001.txt" in flood
        whole = text(await client.call_tool("read_file", {"path": "outputs/mcp-001.txt"}))
        assert whole.startswith("line 0\n") and "the first 256,000 of" in whole


async def test_read_file_refuses_what_the_kernel_planted(server: HttpServer) -> None:
    async with http_client(server.url, TOKEN) as client:
        planted = await run(client, "\n".join([
            "import os", "os.symlink('/etc/passwd', 'passwd')", "os.symlink('/etc', 'etc')",
            "os.mkfifo('pipe')", "open('real.txt', 'w').write('mine')", "os.link('real.txt', 'hard.txt')",
            "print('planted')"]))
        assert text(planted) == "planted"
        for path in ("passwd", "etc/passwd", "pipe", "hard.txt", "../../etc/passwd", "/etc/passwd", "a\x00b"):
            refused = await client.call_tool("read_file", {"path": path})
            assert refused.is_error and text(refused).startswith("BadArgumentError"), (path, text(refused))
            assert "root:" not in text(refused)
        listed = json.loads(text(await client.call_tool("list_files", {})))
        kinds = {entry["name"]: entry["kind"] for entry in listed["entries"]}
        assert kinds["passwd"] == "link (not followed)" and kinds["pipe"] == "special"
        escaped = await client.call_tool("list_files", {"path": "etc"})
        assert escaped.is_error and text(escaped).startswith("BadArgumentError")


async def test_malformed_arguments_and_unknown_tools_get_named_errors(server: HttpServer) -> None:
    async with http_client(server.url, TOKEN) as client:
        wrong_type = await client.call_tool("run_python", {"code": 5})
        assert wrong_type.is_error and text(wrong_type).startswith("BadArgumentError: argument code:")
        missing = await client.call_tool("run_python", {})
        assert missing.is_error and text(missing).startswith("BadArgumentError")
        unknown = await client.call_tool("format_disk", {})
        assert unknown.is_error and text(unknown).startswith("BadArgumentError")
        too_long = await client.call_tool("search_tools", {"query": "x" * 10_000})
        assert too_long.is_error and text(too_long).startswith("BadArgumentError")


async def test_hostile_http_requests_are_refused(server: HttpServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(timeout=30) as http:
        no_token = await http.post(server.url, json=INITIALIZE, headers=JSON_HEADERS)
        assert no_token.status_code == 401
        bad_token = await http.post(server.url, json=INITIALIZE, headers={**JSON_HEADERS, "Authorization": "Bearer x"})
        assert bad_token.status_code == 401
        garbage = await http.post(server.url, content=b"{not json", headers={**JSON_HEADERS, **auth})
        assert garbage.status_code == 400
        oversize = await http.post(server.url, content=b"[" + b"1," * 1_000_000 + b"1]",
                                   headers={**JSON_HEADERS, **auth})
        assert oversize.status_code == 413
        unknown_session = await http.post(server.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                                          headers={**JSON_HEADERS, **auth, "Mcp-Session-Id": "f" * 32,
                                                   "MCP-Protocol-Version": "2025-11-25"})
        assert unknown_session.status_code == 404
        rebinding = await http.post(server.url, json=INITIALIZE,
                                    headers={**JSON_HEADERS, **auth, "Host": "attacker.example"})
        assert rebinding.status_code == 421
        cross_origin = await http.post(server.url, json=INITIALIZE,
                                       headers={**JSON_HEADERS, **auth, "Origin": "http://attacker.example"})
        assert cross_origin.status_code == 403
    assert server.process.poll() is None  # still serving
    async with http_client(server.url, TOKEN) as client:
        assert text(await run(client, "6 * 7")) == "Out[1]: 42"


def test_a_server_on_a_public_address_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    environment = {key: value for key, value in server_env(tmp_path).items() if key != "KERNEL_AGENT_MCP_TOKEN"}
    started = subprocess.run(server_argv("--http", "--host", "0.0.0.0", "--port", "0"), env=environment,
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert started.returncode == 2 and "needs a bearer token" in started.stderr
    assert "Traceback" not in started.stderr
