"""Skills in a real sandboxed kernel: tools.search finds them marked as skills; nothing makes them callable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kernel_agent import Session

from .fake_source import LibrarySource, filled_library

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    root = tmp_path_factory.mktemp("skills-kernel")
    (root / "workspace").mkdir()
    source = LibrarySource(filled_library(str(root / "library")))
    async with Session(root / "workspace", tools=[source], notebook=False, tool_timeout=30) as started:
        yield started


async def run_json(session: Session, code: str) -> object:
    result = await session.execute(code + "\nimport json as _json\nprint(_json.dumps(_out))")
    assert result.ok, result.error
    return json.loads(result.stdout.splitlines()[-1])


async def test_the_prompt_lists_the_skills(session: Session) -> None:
    assert "from skills import parse_amount: Parse an amount" in session.manifest


async def test_kernel_search_finds_skills_like_the_host(session: Session) -> None:
    out = await run_json(session, """
_out = {"all": tools.search("parse amount"), "ns": tools.skills.search("slug"), "every": tools.search("")}
""")
    assert isinstance(out, dict)
    assert out["all"][0] == "from skills import parse_amount: Parse an amount written with thousands separators " \
                            "(skill v1)"
    assert out["ns"][0].startswith("from skills import slugify:")
    registry = session.registry
    assert registry is not None
    host = [e.line.split(":")[0] for e in registry.search_entries("")]
    kernel = [line.split(":")[0].split("(")[0] for line in out["every"]]
    assert kernel == [h.split("(")[0] for h in host]  # the same entries in the same order on both sides


async def test_a_skill_is_not_a_tool_the_kernel_can_call(session: Session) -> None:
    out = await run_json(session, """
_out = {}
try:
    tools.skills.parse_amount
except AttributeError as exc:
    _out["attribute"] = str(exc)
from kernel_agent.kernel import sdk as _sdk
for _name in ("skills.parse_amount", "parse_amount"):
    try:
        _sdk._bridge.call(_name, {"text": "1,000"})
    except Exception as exc:
        _out[_name] = type(exc).__name__
""")
    assert isinstance(out, dict)
    assert out["attribute"] == ("tools.skills.parse_amount is a skill, not a tool: from skills import parse_amount: "
                                "Parse an amount written with thousands separators (skill v1)")
    assert out["skills.parse_amount"] == out["parse_amount"] == "UnknownToolError"
