"""HTTP to a Jupyter server's REST API: bounded in time and size, every failure named, the token never repeated.

The server is reached over the network and may be anyone's, so what it
answers is read with the care given to any outside input: bodies are read
up to a cap (and asked for uncompressed, so the cap counts real bytes), JSON
is parsed strictly, an error is shown as a short excerpt with markup
removed, and the token is redacted from every text that leaves this module
(Jupyter Server's own HTML error pages embed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx2

from kernel_agent.protocol import strict_json
from kernel_agent.runtime.remote.errors import (
    ServerAuthError,
    ServerHTTPError,
    ServerUnreachableError,
    ServerURLError,
)

#: Largest REST response read (a server with ten thousand kernels lists them in about 2 MB).
MAX_RESPONSE_BYTES = 8 * 1024**2
#: Largest error body read, and how much of it an error message shows.
MAX_ERROR_BODY_BYTES = 64 * 1024
EXCERPT_CHARS = 300
#: What a kernel id may look like (Jupyter's are UUIDs); anything else never reaches a URL path.
KERNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MARKUP = re.compile(r"(?is)<(script|style)\b.*?</\1\s*>|<[^>]*>")


def parse_url(url: str) -> tuple[str, str | None]:
    """The server's base URL (``scheme://host[:port]/path/``, nothing else) and a token found in its query.

    A URL copied from Jupyter's start-up banner (``http://host:8888/?token=...``)
    works; the token is taken out of it and never shown. Credentials before
    the host are refused rather than sent somewhere by accident.
    """
    if not isinstance(url, str):
        raise ServerURLError(f"the server URL must be a string, not {type(url).__name__}")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ServerURLError("the server URL is malformed (a bad port or host)") from None
    if parts.scheme not in ("http", "https"):
        shown = f"{parts.scheme}://..." if parts.scheme else "a URL without http:// or https://"
        raise ServerURLError(f"the server URL must be http:// or https://, not {shown}")
    if not parts.hostname:
        raise ServerURLError("the server URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ServerURLError("the server URL holds credentials before its host; give the token as "
                             "JupyterServer(url, token=...) instead")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    tokens = urllib.parse.parse_qs(parts.query).get("token")
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/", "", ""))
    return base, tokens[0] if tokens else None


def check_kernel_id(kernel_id: str) -> str:
    """``kernel_id`` if it looks like one (it goes into URL paths); a ValueError otherwise."""
    if not isinstance(kernel_id, str) or not KERNEL_ID.fullmatch(kernel_id):
        raise ValueError("not a kernel id: Jupyter kernel ids are letters, digits, '-', '_' and '.'")
    return kernel_id


class Redactor:
    """Removes the token (as given and URL-encoded) from a text before it goes into a message."""

    def __init__(self, token: str | None) -> None:
        self._secrets = sorted({token, urllib.parse.quote(token, safe="")}, key=len, reverse=True) if token else []

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[token]")
        return text


def excerpt(body: bytes, redact: Callable[[str], str]) -> str:
    """A short, readable, redacted excerpt of an error body (Jupyter's JSON errors, or a page with markup)."""
    text = body.decode("utf-8", "replace")
    with contextlib.suppress(strict_json.StrictJSONError):
        value = strict_json.loads(text)
        if isinstance(value, dict):
            said = [str(value[key]) for key in ("reason", "message") if isinstance(value.get(key), str | int)]
            trace = value.get("traceback")
            if isinstance(trace, str) and trace.strip():
                said.append(trace.strip().splitlines()[-1])  # the exception line says the most
            text = ": ".join(dict.fromkeys(part for part in said if part.strip())) or text
    text = " ".join(_MARKUP.sub(" ", text).split())
    text = redact(text)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


class Rest:
    """Requests to one server's REST API (lazily opens its HTTP client; ``aclose`` closes it)."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float, verify: bool | str) -> None:
        self.base_url = base_url  # ends with "/": paths are joined to it
        #: The server as messages name it (no trailing slash, never a credential).
        self.url = base_url.rstrip("/")
        self.timeout = timeout
        self.has_token = bool(token)
        self.redact = Redactor(token)
        # Uncompressed, so that the size cap counts about the bytes that will be held.
        self._headers = {"Accept-Encoding": "identity"}
        if token:
            self._headers["Authorization"] = f"token {token}"
        self._verify = verify
        self._client: httpx2.AsyncClient | None = None

    @property
    def auth_headers(self) -> dict[str, str]:
        """The headers that authenticate (for the websocket handshake)."""
        return {key: value for key, value in self._headers.items() if key == "Authorization"}

    def client(self) -> httpx2.AsyncClient:
        # No kept-alive connections: a JupyterServer is often made inline and never closed (Session(server=
        # JupyterServer(...))), and REST calls are few (start, interrupt, restart, shutdown, a liveness check
        # every few seconds), so a connection per request costs little and leaves no socket behind. It also
        # lets one JupyterServer serve several event loops (SyncSession runs its own).
        if self._client is None:
            self._client = httpx2.AsyncClient(headers=self._headers, timeout=self.timeout, verify=self._verify,
                                              follow_redirects=False, trust_env=True,
                                              limits=httpx2.Limits(max_keepalive_connections=0))
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
        """Send a request to ``base_url + path``; the parsed JSON answer (None for an empty body).

        Raises :class:`ServerUnreachableError`, :class:`ServerAuthError` or
        :class:`ServerHTTPError` (a 404 included, for the caller to name).
        """
        limit = self.timeout if timeout is None else timeout
        what = f"{method} {path}"
        try:
            async with asyncio.timeout(limit):
                status, data = await self._send(method, path, body, limit)
        except TimeoutError:
            raise ServerUnreachableError(f"the Jupyter server at {self.url} did not answer {what} within "
                                         f"{limit:g} s") from None
        except httpx2.HTTPError as exc:
            raise ServerUnreachableError(f"cannot reach the Jupyter server at {self.url} ({what}): "
                                         f"{self.redact(str(exc) or type(exc).__name__)}") from None
        if status >= 300:
            raise await self.status_error(status, data, what)
        if not data.strip():
            return None
        try:
            return strict_json.loads(data, max_bytes=MAX_RESPONSE_BYTES)
        except strict_json.StrictJSONError:
            raise ServerHTTPError(f"{self.url} answered {what} with something that is not JSON "
                                  f"({excerpt(data, self.redact)!r}): is it a Jupyter server?", status) from None

    async def _send(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> tuple[int, bytes]:
        request = self.client().build_request(method, self.base_url + path, json=body, timeout=timeout)
        response = await self.client().send(request, stream=True)
        try:
            cap = MAX_RESPONSE_BYTES if response.status_code < 300 else MAX_ERROR_BODY_BYTES
            chunks: list[bytes] = []
            held = 0
            async for chunk in response.aiter_bytes():
                held += len(chunk)
                if held > cap:
                    if response.status_code >= 300:
                        break  # an excerpt is all an error body is read for
                    raise ServerHTTPError(f"{self.url} answered {method} {path} with more than "
                                          f"{cap // 1024**2} MiB; refused", response.status_code)
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)
        finally:
            await response.aclose()

    async def status_error(self, status: int, data: bytes, what: str) -> Exception:
        """The error an HTTP status means (a 403 is told apart: a refused token, or a refused operation)."""
        if status == 401 or (status == 403 and not await self._token_accepted()):
            if not self.has_token:
                return ServerAuthError(f"the Jupyter server at {self.url} requires a token (HTTP {status} "
                                       f"for {what}): pass JupyterServer(url, token=...)")
            return ServerAuthError(f"the Jupyter server at {self.url} refused the token (HTTP {status} for "
                                   f"{what}): check the token given to JupyterServer")
        return ServerHTTPError(f"the Jupyter server at {self.url} answered {what} with HTTP {status}: "
                               f"{excerpt(data, self.redact) or '(no body)'}", status)

    async def _token_accepted(self) -> bool:
        """Whether an authenticated request every server allows succeeds (Kernel Gateway forbids some to all)."""
        try:
            async with asyncio.timeout(self.timeout):
                status, _ = await self._send("GET", "api/kernelspecs", None, self.timeout)
        except (TimeoutError, httpx2.HTTPError, ServerHTTPError):
            return True  # unknown: say what the server said rather than blame the token
        return status not in (401, 403)
