"""A catalogue of hundreds of tools in a real sandboxed kernel: search, namespaces, help, tab completion and
calls, with namespaces whose modules run on first use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from kernel_agent import Session
from kernel_agent.tools.manifest import OVERVIEW_BUDGET
from kernel_agent.tools.tool import tool_from_schema
from kernel_agent.verify.replay import replay
from tests.catalogue import Catalogue

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    workspace = tmp_path_factory.mktemp("catalogue") / "workspace"
    workspace.mkdir()
    async with Session(workspace, tools=[Catalogue(400)], notebook=False, tool_timeout=30) as started:
        yield started


async def run_json(session: Session, code: str) -> object:
    result = await session.execute(code + "\nimport json as _json\nprint(_json.dumps(_out))")
    assert result.ok, result.error
    return json.loads(result.stdout.splitlines()[-1])


async def test_the_prompt_gets_an_overview(session: Session) -> None:
    manifest = session.manifest
    assert len(manifest) <= OVERVIEW_BUDGET
    assert "400 tools in 20 namespaces." in manifest and "customers 20, invoices 20, " in manifest


async def test_search_and_namespaces_without_loading_modules(session: Session) -> None:
    out = await run_json(session, """
import sys
_loaded = lambda: sorted(m for m in sys.modules if m.startswith("kernel_agent_tools")
                        and "_kernel_agent_source" not in vars(sys.modules[m]))
_before = _loaded()
_out = {"before": _before, "found": tools.search("create invoice", limit=3),
        "in_ns": tools.customers.search("notes"), "namespaces": tools.namespaces(),
        "after": _loaded()}
""")
    assert isinstance(out, dict)
    assert out["before"] == [] and out["after"] == []
    assert out["found"][0].startswith("tools.invoices.create_invoice(") and len(out["found"]) == 3
    assert out["found"][0].endswith("-> Any: Create an invoice.")
    assert out["in_ns"] and all(line.startswith("tools.customers.") for line in out["in_ns"])
    assert len(out["namespaces"]) == 20 and out["namespaces"][1].startswith("tools.invoices (20): Statements")


async def test_help_completion_and_a_call_load_one_namespace(session: Session) -> None:
    result = await session.execute("help(tools.invoices.get_invoice)")
    assert result.ok, result.error
    assert "get_invoice(" in result.stdout and "invoice_id: str" in result.stdout
    assert "Returns the invoice with the given id" in result.stdout
    out = await run_json(session, """
import sys
from IPython.core.completer import provisionalcompleter
with provisionalcompleter():  # what Jupyter's Tab asks (ipykernel's do_complete)
    _matches = [c.text for c in get_ipython().Completer.completions("tools.refunds.list_ref", 22)]
_out = {"matches": _matches, "dir": "get_refund" in dir(tools.refunds),
        "call": tools.invoices.get_invoice("in_1"),
        "loaded": sorted(m for m in sys.modules if m.startswith("kernel_agent_tools")
                         and "_kernel_agent_source" not in vars(sys.modules[m]))}
""")
    assert isinstance(out, dict)
    assert ".list_refunds" in out["matches"] and out["dir"] is True
    assert out["call"]["arguments"]["invoice_id"] == "in_1"
    assert out["loaded"] == ["kernel_agent_tools.invoices", "kernel_agent_tools.refunds"]


async def test_hostile_queries_in_the_kernel(session: Session) -> None:
    out = await run_json(session, """
_out = [len(tools.search(q)) for q in ["x" * 1_000_000, "(.*)+$[", "\\x00\\x1b[2J", "ünï ☃", " ".join(
    f"w{i}" for i in range(100_000))]]
try:
    tools.search(None)
except TypeError as exc:
    _out.append(str(exc))
""")
    # No words at all (only punctuation) is an empty query: the first 20 tools, as tools.search() gives.
    assert out == [0, 20, 0, 0, 0, "search takes a string of words, not NoneType"]


class Described:
    """Tools and their namespaces' lines, as an OpenAPI source gives them."""

    def __init__(self) -> None:
        schema = {"type": "object", "properties": {"invoice_id": {"type": "string"}}, "required": ["invoice_id"]}
        self.tools = [tool_from_schema({"name": name, "description": f"{name} an invoice.", "input_schema": schema},
                                       lambda invoice_id: {"id": invoice_id}, namespace="invoices")
                      for name in ("get", "void")]
        self.namespace_descriptions = {"invoices": "Statements of amounts owed by a customer."}


async def test_a_replay_regenerates_the_sdk_with_the_namespace_lines(tmp_path: Path) -> None:
    """The namespaces' lines are in the SDK's modules: the recording keeps them, so a replay's SDK is the same."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    async with Session(workspace, tools=[Described()], notebook=tmp_path / "run.ipynb") as recorded:
        result = await recorded.execute("print(tools.namespaces()[0]); print(tools.invoices.get('in_7'))")
        assert result.ok, result.error
        assert result.stdout.splitlines() == ["tools.invoices (2): Statements of amounts owed by a customer.",
                                              "{'id': 'in_7'}"]
    assert recorded.notebook is not None
    report = await replay(recorded.notebook)
    assert report.faithful, report.first_divergence
    assert report.warnings == []  # among them would be "the regenerated tool SDK differs (sdk hash ...)"
