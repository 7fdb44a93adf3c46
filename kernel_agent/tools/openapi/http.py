"""Making an operation's HTTP request on the host, from a call's arguments, and reading the answer, bounded.

What a call can and cannot change: the arguments (from the kernel) fill in parameter values
only. Path values are percent-encoded whole (``"../admin"`` or ``"a/b?x"`` stay inside their
segment; ``"."`` and ``".."`` are encoded too), and the URL is checked to still be on the base
URL's origin and under its path before anything is sent. Cookie values are encoded so they
cannot add cookies; the credentials are set last. Redirects are never followed (a redirect
to another origin would carry the credentials there), so a 3xx is an error naming where it
pointed. The answer is read in chunks up to ``max_response_bytes`` and the whole call,
connection to last byte, has ``timeout`` seconds; at most ``max_concurrent`` calls of one source
are in flight (a kernel firing hundreds of calls at once must not hold hundreds of answers, each
up to ``max_response_bytes`` and several times that parsed, in host memory), the others wait.

An answer never hands a credential to the kernel: a server that echoes what it received (an
error saying "invalid key 'sk-...'", an echo endpoint, a redirect whose URL holds the key)
would otherwise deliver the host's secrets to whoever made the call. Every credential and fixed
header value of at least :data:`MIN_REDACTED` characters, as sent and percent- or JSON-escaped,
is replaced by ``[redacted]`` in the answer, its error excerpt and a redirect's location, and in
the HTTP client's own log line (httpx2 logs every request's full URL at INFO: a host that logs at
INFO would write a query API key to its log).

Errors say the method and the path *template* (never the URL: a query may hold an API key),
and never chain the HTTP client's exception (its text may hold the URL).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import posixpath
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import httpx2

from kernel_agent.tools.openapi.auth import Credential
from kernel_agent.tools.openapi.operations import OperationPlan, ParameterPlan

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_EXCERPT = 1_000
_PARSE_IN_THREAD = 256 * 1024  # larger answers are parsed off the event loop other sessions share
MIN_REDACTED = 8  # shorter values are no credible secret, and replacing them would mangle answers
REDACTED = b"[redacted]"


class OpenApiCallError(Exception):
    """An API call failed: the server answered an error status, or could not be reached, or answered too much.

    A host exception (not a return value) so the bridge reports it to the kernel as a
    ``ToolError`` the model can read. ``status`` is the HTTP status (None when there was no answer).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Requester:
    """Sends the requests of one document's operations with one HTTP client (made in :meth:`open`)."""

    def __init__(self, base_url: str, *, headers: Mapping[str, str], timeout: float,
                 max_response_bytes: int, max_concurrent: int = 8, secrets: Iterable[str] = ()) -> None:
        self.base = httpx2.URL(base_url)
        self._base_text = base_url.rstrip("/")
        self._headers = dict(headers)
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.max_concurrent = max_concurrent
        self._redacted = _redaction_patterns([*secrets, *self._headers.values()])
        _LOG_FILTER.patterns.update(pattern.decode() for pattern in self._redacted)
        self._client: httpx2.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    def open(self) -> None:
        if self._client is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)  # made here: bound to the loop that uses it
            self._client = httpx2.AsyncClient(follow_redirects=False, timeout=self.timeout,
                                              headers={"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"})

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def fresh(self) -> Requester:
        """A requester like this one, with no client yet (for another session)."""
        other = copy.copy(self)
        other._client = other._slots = None
        return other

    @property
    def opened(self) -> bool:
        return self._client is not None

    async def call(self, plan: OperationPlan, arguments: Mapping[str, Any], held: list[Credential]) -> Any:
        """Make the request of ``plan`` with ``arguments`` (validated against its schema) and the credentials."""
        label = f"{plan.method.upper()} {plan.path}"
        if self._client is None or self._slots is None:
            raise OpenApiCallError(f"{label}: the OpenAPI source is closed")
        try:
            request = self._request(plan, arguments, held)
        except (TypeError, ValueError) as exc:
            raise OpenApiCallError(f"{label}: {exc}") from None
        try:
            async with self._slots, asyncio.timeout(self.timeout):
                status, reason, media, location, raw = await self._send(request)
        except TimeoutError:
            raise OpenApiCallError(f"{label}: no complete answer within {self.timeout:g} s") from None
        except OpenApiCallError as exc:
            raise OpenApiCallError(f"{label}: {exc}", status=exc.status) from None
        except httpx2.HTTPError as exc:
            raise OpenApiCallError(f"{label}: the request to {self._origin} failed ({type(exc).__name__})") from None
        except Exception as exc:  # noqa: BLE001 - the client's other errors (a bad header value...) may hold the URL
            raise OpenApiCallError(f"{label}: the request could not be made ({type(exc).__name__})") from None
        raw = self._redact(raw)
        location, reason = self._redact(location.encode()).decode(), self._redact(reason.encode()).decode()
        if 300 <= status < 400:
            where = f" to {location[:200]!r}" if location else ""
            raise OpenApiCallError(f"{label}: HTTP {status} {reason}: a redirect{where}, not followed "
                                   "(credentials must not go elsewhere)", status=status)
        if not 200 <= status < 300:
            excerpt = raw[:_EXCERPT].decode("utf-8", "replace").strip()
            more = " ..." if len(raw) > _EXCERPT else ""
            raise OpenApiCallError(f"{label}: HTTP {status} {reason}" + (f": {excerpt}{more}" if excerpt else ""),
                                   status=status)
        return await _result(raw, media, label)

    def _redact(self, data: bytes) -> bytes:
        for pattern in self._redacted:
            if pattern in data:
                data = data.replace(pattern, REDACTED)
        return data

    @property
    def _origin(self) -> str:
        return f"{self.base.scheme}://{self.base.netloc.decode('ascii', 'replace')}"

    async def _send(self, request: httpx2.Request) -> tuple[int, str, str, str, bytes]:
        assert self._client is not None
        response = await self._client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise OpenApiCallError(f"the answer is larger than {self.max_response_bytes} bytes "
                                           "(max_response_bytes); nothing of it is returned",
                                           status=response.status_code)
                chunks.append(chunk)
        finally:
            await response.aclose()
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        return (response.status_code, response.reason_phrase, media, response.headers.get("location", ""),
                b"".join(chunks))

    # -- building the request -----------------------------------------------------------------

    def _request(self, plan: OperationPlan, arguments: Mapping[str, Any], held: list[Credential]) -> httpx2.Request:
        path_values: dict[str, str] = {}
        query: list[tuple[str, str | int | float | bool | None]] = []
        headers: dict[str, str] = {}
        cookies: dict[str, str] = {}
        for parameter in plan.parameters:
            if parameter.key not in arguments or arguments[parameter.key] is None:
                continue
            value = arguments[parameter.key]
            if parameter.location == "path":
                path_values[parameter.name] = _path_segment(parameter, value)
            elif parameter.location == "query":
                query.extend(_query_pairs(parameter, value))
            elif parameter.location == "header":
                headers[parameter.name] = _simple(parameter, value)
                if any(c in headers[parameter.name] for c in "\r\n\0"):
                    raise ValueError(f"header parameter {parameter.name!r} holds a line break or NUL")
            else:
                cookies[parameter.name] = _simple(parameter, value)
        path = _PLACEHOLDER.sub(lambda m: path_values.get(m.group(1), m.group(0)), plan.path)
        if "{" in path:  # a path parameter left out (it is required: validation should have said so)
            raise ValueError("a path parameter is missing")
        url = httpx2.URL(self._base_text + path)
        # The decoded path, its dot segments resolved: a document's "/%2e%2e/admin" stays encoded in the
        # URL the client sends, and a server that decodes it climbs out of the base path ("/v1x" is not
        # under "/v1" either).
        base_path = self.base.path.rstrip("/")
        resolved = posixpath.normpath(url.path or "/")
        if (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port) \
                or not (not base_path or resolved == base_path or resolved.startswith(base_path + "/")):
            raise ValueError("the request URL would leave the API's base URL")
        content, content_type, files = _body(plan, arguments)
        # The credentials come last: a parameter of the same name does not replace them.
        for credential in held:
            if credential.location == "header":
                for name in [n for n in headers if n.lower() == credential.name.lower()]:
                    del headers[name]
                headers[credential.name] = credential.value
            elif credential.location == "query":
                query = [(k, v) for k, v in query if k != credential.name] + [(credential.name, credential.value)]
            else:
                cookies[credential.name] = credential.value
        fixed = {k: v for k, v in self._headers.items()
                 if not any(k.lower() == c.name.lower() for c in held if c.location == "header")}
        for name in [n for n in headers if n.lower() in {k.lower() for k in fixed}]:
            del headers[name]
        headers.update(fixed)
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in cookies.items())
        if content_type is not None:
            headers["Content-Type"] = content_type
        assert self._client is not None
        return self._client.build_request(plan.method.upper(), url, params=query or None, headers=headers,
                                          content=content, files=files)


class _RedactingFilter(logging.Filter):
    """Rewrites the HTTP client's request log lines without the secrets of any OpenAPI source."""

    def __init__(self) -> None:
        super().__init__()
        self.patterns: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.patterns and record.args:
            text = record.getMessage()
            for pattern in sorted(self.patterns, key=len, reverse=True):
                text = text.replace(pattern, REDACTED.decode())
            record.msg, record.args = text, None
        return True


_LOG_FILTER = _RedactingFilter()
logging.getLogger("httpx2").addFilter(_LOG_FILTER)


def _redaction_patterns(secrets: Iterable[str]) -> list[bytes]:
    """The byte forms in which an answer could echo the secrets: as sent, percent-encoded, JSON-escaped."""
    forms: set[bytes] = set()
    for secret in secrets:
        if len(secret) >= MIN_REDACTED:
            for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
                         json.dumps(secret)[1:-1]):
                forms.add(form.encode())
    return sorted(forms, key=len, reverse=True)  # longest first: a form holding another is replaced whole


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _simple(parameter: ParameterPlan, value: Any) -> str:
    """A header, cookie or path value in the simple style (lists and objects comma-separated)."""
    if parameter.as_json:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    if isinstance(value, (list, tuple)):
        return ",".join(_scalar(v) for v in value)
    if isinstance(value, dict):
        joiner = "=" if parameter.explode else ","
        return ",".join(f"{_scalar(k)}{joiner}{_scalar(v)}" for k, v in value.items())
    return _scalar(value)


def _path_segment(parameter: ParameterPlan, value: Any) -> str:
    text = _simple(parameter, value)
    if not text:
        raise ValueError(f"path parameter {parameter.name!r} must not be empty")
    encoded = urllib.parse.quote(text, safe="")
    # "." and ".." would be dot segments: a URL normaliser would climb out of the path.
    return encoded.replace(".", "%2E") if set(text) == {"."} else encoded


def _query_pairs(parameter: ParameterPlan, value: Any) -> list[tuple[str, str | int | float | bool | None]]:
    name = parameter.name
    if parameter.as_json:
        return [(name, json.dumps(value, allow_nan=False, separators=(",", ":")))]
    if isinstance(value, (list, tuple)):
        if parameter.explode and parameter.style == "form":
            return [(name, _scalar(v)) for v in value]
        separator = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(parameter.style, ",")
        return [(name, separator.join(_scalar(v) for v in value))]
    if isinstance(value, dict):
        if parameter.style == "deepObject":
            return [(f"{name}[{k}]", _scalar(v)) for k, v in value.items()]
        if parameter.explode:
            return [(str(k), _scalar(v)) for k, v in value.items()]
        return [(name, ",".join(f"{k},{_scalar(v)}" for k, v in value.items()))]
    return [(name, _scalar(value))]


Files = dict[str, tuple[str | None, bytes | str]]


def _body(plan: OperationPlan, arguments: Mapping[str, Any]) -> tuple[bytes | None, str | None, Files | None]:
    """(content, its Content-Type, multipart fields) of the request body."""
    body = plan.body
    if body is None:
        return None, None, None
    if body.key is not None:
        if arguments.get(body.key) is None:
            return None, None, None
        value = arguments[body.key]
    else:
        value = {k: arguments[k] for k in body.keys if k in arguments and arguments[k] is not None}
        if not value and not any(k in arguments for k in body.keys):
            return None, None, None
    if body.kind == "json":
        try:
            return json.dumps(value, allow_nan=False).encode(), body.media_type, None
        except (TypeError, ValueError):
            raise ValueError("the request body is not JSON-serialisable") from None
    if body.kind in ("form", "multipart"):
        if not isinstance(value, dict):
            raise ValueError("a form body must be an object")
        if body.kind == "multipart":  # the client writes the boundary and its Content-Type
            return None, None, {str(k): (str(k) if isinstance(v, bytes) else None,
                                         v if isinstance(v, bytes) else _scalar(v)) for k, v in value.items()}
        encoded = urllib.parse.urlencode([(str(k), _scalar(v)) for k, v in value.items()])
        return encoded.encode(), "application/x-www-form-urlencoded", None
    if isinstance(value, str):
        return value.encode(), body.media_type, None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), body.media_type, None
    raise ValueError(f"the request body ({body.media_type}) must be str or bytes")


async def _result(raw: bytes, media: str, label: str) -> Any:
    """JSON parsed, text as text, other media types as bytes, an empty answer as None."""
    if not raw:
        return None
    if media == "application/json" or media.endswith("+json"):
        try:
            if len(raw) > _PARSE_IN_THREAD:
                return await asyncio.to_thread(_parse_json, raw)
            return _parse_json(raw)
        except (ValueError, RecursionError):
            raise OpenApiCallError(f"{label}: the server answered invalid JSON") from None
    if media.startswith("text/") or media in ("", "application/xml", "application/x-www-form-urlencoded"):
        return raw.decode("utf-8", "replace")
    return raw


def _parse_json(raw: bytes) -> Any:
    def reject(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw, parse_constant=reject)
