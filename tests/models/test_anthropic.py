"""AnthropicModel through the real ``anthropic`` SDK, with only its HTTP transport replaced by a fake Messages API."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
import httpx2
import pytest

from kernel_agent.agent import Agent, StopReason
from kernel_agent.verify.audit import audit_notebook
from kernel_agent.errors import ModelConfigError, ModelResponseError, ModelUnreachableError
from kernel_agent.models.anthropic import AnthropicModel
from kernel_agent.models.base import (
    CODE_TOOL,
    AssistantTurn,
    CodeRequest,
    ModelReply,
    Observation,
    ObservationTurn,
    Turn,
    Usage,
    UserTurn,
)

from .fake_providers import (
    ANTHROPIC_MODEL,
    FakeProvider,
    Reply,
    anthropic_error,
    anthropic_message,
    anthropic_rate_limited,
    anthropic_usage,
    closed_port,
    sent_key,
    text_block,
    tool_use_block,
    weather,
)

SYSTEM = "You are a test agent."
CACHE = {"type": "ephemeral"}


@pytest.fixture(autouse=True)
def no_anthropic_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The developer's own ANTHROPIC_* settings must not leak into these tests."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield


def model_for(fake: FakeProvider, *, max_retries: int = 2) -> AnthropicModel:
    return AnthropicModel("claude-test", client=fake.anthropic_client(max_retries=max_retries), max_tokens=1000)


# -- replies ----------------------------------------------------------------------------------


async def test_tool_use_reply_becomes_code_requests() -> None:
    """Text and two tool_use blocks: the text, both pieces of code with their ids, usage with cache, stop reason."""
    fake = FakeProvider(anthropic_message(
        text_block("I'll load the data, then count the rows."),
        tool_use_block("import csv\nrows = list(csv.reader(open('data.csv')))", id="toolu_01A"),
        tool_use_block("len(rows)", id="toolu_01B"),
        usage=anthropic_usage(310, 85, cache_read=2048, cache_write=128)))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("count the rows")], CODE_TOOL)
    await model.close()
    assert reply == ModelReply(
        text="I'll load the data, then count the rows.",
        code=(CodeRequest("toolu_01A", "import csv\nrows = list(csv.reader(open('data.csv')))"),
              CodeRequest("toolu_01B", "len(rows)")),
        usage=Usage(input_tokens=310, output_tokens=85, cache_read_tokens=2048, cache_write_tokens=128),
        stop_reason="tool_use", model=ANTHROPIC_MODEL)
    assert reply.usage.total_tokens == 310 + 85 + 2048 + 128
    assert model.spec == "anthropic:claude-test" and model.provider == "anthropic"


async def test_plain_text_reply_has_no_code() -> None:
    """An end_turn reply with text only is an answer: no code, the stop reason kept."""
    fake = FakeProvider(anthropic_message(text_block("The answer is 42.\n"), usage=anthropic_usage(50, 7)))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("what is 6*7?")], CODE_TOOL)
    assert (reply.text, reply.code, reply.stop_reason, reply.malformed) == ("The answer is 42.", (), "end_turn", ())
    assert reply.usage == Usage(input_tokens=50, output_tokens=7)
    await model.close()


async def test_malformed_tool_use_is_reported_not_run() -> None:
    """A tool_use of another tool, without `code`, or with non-string code is malformed; the good one still runs."""
    fake = FakeProvider(anthropic_message(
        tool_use_block(id="toolu_bash", name="bash", input={"command": "ls"}),
        tool_use_block(id="toolu_nocode", input={"source": "print(1)"}),
        tool_use_block(id="toolu_int", input={"code": 42}),
        tool_use_block("print('ok')", id="toolu_good")))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert reply.code == (CodeRequest("toolu_good", "print('ok')"),)
    assert [call_id for call_id, _ in reply.malformed] == ["toolu_bash", "toolu_nocode", "toolu_int"]
    assert "'bash'" in reply.malformed[0][1] and "ls" in reply.malformed[0][1]
    assert "source" in reply.malformed[1][1]


# -- the request the SDK sends ------------------------------------------------------------------


async def test_request_carries_system_tool_and_conversation() -> None:
    """System prompt and the python tool as the API wants them; turns converted, roles alternating, cache marks."""
    fake = FakeProvider(anthropic_message(text_block("done")))
    model = model_for(fake)
    first = ModelReply(text="Two cells.", code=(CodeRequest("toolu_1", "x = 1"), CodeRequest("toolu_2", "1/0")))
    fenced = ModelReply(text="```python\nprint(x)\n```", code=(CodeRequest("fenced-3", "print(x)", via="fenced"),))
    broken = ModelReply(text="", malformed=(("toolu_bad", "tool 'bash' with input {}"),))
    conversation: list[Turn] = [
        UserTurn("the task"),
        AssistantTurn(first),
        ObservationTurn((Observation("toolu_1", ""), Observation("toolu_2", "ZeroDivisionError", is_error=True))),
        UserTurn("final_answer was rejected"),
        AssistantTurn(fenced),
        ObservationTurn((Observation("fenced-3", "1\n", via="fenced"),)),
        AssistantTurn(broken),
        ObservationTurn((Observation("toolu_bad", "Error: the call could not be read", is_error=True),)),
    ]
    await model.complete(SYSTEM, conversation, CODE_TOOL)
    await model.close()
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert sent_key(request) == "test-key" and "anthropic-version" in request.headers
    body = request.body
    assert body["model"] == "claude-test" and body["max_tokens"] == 1000
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": CACHE}]
    assert body["tools"] == [{"name": "python", "description": CODE_TOOL.description,
                              "input_schema": CODE_TOOL.input_schema}]
    assert body["tools"][0]["input_schema"]["required"] == ["code"]
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == [{"type": "text", "text": "the task"}]
    assert messages[1]["content"] == [
        {"type": "text", "text": "Two cells."},
        {"type": "tool_use", "id": "toolu_1", "name": "python", "input": {"code": "x = 1"}},
        {"type": "tool_use", "id": "toolu_2", "name": "python", "input": {"code": "1/0"}}]
    # The observations and the loop's note go in one user turn (the API wants roles to alternate).
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
         "content": [{"type": "text", "text": "(no output)"}]},
        {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
         "content": [{"type": "text", "text": "ZeroDivisionError"}]},
        {"type": "text", "text": "final_answer was rejected"}]
    # Fenced code is plain text both ways: no tool_use to answer.
    assert messages[3]["content"] == [{"type": "text", "text": "```python\nprint(x)\n```"}]
    assert messages[4]["content"] == [{"type": "text", "text": "1\n"}]
    assert messages[5]["content"] == [{"type": "tool_use", "id": "toolu_bad", "name": "python",
                                       "input": {"raw": "tool 'bash' with input {}"}}]
    # Only the newest block carries a cache mark (besides the system prompt).
    assert messages[6]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_bad", "is_error": True,
                                       "content": [{"type": "text", "text": "Error: the call could not be read"}],
                                       "cache_control": CACHE}]
    assert json.dumps(messages).count("cache_control") == 1


async def test_key_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a client, the SDK client is built from ANTHROPIC_API_KEY and base_url, and talks HTTP to them."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    fake = FakeProvider(anthropic_message(tool_use_block("print(1)", id="toolu_x")))
    with fake.serve() as url:
        model = AnthropicModel("claude-test", base_url=url, max_retries=0)
        reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
        await model.close()
    assert reply.code == (CodeRequest("toolu_x", "print(1)"),)
    assert sent_key(fake.requests[0]) == "env-key" and fake.requests[0].path == "/v1/messages"
    assert model.base_url.startswith(url)


def test_missing_api_key_names_the_variable() -> None:
    with pytest.raises(ModelConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-test")


# -- errors and retries ---------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [
    anthropic_rate_limited(),
    anthropic_error(529, "overloaded_error", "Overloaded", {"retry-after-ms": "1"}),
    anthropic_error(500, "api_error", "Internal server error", {"retry-after-ms": "1"}),
], ids=["429", "529-overloaded", "500"])
async def test_the_sdk_retries_transient_errors(failure: Reply) -> None:
    """A rate limit, an overload or a 5xx is retried by the SDK (honouring retry-after-ms); the reply comes through."""
    fake = FakeProvider(failure, failure, anthropic_message(tool_use_block("print(2)", id="toolu_after")))
    model = model_for(fake, max_retries=2)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert reply.code == (CodeRequest("toolu_after", "print(2)"),)
    assert len(fake.requests) == 3
    assert [r.headers.get("x-stainless-retry-count") for r in fake.requests] == ["0", "1", "2"]
    assert fake.bodies[0] == fake.bodies[2]


async def test_rate_limit_that_persists_is_a_response_error() -> None:
    fake = FakeProvider(*[anthropic_rate_limited()] * 3)
    model = model_for(fake, max_retries=2)
    with pytest.raises(ModelResponseError, match="rate limited even after retrying") as caught:
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert "50 requests per minute" in str(caught.value)
    assert len(fake.requests) == 3


async def test_overload_that_persists_is_a_response_error() -> None:
    fake = FakeProvider(*[anthropic_error(529, "overloaded_error", "Overloaded", {"retry-after-ms": "1"})] * 2)
    model = model_for(fake, max_retries=1)
    with pytest.raises(ModelResponseError, match="HTTP 529 .*Overloaded"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()


async def test_refused_key_is_a_config_error_and_not_retried() -> None:
    fake = FakeProvider(anthropic_error(401, "authentication_error", "invalid x-api-key"))
    model = model_for(fake, max_retries=3)
    with pytest.raises(ModelConfigError, match="API key was refused.*invalid x-api-key"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert len(fake.requests) == 1


async def test_bad_request_carries_the_providers_message() -> None:
    message = "messages.1.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_x"
    fake = FakeProvider(anthropic_error(400, "invalid_request_error", message))
    model = model_for(fake, max_retries=3)
    with pytest.raises(ModelResponseError) as caught:
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert "HTTP 400" in str(caught.value) and message in str(caught.value)
    assert len(fake.requests) == 1


async def test_connection_error_names_the_base_url() -> None:
    fake = FakeProvider(httpx2.ConnectError("[Errno 111] Connection refused"))
    model = model_for(fake, max_retries=0)
    with pytest.raises(ModelUnreachableError, match="could not reach https://api.anthropic.com.*Connection refused"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()


async def test_connection_error_is_retried() -> None:
    fake = FakeProvider(httpx2.ConnectError("[Errno 111] Connection refused"), anthropic_message(text_block("back")))
    model = model_for(fake, max_retries=1)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert reply.text == "back" and len(fake.requests) == 2


async def test_timeout_raised_by_the_transport() -> None:
    fake = FakeProvider(httpx2.ReadTimeout("timed out"))
    model = model_for(fake, max_retries=0)
    with pytest.raises(ModelUnreachableError, match="no answer from https://api.anthropic.com.* in time"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()


async def test_real_server_too_slow_and_real_closed_port() -> None:
    """Over real sockets: a server slower than the timeout, and a port nobody listens on."""
    fake = FakeProvider(dataclasses.replace(anthropic_message(text_block("late")), delay=3.0))
    with fake.serve() as url:
        slow = AnthropicModel("claude-test", api_key="k", base_url=url, timeout=0.3, max_retries=0)
        with pytest.raises(ModelUnreachableError, match="in time"):
            await slow.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
        await slow.close()
    url = f"http://127.0.0.1:{closed_port()}"
    gone = AnthropicModel("claude-test", api_key="k", base_url=url, max_retries=0)
    with pytest.raises(ModelUnreachableError, match=f"could not reach {url}"):
        await gone.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await gone.close()


# -- the whole loop ------------------------------------------------------------------------------


STEP_1 = "w = tools.weather('Paris')\nprint('temperature:', w['temp_c'], w['sky'])"
STEP_2 = "final_answer({'city': w['city'], 'temp_c': w['temp_c']})"


async def test_agent_runs_through_the_sdk(tmp_path: Path) -> None:
    """Task -> tool_use -> cell with a tool call -> tool_result -> final_answer, recorded with usage per step."""
    usage_1 = anthropic_usage(1830, 64, cache_write=1700)
    usage_2 = anthropic_usage(95, 41, cache_read=1700, cache_write=160)
    fake = FakeProvider(
        anthropic_message(text_block("I'll ask the weather tool."), tool_use_block(STEP_1, id="toolu_step1"),
                          usage=usage_1),
        anthropic_message(text_block("21 °C and clear: answering."), tool_use_block(STEP_2, id="toolu_step2"),
                          usage=usage_2),
    )
    notebook = tmp_path / "run.ipynb"
    agent = Agent(model_for(fake), tools=[weather], notebook=notebook, max_steps=5)
    result = await agent.run("How warm is it in Paris?")
    await agent.close()

    assert result.stop_reason is StopReason.FINAL_ANSWER, result.error
    assert result.answer == {"city": "Paris", "temp_c": 21}
    assert len(result.steps) == 2 and result.tool_calls == 1
    assert result.usage == Usage(input_tokens=1830 + 95, output_tokens=64 + 41, cache_read_tokens=1700,
                                 cache_write_tokens=1700 + 160)
    assert result.model == "anthropic:claude-test" and result.notebook == notebook

    # What the SDK sent: the tool in the system prompt; then the observation as the tool_result of step 1.
    first, second = fake.bodies
    assert "weather" in first["system"][0]["text"]
    assert first["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "How warm is it in Paris?", "cache_control": CACHE}]}]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"][1] == {"type": "tool_use", "id": "toolu_step1", "name": "python",
                                                   "input": {"code": STEP_1}}
    [tool_result] = second["messages"][2]["content"]
    assert tool_result["tool_use_id"] == "toolu_step1" and tool_result["is_error"] is False
    assert "temperature: 21 clear" in tool_result["content"][0]["text"]

    # The notebook: the model spec, the task, the messages, and each step's usage and call id.
    document = json.loads(notebook.read_text())
    header = document["metadata"]["kernel_agent"]["session"]
    assert header["model"] == {"spec": "anthropic:claude-test", "provider": "anthropic"}
    assert header["task"] == "How warm is it in Paris?"
    cells = [(c["metadata"]["kernel_agent"], "".join(c["source"])) for c in document["cells"]]
    assert [source for meta, source in cells if meta["kind"] == "message"] == [
        "I'll ask the weather tool.", "21 °C and clear: answering."]
    code = [meta for meta, _ in cells if meta["kind"] == "code"]
    assert [(meta["step"], meta["call_id"]) for meta in code] == [(1, "toolu_step1"), (2, "toolu_step2")]
    assert code[0]["usage"] == {"input_tokens": 1830, "output_tokens": 64, "cache_read_tokens": 0,
                                "cache_write_tokens": 1700}
    assert code[1]["usage"]["cache_read_tokens"] == 1700
    assert "temperature: 21 clear" in code[0]["observation"]["text"]
    assert [call["tool"] for call in code[0]["tool_calls"]] == ["weather"]
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    assert report.summary.tokens["input_tokens"] == 1830 + 95
    assert report.summary.final_answer == {"city": "Paris", "temp_c": 21}


async def test_agent_stops_on_a_persistent_rate_limit(tmp_path: Path) -> None:
    """A provider error mid-run ends the run as model_error, with the work so far and a note in the notebook."""
    fake = FakeProvider(anthropic_message(tool_use_block("x = 6 * 7\nprint(x)", id="toolu_a")),
                        anthropic_rate_limited(), anthropic_rate_limited())
    notebook = tmp_path / "run.ipynb"
    agent = Agent(model_for(fake, max_retries=1), notebook=notebook)
    result = await agent.run("compute")
    await agent.close()
    assert result.stop_reason is StopReason.MODEL_ERROR and not result.ok
    assert result.error is not None and "rate limited" in result.error
    assert len(result.steps) == 1 and result.steps[0].observation == "42"
    assert len(fake.requests) == 3
    assert "The run stopped: anthropic: rate limited" in notebook.read_text()
    assert audit_notebook(notebook).verdict == "intact"


async def test_reply_without_usage_counts_nothing() -> None:
    """A gateway that leaves out ``usage``: the reply still reads, with zero usage (not an AttributeError)."""
    plain = anthropic_message(text_block("done"))
    fake = FakeProvider(Reply(200, {k: v for k, v in plain.body.items() if k != "usage"}, plain.headers))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert reply.text == "done" and reply.usage == Usage()


def test_an_auth_token_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "token-for-a-gateway")
    assert AnthropicModel("claude-x").spec == "anthropic:claude-x"


async def test_a_reply_that_is_not_json_names_the_server_and_what_it_sent() -> None:
    """A proxy's HTML page instead of the API: ModelResponseError naming the URL and showing the body."""
    fake = FakeProvider(Reply(200, "<html><body>502 Bad Gateway</body></html>"))
    model = AnthropicModel("claude-test", client=fake.anthropic_client())
    with pytest.raises(ModelResponseError) as raised:
        await model.complete("system", [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert "answered with something that is not JSON" in str(raised.value)
    assert "502 Bad Gateway" in str(raised.value)
