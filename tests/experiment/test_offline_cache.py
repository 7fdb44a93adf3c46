"""A real-model experiment re-run offline from its reply cache: no API key, no model call.

The first experiment asks Anthropic's real SDK (its HTTP transport faked, as
everywhere in the tests) and fills a reply cache. The second names the same
model by its spec, as a shipped spec would, in an environment without
``ANTHROPIC_API_KEY``: every run the cache holds succeeds with zero model
calls, and a run it does not hold is a row saying the key is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from kernel_agent import KernelPool
from kernel_agent.experiment import Configuration, Experiment, ReplyCache, Task
from kernel_agent.experiment.spec import Task as TaskType
from kernel_agent.models.anthropic import AnthropicModel
from tests.models.fake_providers import (
    ANTHROPIC_MODEL,
    FakeProvider,
    anthropic_message,
    anthropic_usage,
    text_block,
    tool_use_block,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[KernelPool]:
    async with KernelPool(size=2) as started:
        yield started


def answering(task: TaskType, repeat: int) -> AnthropicModel:
    """Claude, through the real SDK and a faked transport: one cell that computes and answers."""
    provider = FakeProvider(anthropic_message(
        text_block("Computing it."), tool_use_block("final_answer(sum(range(10)))"),
        usage=anthropic_usage(1200 + repeat, 40, cache_read=300)))
    return AnthropicModel(ANTHROPIC_MODEL, client=provider.anthropic_client())


async def test_a_shipped_cache_re_runs_a_real_model_experiment_without_a_key(
        pool: KernelPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ReplyCache(tmp_path / "shipped-cache")
    task = Task("sum", "What is the sum of 0..9? Compute it.", expected=45)
    recorded = await Experiment("online", [task], [Configuration("claude", answering)], repeats=2,
                                directory=tmp_path / "online", cache=cache, pool=pool).run()
    assert list(recorded.table["success"]) == [True, True]
    assert list(recorded.table["model_calls"]) == [1, 1]
    assert len(cache) == 2

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    offline = Experiment("offline", [task], [Configuration("claude", f"anthropic:{ANTHROPIC_MODEL}")], repeats=3,
                         directory=tmp_path / "offline", cache=cache, pool=pool)
    table = (await offline.run()).table.sort_values("repeat")
    assert list(table["success"]) == [True, True, False]
    assert list(table["model_calls"]) == [0, 0, 0]
    assert list(table["cached_replies"]) == [1, 1, 0]
    # The tokens are the recorded run's, as the provider counted them.
    assert list(table["input_tokens"])[:2] == [1200, 1201] and list(table["cache_read_tokens"])[:2] == [300, 300]
    third = table.iloc[2]
    assert third["stop_reason"] == "model_error"
    assert "no API key" in third["error"] and "reply cache holds no reply" in third["error"]


async def test_without_a_cache_a_missing_key_is_still_an_error() -> None:
    from kernel_agent.errors import MissingApiKeyError

    configuration = Configuration("claude", f"anthropic:{ANTHROPIC_MODEL}")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ANTHROPIC_API_KEY", raising=False)
        patch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        with pytest.raises(MissingApiKeyError, match="no API key"):
            configuration.model_for(Task("t", "p"), 0)
