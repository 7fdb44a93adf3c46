"""A Jupyter Server, Kernel Gateway or Enterprise Gateway as a place where kernels run: :class:`JupyterServer`.

All three speak the same REST API (``/api/kernels``, ``/api/kernelspecs``)
and the same channels websocket, so one client serves them. Kernels are
started with the server's kernelspec (``kernel-agent`` by default: the
sandbox is applied where the kernel runs), and tools still run on this host:
a tool call travels as a comm message over the websocket, and no secret of
a tool goes to the server's machine.

The token is sent as an ``Authorization: token ...`` header (never in a URL)
and appears in no error message, repr, log line or recorded field.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from types import TracebackType
from typing import Any

from kernel_agent.runtime.remote.errors import (
    KernelNotFoundError,
    KernelSpecNotFoundError,
    ServerHTTPError,
)
from kernel_agent.runtime.remote.kernel import RemoteKernel, ServerKernel
from kernel_agent.runtime.remote.rest import Rest, check_kernel_id, parse_url

#: The server-side kernelspec sessions use unless told otherwise (``kernel-agent kernelspec install``).
DEFAULT_KERNEL_NAME = "kernel-agent"
# Strings the server reports about a kernel are cut to this length (they end up in logs and listings).
_MAX_FIELD_CHARS = 200


class JupyterServer:
    """A client of one Jupyter server's kernels API, with token auth.

    ``url`` is the server's base URL (``http://host:8888``, or with the base
    path it is served under); a URL copied with ``?token=...`` gives its
    token. ``request_timeout`` bounds each REST request; ``check_interval``
    is how often a connected kernel's existence is checked in the
    background (None: never; the websocket still tells most deaths).
    ``verify`` is httpx's TLS verification (False, or a CA bundle path).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        kernel_name: str = DEFAULT_KERNEL_NAME,
        request_timeout: float = 30.0,
        check_interval: float | None = 5.0,
        verify: bool | str = True,
    ) -> None:
        base_url, url_token = parse_url(url)
        self.kernel_name = kernel_name
        self.request_timeout = request_timeout
        self.check_interval = check_interval
        #: The REST client (used by this package's kernels and channels).
        self.rest = Rest(base_url, token or url_token, timeout=request_timeout, verify=verify)

    @property
    def url(self) -> str:
        """The server's base URL, with no credentials or query."""
        return self.rest.url

    def __repr__(self) -> str:
        return f"JupyterServer({self.url!r}, kernel_name={self.kernel_name!r})"

    async def __aenter__(self) -> JupyterServer:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (kernels on the server keep running; shut them down first if they should not)."""
        await self.rest.aclose()

    # -- kernels -----------------------------------------------------------------

    async def start_kernel(self, *, kernel_name: str | None = None, timeout: float = 60.0) -> RemoteKernel:
        """Start a kernel of ``kernel_name`` (the server's kernelspec) and wait until it answers, within ``timeout``.

        A kernel that does not become ready is shut down. Raises
        :class:`KernelSpecNotFoundError` (naming the specs the server has),
        :class:`~kernel_agent.errors.KernelStartError`, or the server's
        other named errors.
        """
        name = kernel_name or self.kernel_name
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            model = await self.rest.call("POST", "api/kernels", body={"name": name}, timeout=timeout)
        except ServerHTTPError as exc:
            # Jupyter Server and Kernel Gateway answer an unknown kernelspec with a bare 500.
            if exc.status in (400, 404, 500):
                await self._check_spec(name)
            raise
        kernel = _kernel_model(model, self.url)
        remote = RemoteKernel(self, kernel.id, kernel.name or name)
        try:
            await remote.open(max(deadline - loop.time(), 0.001))
        except BaseException:
            await remote.kill()
            raise
        return remote

    async def connect(self, kernel_id: str, *, timeout: float = 60.0) -> RemoteKernel:
        """Attach to a kernel already running on the server and wait until it answers.

        Raises :class:`KernelNotFoundError` when the server has no such
        kernel. A kernel that does not answer is left running (it is not
        this host's to shut down).
        """
        kernel = await self.kernel(kernel_id)
        remote = RemoteKernel(self, kernel.id, kernel.name)
        await remote.open(timeout)
        return remote

    async def kernel(self, kernel_id: str) -> ServerKernel:
        """The server's model of one kernel (:class:`KernelNotFoundError` if it has none of that id)."""
        return _kernel_model(await self._call_kernel("GET", kernel_id, ""), self.url)

    async def list_kernels(self) -> list[ServerKernel]:
        """The kernels running on the server.

        Kernel Gateway lists them only with ``--KernelGatewayApp.list_kernels=True``
        (otherwise it answers 403, a :class:`ServerHTTPError` that says so).
        """
        try:
            listing = await self.rest.call("GET", "api/kernels")
        except ServerHTTPError as exc:
            if exc.status == 403:  # the token was accepted (else ServerAuthError): listing itself is refused
                raise ServerHTTPError(f"{exc}. The server does not let kernels be listed (Kernel Gateway: start "
                                      "it with --KernelGatewayApp.list_kernels=True)", 403) from None
            raise
        if not isinstance(listing, list):
            raise ServerHTTPError(f"the Jupyter server at {self.url} listed its kernels as something other than "
                                  "a list", 200)
        return [_kernel_model(model, self.url) for model in listing]

    async def interrupt(self, kernel_id: str) -> None:
        """Interrupt the kernel's running cell (the server sends a message or a signal, as its kernelspec says)."""
        await self._call_kernel("POST", kernel_id, "/interrupt")

    async def restart(self, kernel_id: str, *, timeout: float | None = None) -> None:
        """Restart the kernel under the same id (its state is lost); waits for the server to see it answer."""
        try:
            await self._call_kernel("POST", kernel_id, "/restart", timeout=timeout)
        except ServerHTTPError as exc:
            if exc.status == 500:  # Jupyter Server answers any failed restart so, an unknown kernel's included
                await self.kernel(kernel_id)
            raise

    async def shutdown(self, kernel_id: str) -> None:
        """Shut the kernel down (:class:`KernelNotFoundError` if the server has no such kernel)."""
        await self._call_kernel("DELETE", kernel_id, "")

    async def kernel_specs(self) -> dict[str, dict[str, Any]]:
        """The server's kernelspecs: name -> spec (``display_name``, ``language``, ``argv``, ``metadata``...)."""
        answer = await self.rest.call("GET", "api/kernelspecs")
        specs = answer.get("kernelspecs") if isinstance(answer, dict) else None
        if not isinstance(specs, dict):
            raise ServerHTTPError(f"the Jupyter server at {self.url} answered GET api/kernelspecs without a "
                                  "'kernelspecs' object", 200)
        found: dict[str, dict[str, Any]] = {}
        for name, entry in specs.items():
            spec = entry.get("spec") if isinstance(entry, dict) else None
            found[str(name)[:_MAX_FIELD_CHARS]] = spec if isinstance(spec, dict) else {}
        return found

    async def version(self) -> str:
        """The server's API version (``GET /api``; needs no token: a cheap check that a Jupyter server answers)."""
        answer = await self.rest.call("GET", "api")
        version = answer.get("version") if isinstance(answer, dict) else None
        if not isinstance(version, str):
            raise ServerHTTPError(f"{self.url} answered GET api without a version: is it a Jupyter server?", 200)
        return version[:_MAX_FIELD_CHARS]

    async def _call_kernel(self, method: str, kernel_id: str, suffix: str, *, timeout: float | None = None) -> Any:
        try:
            path = f"api/kernels/{check_kernel_id(kernel_id)}{suffix}"
        except ValueError as exc:
            raise KernelNotFoundError(f"{str(kernel_id)[:80]!r} is {exc}") from None
        try:
            return await self.rest.call(method, path, timeout=timeout)
        except ServerHTTPError as exc:
            if exc.status == 404:
                raise KernelNotFoundError(f"the Jupyter server at {self.url} has no kernel {kernel_id} (it was "
                                          "shut down, culled, or never existed there)") from None
            raise

    async def _check_spec(self, name: str) -> None:
        """Raise :class:`KernelSpecNotFoundError` if the server has no kernelspec ``name``."""
        specs: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(Exception):
            specs = await self.kernel_specs()
        if specs and name not in specs:
            raise KernelSpecNotFoundError(
                f"the Jupyter server at {self.url} has no kernelspec {name!r}; it has "
                f"{', '.join(repr(spec) for spec in sorted(specs))}. Install kernel-agent's on the server "
                "(`kernel-agent kernelspec install` in its environment) or pass kernel_name=...")


def _kernel_model(value: Any, url: str) -> ServerKernel:
    """A kernel model from the server, its fields checked (ids go into URL paths)."""
    problem = f"the Jupyter server at {url} answered with a malformed kernel model"
    if not isinstance(value, dict):
        raise ServerHTTPError(problem, 200)
    try:
        kernel_id = check_kernel_id(value.get("id"))  # type: ignore[arg-type]
    except ValueError:
        raise ServerHTTPError(f"{problem} (its id)", 200) from None
    name, state, connections = value.get("name"), value.get("execution_state"), value.get("connections")
    return ServerKernel(
        id=kernel_id,
        name=name[:_MAX_FIELD_CHARS] if isinstance(name, str) else "",
        last_activity=_timestamp(value.get("last_activity")),
        execution_state=state[:_MAX_FIELD_CHARS] if isinstance(state, str) else "unknown",
        connections=connections if isinstance(connections, int) and not isinstance(connections, bool) else 0,
    )


def _timestamp(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
