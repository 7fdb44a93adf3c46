"""Fake Anthropic and OpenAI servers: the real SDK clients talk to them, only the HTTP transport is replaced.

A :class:`FakeProvider` plays a script of replies, one per HTTP request, and
keeps every request it received. It answers through ``httpx2.MockTransport``
(in-process, for the adapters and the loop) or as a real HTTP server in a
thread (for ``kernel-agent run`` in a subprocess). The bodies copy the shape
of the real APIs: Messages API and Chat Completions responses with their
usage and cache fields, and each provider's error envelope and rate-limit
headers, so the SDKs parse them exactly as they parse the real ones.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx2
import openai

from kernel_agent.tools.tool import tool

ANTHROPIC_MODEL = "claude-test-20260101"
OPENAI_MODEL = "gpt-test-2026-01-01"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, JSON body (or raw text, sent as it is), headers, and how long to wait before
    sending it (real server only)."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request the fake got: its path, headers (lower-case names) and JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


# A script entry: a reply, or an exception for the transport to raise (a connection error, a timeout).
Entry = Reply | Exception


class FakeProvider:
    """Answers requests from ``script`` in order; a request past its end gets a 400 that the SDKs do not retry."""

    def __init__(self, *script: Entry) -> None:
        self.script = list(script)
        self.requests: list[Received] = []
        self._lock = threading.Lock()

    def answer(self, received: Received) -> Reply | Exception:
        with self._lock:
            self.requests.append(received)
            index = len(self.requests) - 1
        if index >= len(self.script):
            return Reply(400, {"type": "error", "error": {
                "type": "invalid_request_error", "message": f"fake provider: no reply scripted for request {index + 1}"}},
                {"x-should-retry": "false"})
        return self.script[index]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [request.body for request in self.requests]

    # -- in-process ---------------------------------------------------------------------

    def transport(self) -> httpx2.MockTransport:
        def handle(request: httpx2.Request) -> httpx2.Response:
            received = Received(request.method, request.url.path, {k.lower(): v for k, v in request.headers.items()},
                                json.loads(request.content) if request.content else {})
            reply = self.answer(received)
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply.body, str):
                return httpx2.Response(reply.status, content=reply.body.encode(),
                                       headers={"content-type": "application/json", **reply.headers})
            return httpx2.Response(reply.status, json=reply.body, headers=reply.headers)

        return httpx2.MockTransport(handle)

    def anthropic_client(self, *, max_retries: int = 2, api_key: str = "test-key") -> anthropic.AsyncAnthropic:
        """A real AsyncAnthropic whose HTTP goes to this fake."""
        return anthropic.AsyncAnthropic(api_key=api_key, max_retries=max_retries,
                                        http_client=httpx2.AsyncClient(transport=self.transport()))

    def openai_client(self, *, max_retries: int = 2, api_key: str = "test-key",
                      base_url: str | None = None) -> openai.AsyncOpenAI:
        """A real AsyncOpenAI whose HTTP goes to this fake."""
        return openai.AsyncOpenAI(api_key=api_key, max_retries=max_retries, base_url=base_url,
                                  http_client=httpx2.AsyncClient(transport=self.transport()))

    # -- as a real server -----------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the script over HTTP on 127.0.0.1 in a thread; yields the base URL (``http://127.0.0.1:PORT``)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                received = Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                    json.loads(raw) if raw else {})
                reply = fake.answer(received)
                if isinstance(reply, Exception):  # over real sockets, a failure is a non-retried 500
                    reply = Reply(500, {"error": {"message": f"fake provider: {reply!r}", "type": "server_error"}},
                                  {"x-should-retry": "false"})
                time.sleep(reply.delay)
                payload = reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that timed out and hung up is expected here, not a failure of the fake.
                return None

        server = Server(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def sent_key(request: Received) -> str | None:
    """The API key a request carried (as ``x-api-key``, or as a bearer token)."""
    if "x-api-key" in request.headers:
        return request.headers["x-api-key"]
    authorization = request.headers.get("authorization", "")
    return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- Anthropic Messages API -----------------------------------------------------------------


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_use_block(code: str | None = None, *, id: str | None = None, name: str = "python",  # noqa: A002
                   input: dict[str, Any] | None = None) -> dict[str, Any]:  # noqa: A002
    """A tool_use content block (by default: the python tool with ``code``)."""
    return {"type": "tool_use", "id": id or f"toolu_01{next(_ids):022d}", "name": name,
            "input": input if input is not None else {"code": code}}


def anthropic_usage(input_tokens: int = 1024, output_tokens: int = 96, *, cache_read: int = 0,
                    cache_write: int = 0) -> dict[str, Any]:
    """A Messages API usage object, with the cache fields and breakdowns the API sends."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
        "server_tool_use": None,
    }


def anthropic_message(*content: dict[str, Any], stop_reason: str | None = None, model: str = ANTHROPIC_MODEL,
                      usage: dict[str, Any] | None = None) -> Reply:
    """A 200 Messages API response; ``stop_reason`` defaults to tool_use when there is a tool_use block."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(block["type"] == "tool_use" for block in content) else "end_turn"
    return Reply(200, {
        "id": f"msg_01{next(_ids):022d}", "type": "message", "role": "assistant", "model": model,
        "content": list(content), "stop_reason": stop_reason, "stop_sequence": None,
        "usage": usage or anthropic_usage(),
    }, {"request-id": f"req_01{next(_ids):022d}", "anthropic-organization-id": "00000000-0000-0000-0000-000000000000"})


def anthropic_error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    """An error in the Messages API's envelope (``{"type": "error", "error": {...}}``)."""
    return Reply(status, {"type": "error", "error": {"type": error_type, "message": message},
                          "request_id": f"req_01{next(_ids):022d}"},
                 {"request-id": f"req_01{next(_ids):022d}", **(headers or {})})


def anthropic_rate_limited(retry_after_ms: str = "1") -> Reply:
    """A 429 as Anthropic sends it: the rate-limit headers and retry-after (here in milliseconds, to stay fast)."""
    return anthropic_error(429, "rate_limit_error",
                           "This request would exceed the rate limit for your organization of 50 requests per minute.",
                           {"retry-after": "0", "retry-after-ms": retry_after_ms,
                            "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
                            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:01Z"})


# -- OpenAI Chat Completions ----------------------------------------------------------------


def openai_tool_call(code: str | None = None, *, id: str | None = None, name: str = "python",  # noqa: A002
                     arguments: str | None = None) -> dict[str, Any]:
    """A tool call of an assistant message (by default: the python tool with ``code`` as JSON arguments)."""
    return {"id": id or f"call_{next(_ids):024d}", "type": "function",
            "function": {"name": name, "arguments": arguments if arguments is not None else json.dumps({"code": code})}}


def openai_usage(prompt_tokens: int = 1024, completion_tokens: int = 96, *, cached: int = 0) -> dict[str, Any]:
    """A Chat Completions usage object with its token details."""
    return {
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def openai_completion(content: str | None = None, *tool_calls: dict[str, Any], finish_reason: str | None = None,
                      model: str = OPENAI_MODEL, usage: dict[str, Any] | None = None) -> Reply:
    """A 200 chat.completion with one choice; ``finish_reason`` defaults to tool_calls when there are some."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return Reply(200, {
        "id": f"chatcmpl-{next(_ids):029d}", "object": "chat.completion", "created": 1767225600, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop")}],
        "usage": usage or openai_usage(), "service_tier": "default", "system_fingerprint": "fp_0123456789",
    }, {"x-request-id": f"req_{next(_ids):032d}", "openai-processing-ms": "412"})


def openai_error(status: int, message: str, error_type: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> Reply:
    """An error in OpenAI's envelope (``{"error": {"message", "type", "param", "code"}}``)."""
    return Reply(status, {"error": {"message": message, "type": error_type, "param": None, "code": code}},
                 {"x-request-id": f"req_{next(_ids):032d}", **(headers or {})})


def openai_rate_limited(retry_after_ms: str = "1") -> Reply:
    """A 429 as OpenAI sends it, with its x-ratelimit headers and retry-after-ms."""
    return openai_error(429, "Rate limit reached for gpt-test in organization org-test on requests per min (RPM): "
                             "Limit 3, Used 3, Requested 1. Please try again in 20s.", "requests",
                        "rate_limit_exceeded",
                        {"retry-after-ms": retry_after_ms, "x-ratelimit-limit-requests": "3",
                         "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"})


# -- a tool for the scripted conversations ----------------------------------------------------


@tool
def weather(city: str) -> dict[str, Any]:
    """The current weather of a city."""
    return {"city": city, "temp_c": 21, "sky": "clear"}
