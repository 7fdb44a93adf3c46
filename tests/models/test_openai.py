"""OpenAIModel through the real ``openai`` SDK, with only its HTTP transport replaced by a fake Chat Completions API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from kernel_agent.agent import Agent, StopReason
from kernel_agent.verify.audit import audit_notebook
from kernel_agent.errors import ModelConfigError, ModelResponseError, ModelUnreachableError
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
from kernel_agent.models.openai import OpenAIModel

from .fake_providers import (
    OPENAI_MODEL,
    FakeProvider,
    Reply,
    openai_completion,
    openai_error,
    openai_rate_limited,
    openai_tool_call,
    openai_usage,
    weather,
)

SYSTEM = "You are a test agent."
# What vLLM answers when it was started without tool support.
VLLM_NO_TOOLS = ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')


@pytest.fixture(autouse=True)
def no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The developer's own OPENAI_* settings must not leak into these tests."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    yield


def model_for(fake: FakeProvider, *, max_retries: int = 2, max_tokens: int | None = None) -> OpenAIModel:
    return OpenAIModel("gpt-test", client=fake.openai_client(max_retries=max_retries), max_tokens=max_tokens)


def vllm_bad_request(message: str) -> Reply:
    """A 400 in vLLM's envelope (no "error" wrapper), as a local server sends it."""
    return Reply(400, {"object": "error", "message": message, "type": "BadRequestError", "param": None,
                       "code": 400})


# -- replies ----------------------------------------------------------------------------------


async def test_tool_calls_become_code_requests() -> None:
    """Content with two tool calls: the text, both pieces of code with their ids; cached tokens split out."""
    fake = FakeProvider(openai_completion(
        "Loading, then counting.",
        openai_tool_call("import csv\nrows = list(csv.reader(open('data.csv')))", id="call_A"),
        openai_tool_call("len(rows)", id="call_B"),
        usage=openai_usage(2400, 77, cached=2048)))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("count the rows")], CODE_TOOL)
    await model.close()
    assert reply == ModelReply(
        text="Loading, then counting.",
        code=(CodeRequest("call_A", "import csv\nrows = list(csv.reader(open('data.csv')))"),
              CodeRequest("call_B", "len(rows)")),
        usage=Usage(input_tokens=2400 - 2048, output_tokens=77, cache_read_tokens=2048),
        stop_reason="tool_calls", model=OPENAI_MODEL)
    assert reply.usage.total_tokens == 2400 + 77
    assert model.spec == "openai:gpt-test" and model.provider == "openai"


async def test_plain_text_reply_has_no_code() -> None:
    fake = FakeProvider(openai_completion("The answer is 42.", usage=openai_usage(60, 8)))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("6*7?")], CODE_TOOL)
    await model.close()
    assert (reply.text, reply.code, reply.stop_reason, reply.malformed) == ("The answer is 42.", (), "stop", ())
    assert reply.usage == Usage(input_tokens=60, output_tokens=8)


async def test_reply_without_choices_or_usage() -> None:
    """Some compatible servers send no usage; an empty choices list is a reply with nothing in it."""
    plain = openai_completion("ok")
    no_usage = Reply(200, {k: v for k, v in plain.body.items() if k != "usage"})
    no_choices = Reply(200, {**plain.body, "choices": []})
    fake = FakeProvider(no_usage, no_choices)
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    assert reply.text == "ok" and reply.usage == Usage()
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert (reply.text, reply.code, reply.stop_reason) == ("", (), "no_choices")


async def test_malformed_tool_calls() -> None:
    """Another tool, truncated JSON, no `code`, non-string code: malformed, kept raw. Bare code is taken as code."""
    fake = FakeProvider(openai_completion(
        None,
        openai_tool_call(id="call_shell", name="shell", arguments='{"cmd": "ls"}'),
        openai_tool_call(id="call_cut", arguments='{"code": "print(1'),
        openai_tool_call(id="call_nocode", arguments='{"source": "print(1)"}'),
        openai_tool_call(id="call_int", arguments='{"code": 7}'),
        openai_tool_call(id="call_bare", arguments="print('bare code')"),
        openai_tool_call("print('json')", id="call_json")))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert reply.code == (CodeRequest("call_bare", "print('bare code')"), CodeRequest("call_json", "print('json')"))
    assert reply.malformed == (("call_shell", '{"cmd": "ls"}'), ("call_cut", '{"code": "print(1'),
                               ("call_nocode", '{"source": "print(1)"}'), ("call_int", '{"code": 7}'))
    assert reply.text == "" and reply.stop_reason == "tool_calls"


# -- the request the SDK sends ------------------------------------------------------------------


async def test_request_carries_system_tool_and_conversation() -> None:
    fake = FakeProvider(openai_completion("done"))
    model = model_for(fake, max_tokens=2000)
    first = ModelReply(text="Two cells.", code=(CodeRequest("call_1", "x = 1"), CodeRequest("call_2", "1/0")))
    fenced = ModelReply(text="```python\nprint(x)\n```", code=(CodeRequest("fenced-3", "print(x)", via="fenced"),))
    broken = ModelReply(text="", malformed=(("call_bad", '{"code": "print(1'),))
    conversation: list[Turn] = [
        UserTurn("the task"),
        AssistantTurn(first),
        ObservationTurn((Observation("call_1", ""), Observation("call_2", "ZeroDivisionError", is_error=True))),
        UserTurn("final_answer was rejected"),
        AssistantTurn(fenced),
        ObservationTurn((Observation("fenced-3", "1\n", via="fenced"),)),
        AssistantTurn(broken),
        ObservationTurn((Observation("call_bad", "Error: the call could not be read", is_error=True),)),
    ]
    await model.complete(SYSTEM, conversation, CODE_TOOL)
    await model.close()
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer test-key"
    body = request.body
    assert body["model"] == "gpt-test" and body["max_completion_tokens"] == 2000
    assert body["tools"] == [{"type": "function", "function": {
        "name": "python", "description": CODE_TOOL.description, "parameters": CODE_TOOL.input_schema}}]
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "the task"},
        {"role": "assistant", "content": "Two cells.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "python", "arguments": '{"code": "x = 1"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "python", "arguments": '{"code": "1/0"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "(no output)"},
        {"role": "tool", "tool_call_id": "call_2", "content": "ZeroDivisionError"},
        {"role": "user", "content": "final_answer was rejected"},
        {"role": "assistant", "content": "```python\nprint(x)\n```"},
        {"role": "user", "content": "1\n"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_bad", "type": "function", "function": {"name": "python", "arguments": '{"code": "print(1'}}]},
        {"role": "tool", "tool_call_id": "call_bad", "content": "Error: the call could not be read"},
    ]


async def test_no_max_tokens_unless_asked() -> None:
    fake = FakeProvider(openai_completion("done"))
    model = model_for(fake)
    await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert "max_completion_tokens" not in fake.bodies[0] and "max_tokens" not in fake.bodies[0]


async def test_server_without_function_calling_switches_to_fenced_code() -> None:
    """A 400 about tools: asked again without tools, with the note in the system prompt, and so on from then on."""
    fake = FakeProvider(vllm_bad_request(VLLM_NO_TOOLS),
                        openai_completion("Let me look.\n```python\nprint('hi')\n```"),
                        openai_completion("It printed hi."))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    assert model.function_calling is False
    assert reply.text == "Let me look.\n```python\nprint('hi')\n```" and reply.code == ()  # the loop reads fences
    rejected, retried = fake.bodies
    assert "tools" in rejected and "tools" not in retried
    assert rejected["messages"][0]["content"] == SYSTEM
    assert retried["messages"][0]["content"].startswith(SYSTEM + "\n\n")
    assert "no function calling" in retried["messages"][0]["content"]
    await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert len(fake.requests) == 3 and "tools" not in fake.bodies[2]


async def test_other_bad_requests_do_not_switch_modes() -> None:
    message = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."
    fake = FakeProvider(openai_error(400, message, "invalid_request_error", "context_length_exceeded"))
    model = model_for(fake)
    with pytest.raises(ModelResponseError) as caught:
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert "HTTP 400" in str(caught.value) and message in str(caught.value)
    assert model.function_calling is True and len(fake.requests) == 1


async def test_local_server_needs_no_key() -> None:
    """``base_url`` without a key: a placeholder key is sent, the spec names the server, HTTP goes there."""
    fake = FakeProvider(openai_completion(None, openai_tool_call("print(1)", id="call_local")))
    with fake.serve() as url:
        model = OpenAIModel("qwen-local", base_url=f"{url}/v1", max_retries=0)
        reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
        await model.close()
    assert model.spec == f"openai:qwen-local@{url}/v1"
    assert reply.code == (CodeRequest("call_local", "print(1)"),)
    assert fake.requests[0].path == "/v1/chat/completions"
    assert fake.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_key_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeProvider(openai_completion("hello"))
    with fake.serve() as url:
        monkeypatch.setenv("OPENAI_API_KEY", "env-key")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        model = OpenAIModel("gpt-test", max_retries=0)
        assert (await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)).text == "hello"
        await model.close()
    assert fake.requests[0].headers["authorization"] == "Bearer env-key"
    assert model.spec == f"openai:gpt-test@{url}/v1"


def test_missing_api_key_names_the_variable() -> None:
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-test")


# -- errors and retries ---------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [
    openai_rate_limited(),
    openai_error(429, "Rate limit reached", "requests", "rate_limit_exceeded", {"retry-after": "0.001"}),
    openai_error(500, "The server had an error while processing your request.", "server_error", None,
                 {"retry-after-ms": "1"}),
    openai_error(503, "The engine is currently overloaded, please try again later.", "server_error", None,
                 {"retry-after-ms": "1"}),
], ids=["429-retry-after-ms", "429-retry-after", "500", "503-overloaded"])
async def test_the_sdk_retries_transient_errors(failure: Reply) -> None:
    fake = FakeProvider(failure, openai_completion(None, openai_tool_call("print(2)", id="call_after")))
    model = model_for(fake, max_retries=2)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert reply.code == (CodeRequest("call_after", "print(2)"),)
    assert [r.headers.get("x-stainless-retry-count") for r in fake.requests] == ["0", "1"]


async def test_rate_limit_that_persists_is_a_response_error() -> None:
    fake = FakeProvider(*[openai_rate_limited()] * 3)
    model = model_for(fake, max_retries=2)
    with pytest.raises(ModelResponseError, match="rate limited even after retrying.*Limit 3, Used 3"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert len(fake.requests) == 3


async def test_refused_key_is_a_config_error_and_not_retried() -> None:
    message = "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com."
    fake = FakeProvider(openai_error(401, message, "invalid_request_error", "invalid_api_key"))
    model = model_for(fake, max_retries=3)
    with pytest.raises(ModelConfigError, match="API key was refused.*Incorrect API key provided"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert len(fake.requests) == 1


async def test_unknown_model_is_a_response_error() -> None:
    message = "The model `gpt-test` does not exist or you do not have access to it."
    fake = FakeProvider(openai_error(404, message, "invalid_request_error", "model_not_found"))
    model = model_for(fake)
    with pytest.raises(ModelResponseError, match="HTTP 404 .*does not exist"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()


async def test_connection_error_and_timeout_name_the_base_url() -> None:
    fake = FakeProvider(httpx2.ConnectError("[Errno 111] Connection refused"), httpx2.ReadTimeout("timed out"))
    model = model_for(fake, max_retries=0)
    with pytest.raises(ModelUnreachableError, match="could not reach https://api.openai.com/v1/?: .*refused"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    with pytest.raises(ModelUnreachableError, match="no answer from https://api.openai.com/v1/? in time"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()


# -- the whole loop ------------------------------------------------------------------------------


async def test_agent_runs_through_the_sdk(tmp_path: Path) -> None:
    """Two parallel tool calls in one reply run as two cells; both observations go back as tool messages."""
    fake = FakeProvider(
        openai_completion(None, openai_tool_call("w = tools.weather('Oslo')", id="call_fetch"),
                          openai_tool_call("print('temperature:', w['temp_c'])", id="call_show"),
                          usage=openai_usage(1900, 70)),
        openai_completion("Done.", openai_tool_call("final_answer(w['temp_c'])", id="call_answer"),
                          usage=openai_usage(2010, 25, cached=1792)),
    )
    notebook = tmp_path / "run.ipynb"
    agent = Agent(model_for(fake), tools=[weather], notebook=notebook, max_steps=5)
    result = await agent.run("How warm is it in Oslo?")
    await agent.close()

    assert result.stop_reason is StopReason.FINAL_ANSWER, result.error
    assert result.answer == 21
    assert len(result.steps) == 2 and [len(s.executions) for s in result.steps] == [2, 1]
    assert result.usage == Usage(input_tokens=1900 + 2010 - 1792, output_tokens=95, cache_read_tokens=1792)
    assert result.model == "openai:gpt-test"

    second = fake.bodies[1]["messages"]
    assert "weather" in second[0]["content"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool", "tool"]
    assert [call["id"] for call in second[2]["tool_calls"]] == ["call_fetch", "call_show"]
    assert second[3] == {"role": "tool", "tool_call_id": "call_fetch", "content": "(no output)"}
    assert second[4]["tool_call_id"] == "call_show" and "temperature: 21" in second[4]["content"]

    document = json.loads(notebook.read_text())
    assert document["metadata"]["kernel_agent"]["session"]["model"] == {"spec": "openai:gpt-test",
                                                                        "provider": "openai"}
    code = [c["metadata"]["kernel_agent"] for c in document["cells"] if c["metadata"]["kernel_agent"]["kind"] == "code"]
    assert [(m["step"], m["call_id"]) for m in code] == [(1, "call_fetch"), (1, "call_show"), (2, "call_answer")]
    # A step's usage is recorded once, on its first cell.
    assert [m.get("usage", {}).get("output_tokens") for m in code] == [70, None, 25]
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    assert report.summary.tokens["cache_read_tokens"] == 1792


async def test_agent_on_a_server_without_function_calling(tmp_path: Path) -> None:
    """A local server that rejects tools: the model's fenced code runs, its output goes back as user text."""
    fake = FakeProvider(
        vllm_bad_request(VLLM_NO_TOOLS),
        openai_completion("Computing.\n```python\ntotal = sum(range(10))\nprint('total', total)\n```"),
        openai_completion("```python\nfinal_answer(total)\n```"),
    )
    notebook = tmp_path / "run.ipynb"
    agent = Agent(model_for(fake), notebook=notebook, max_steps=5)
    result = await agent.run("add 0..9")
    await agent.close()
    assert result.stop_reason is StopReason.FINAL_ANSWER, result.error
    assert result.answer == 45
    last = fake.bodies[2]
    assert "tools" not in last and "no function calling" in last["messages"][0]["content"]
    # The prompt must not tell the model to use a tool the server does not have.
    assert "`python` tool" not in last["messages"][0]["content"] and "fenced ```python block" in last["messages"][0]["content"]
    assert last["messages"][2:] == [
        {"role": "assistant", "content": "Computing.\n```python\ntotal = sum(range(10))\nprint('total', total)\n```"},
        {"role": "user", "content": "total 45"}]
    document = json.loads(notebook.read_text())
    code = [c["metadata"]["kernel_agent"] for c in document["cells"] if c["metadata"]["kernel_agent"]["kind"] == "code"]
    assert [(m["call_id"], m["code_via"]) for m in code] == [("fenced-1", "fenced"), ("fenced-2", "fenced")]
    assert audit_notebook(notebook).verdict == "intact"


async def test_null_token_counts_read_as_zero() -> None:
    """Some compatible servers send ``"completion_tokens": null``."""
    plain = openai_completion("ok")
    body = {**plain.body, "usage": {"prompt_tokens": 12, "completion_tokens": None, "total_tokens": 12}}
    fake = FakeProvider(Reply(200, body))
    model = model_for(fake)
    reply = await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert reply.usage == Usage(input_tokens=12)


async def test_a_400_about_a_tool_message_does_not_turn_function_calling_off() -> None:
    """The word "tool" in a 400 is not a refusal of tools; after tools worked, no 400 switches modes."""
    message = "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
    fake = FakeProvider(openai_error(400, message, "invalid_request_error", None), openai_completion("fine"),
                        vllm_bad_request(VLLM_NO_TOOLS))
    model = model_for(fake)
    with pytest.raises(ModelResponseError, match="role 'tool'"):
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    assert model.function_calling is True and len(fake.requests) == 1
    await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    with pytest.raises(ModelResponseError):  # tools worked before: this is not "no tool support"
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    assert model.function_calling is True and len(fake.requests) == 3


async def test_a_reply_that_is_not_json_names_the_server_and_what_it_sent() -> None:
    """A proxy's HTML page instead of the API: ModelResponseError naming the URL and showing the body."""
    fake = FakeProvider(Reply(200, "<html><body>502 Bad Gateway</body></html>"))
    model = model_for(fake)
    with pytest.raises(ModelResponseError) as raised:
        await model.complete(SYSTEM, [UserTurn("go")], CODE_TOOL)
    await model.close()
    message = str(raised.value)
    assert message.startswith(f"openai: the server at {model.base_url} answered with something that is not JSON")
    assert "'<html><body>502 Bad Gateway</body></html>'" in message
