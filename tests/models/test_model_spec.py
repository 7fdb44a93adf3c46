"""model_from_spec: a spec string names a provider and a model; mistakes are ModelConfigErrors that say what to write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import kernel_agent
from kernel_agent.agent import Agent
from kernel_agent.errors import ModelConfigError
from kernel_agent.models import model_from_spec
from kernel_agent.models.anthropic import AnthropicModel
from kernel_agent.models.openai import OpenAIModel
from kernel_agent.models.scripted import ScriptedModel


@pytest.fixture(autouse=True)
def no_provider_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY",
                 "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield


async def test_anthropic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    model = model_from_spec("anthropic:claude-sonnet-4-5", max_tokens=123)
    assert isinstance(model, AnthropicModel)
    assert (model.spec, model.provider, model.name, model.max_tokens) == (
        "anthropic:claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5", 123)
    assert model.base_url.startswith("https://api.anthropic.com")
    proxied = model_from_spec("anthropic:claude-x", base_url="http://127.0.0.1:9/proxy")
    assert proxied.base_url.startswith("http://127.0.0.1:9/proxy")  # type: ignore[attr-defined]
    await model.close()
    await proxied.close()


async def test_openai_and_a_compatible_server(monkeypatch: pytest.MonkeyPatch) -> None:
    local = model_from_spec("openai:llama-3.1-8b@http://localhost:8000/v1")  # no key needed
    assert isinstance(local, OpenAIModel)
    assert (local.name, local.spec) == ("llama-3.1-8b", "openai:llama-3.1-8b@http://localhost:8000/v1")
    assert local.base_url.startswith("http://localhost:8000/v1")
    # --base-url wins over the URL in the spec.
    other = model_from_spec("openai:llama@http://localhost:8000/v1", base_url="http://127.0.0.1:9/v1")
    assert other.base_url.startswith("http://127.0.0.1:9/v1")  # type: ignore[attr-defined]
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    hosted = model_from_spec("openai:gpt-4.1")
    assert isinstance(hosted, OpenAIModel) and hosted.spec == "openai:gpt-4.1"
    assert hosted.base_url.startswith("https://api.openai.com/v1")
    for model in (local, other, hosted):
        await model.close()


def test_scripted(tmp_path: Path) -> None:
    script = tmp_path / "steps.py"
    script.write_text("# %%\nprint(1)\n")
    model = model_from_spec(f"scripted:{script}")
    assert isinstance(model, ScriptedModel) and model.spec == f"scripted:{script}"
    with pytest.raises(ModelConfigError, match="no script file at .*missing.py"):
        model_from_spec(f"scripted:{tmp_path / 'missing.py'}")
    with pytest.raises(ModelConfigError, match="takes no options"):
        model_from_spec(f"scripted:{script}", max_tokens=10)


def test_a_model_instance_is_kept_as_it_is() -> None:
    model = ScriptedModel(["1"])
    assert model_from_spec(model) is model
    assert kernel_agent.model_from_spec is model_from_spec  # type: ignore[attr-defined]


@pytest.mark.parametrize(("spec", "message"), [
    ("gemini:pro", "unknown model provider 'gemini' in 'gemini:pro'; known: anthropic, openai, scripted"),
    ("claude-sonnet-4-5", "is not PROVIDER:MODEL"),
    ("anthropic:", "is not PROVIDER:MODEL"),
    ("openai:@http://localhost:8000/v1", "names no model before the '@'"),
    ("anthropic:claude-x", "no API key. Set ANTHROPIC_API_KEY"),
    ("openai:gpt-4.1", "no API key. Set OPENAI_API_KEY"),
])
def test_mistakes_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ModelConfigError) as caught:
        model_from_spec(spec)
    assert message in str(caught.value)


def test_agent_rejects_a_bad_spec_before_starting_anything() -> None:
    with pytest.raises(ModelConfigError, match="unknown model provider"):
        Agent("nope:model")
