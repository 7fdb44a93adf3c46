"""OpenApiSource: an OpenAPI document as a tool source (see the package docstring)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx2

from kernel_agent.errors import OpenApiError
from kernel_agent.tools.openapi.auth import Credential, credentials, for_operation
from kernel_agent.tools.openapi.document import Document, clean_text, load_document
from kernel_agent.tools.openapi.http import Requester
from kernel_agent.tools.openapi.operations import (
    READ_ONLY_METHODS,
    OperationPlan,
    plan_operations,
    security_requirements,
)
from kernel_agent.tools.openapi.schemas import SchemaConverter
from kernel_agent.tools.tool import Tool, jsonschema_validator

__all__ = ["OpenApiSource"]

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_CONCURRENT = 8


class OpenApiSource:
    """The operations of an OpenAPI 3.0/3.1 document as tools whose HTTP requests the host makes.

    The document (a mapping, or a JSON or YAML file on the host) is read and checked here, so
    an invalid one raises :class:`~kernel_agent.errors.OpenApiError` before any kernel starts.
    ``base_url`` replaces the document's ``servers`` (needed when they are relative or absent).
    ``headers`` go with every request; ``auth`` maps security scheme names to their secrets
    (``{"bearerAuth": token}``; http basic takes ``"user:password"`` or a pair). Both stay on
    the host. ``namespace`` puts every operation in one namespace; without it an operation's
    namespace is its first tag (untagged ones: the document's title). ``timeout`` bounds each
    call from connection to last byte, ``max_response_bytes`` the answer's size; at most
    ``max_concurrent`` calls are in flight at once (the others wait), so a kernel cannot make
    the host hold more than that many answers.
    """

    def __init__(
        self,
        document: Mapping[str, Any] | str | os.PathLike[str],
        *,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    ) -> None:
        if not timeout > 0 or max_response_bytes <= 0 or max_concurrent < 1:
            raise ValueError("timeout, max_response_bytes and max_concurrent must be positive")
        data, label = load_document(document)
        self._document = Document(data, label)
        info = data.get("info")
        title = info.get("title") if isinstance(info, dict) else None
        self.title = clean_text(title).strip()[:200] if isinstance(title, str) and clean_text(title).strip() else "api"
        self.base_url = _base_url(base_url, data)
        fixed = _headers(headers)
        self._credentials = credentials(self._document, auth or {})
        security = data.get("security")
        self._default_security = security_requirements(security, "/security") if security is not None else None
        converter = SchemaConverter(self._document)
        self._plans = plan_operations(self._document, converter, namespace, self.title)
        self.namespace_descriptions: dict[str, str] = _namespace_descriptions(data, self._plans, namespace,
                                                                                self.title)
        self._requester = Requester(self.base_url, headers=fixed, timeout=float(timeout),
                                    max_response_bytes=int(max_response_bytes), max_concurrent=int(max_concurrent),
                                    secrets=[s for c in self._credentials.values() for s in (c.value, *c.secrets)])
        self._validators: dict[str, LazyValidator] = {}  # by operation pointer; shared with fresh() copies
        self._tools = [self._tool(plan) for plan in self._plans]

    def fresh(self) -> OpenApiSource:
        """A new, unstarted source over the same checked document: its own HTTP client, the same tools.

        Reading and planning a large document takes seconds (2,500 operations: about 1.5 s); ``kernel-agent
        mcp`` makes the tools again for every client session, on the event loop all clients share.
        The plans, schemas and (built at first call) validators are immutable, so they are shared.
        """
        other = copy.copy(self)
        other._requester = self._requester.fresh()
        other._tools = [other._tool(plan) for plan in other._plans]
        return other

    # -- the ToolSource protocol -----------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called and :meth:`close` has not been since."""
        return self._requester.opened

    @property
    def tools(self) -> list[Tool]:
        """One Tool per operation (available before :meth:`start`; calls need it started)."""
        return list(self._tools)

    async def start(self) -> Self:
        """Open the HTTP client (nothing is sent); a no-op when started."""
        # The validators (made at each tool's first call, on the event loop sessions share) need jsonschema,
        # whose first import takes 0.3-2.5 s (more with optional format packages installed): paid here, off
        # the loop, not by the first call a kernel makes.
        await asyncio.to_thread(importlib.import_module, "jsonschema")
        self._requester.open()
        return self

    async def close(self) -> None:
        """Close the HTTP client; idempotent."""
        await self._requester.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (f"OpenApiSource({self.title!r} at {self.base_url}, {len(self._tools)} operations, "
                f"started={self.started})")

    # -- tools ---------------------------------------------------------------------------------

    def _tool(self, plan: OperationPlan) -> Tool:
        held: list[Credential] = for_operation(plan.security, self._default_security, self._credentials)
        plan = _without_credential_parameters(plan, held)
        validator = self._validators.get(plan.pointer)
        if validator is None:
            validator = self._validators[plan.pointer] = LazyValidator(plan.input_schema, plan.name)
        requester = self._requester

        async def call_operation(arguments: dict[str, Any]) -> Any:
            return await requester.call(plan, arguments, held)

        call_operation.__name__ = call_operation.__qualname__ = "openapi_operation"
        return Tool(name=plan.name, namespace=plan.namespace, description=plan.description,
                    input_schema=plan.input_schema, output_schema=plan.output_schema, handler=call_operation,
                    read_only=plan.method in READ_ONLY_METHODS, destructive=plan.method == "delete",
                    source=f"openapi:{self.title}", validate=validator,
                    takes_mapping=True)


class LazyValidator:
    """The jsonschema validator of one tool, made at its first call.

    Checking a schema against the metaschema takes about 13 ms; a 2,500-operation document
    would spend half a minute on it before a session starts, for tools mostly never called.
    The schemas are built here from known keywords, so the check is a safety net.
    """

    def __init__(self, schema: dict[str, Any], name: str) -> None:
        self._schema = schema
        self._name = name
        self._validate: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def __call__(self, arguments: dict[str, Any]) -> dict[str, Any]:
        if self._validate is None:
            self._validate = jsonschema_validator(self._schema, self._name)
        return self._validate(arguments)


def _without_credential_parameters(plan: OperationPlan, held: list[Credential]) -> OperationPlan:
    """The plan without the parameters the host's credentials fill (an API key's query parameter...).

    The host would replace their values anyway; offering them would only mislead the model.
    """
    def filled(location: str, name: str) -> bool:
        return any(c.location == location and (c.name.lower() == name.lower() if location == "header"
                                               else c.name == name) for c in held)

    hidden = {p.key for p in plan.parameters if filled(p.location, p.name)}
    if not hidden:
        return plan
    schema = dict(plan.input_schema)
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in hidden}
    if "required" in schema:
        schema["required"] = [k for k in schema["required"] if k not in hidden]
    return dataclasses.replace(plan, input_schema=schema,
                               parameters=tuple(p for p in plan.parameters if p.key not in hidden))


def _base_url(given: str | None, data: Mapping[str, Any]) -> str:
    if given is None:
        servers = data.get("servers")
        server = servers[0] if isinstance(servers, list) and servers and isinstance(servers[0], dict) else None
        if server is None or not isinstance(server.get("url"), str):
            raise OpenApiError("the document names no server: pass base_url=", pointer="/servers")
        url = server["url"]
        variables = server["variables"] if isinstance(server.get("variables"), dict) else {}
        for name, variable in variables.items():
            if isinstance(variable, dict) and isinstance(variable.get("default"), str):
                url = url.replace("{" + name + "}", variable["default"])
        if not url.startswith(("http://", "https://")):
            raise OpenApiError(f"the server URL {url[:200]!r} is relative or not http(s): pass base_url=",
                               pointer="/servers/0/url")
        given = url
    if not isinstance(given, str) or not given.startswith(("http://", "https://")):
        raise OpenApiError(f"base_url must start with http:// or https://, not {str(given)[:200]!r}")
    try:
        parsed = httpx2.URL(given)
    except Exception:  # noqa: BLE001 - the client's URL errors vary
        raise OpenApiError(f"base_url {given[:200]!r} is not a valid URL") from None
    if parsed.userinfo:
        raise OpenApiError("base_url must not hold credentials (user:password@): pass them as headers= or auth=")
    if parsed.query or parsed.fragment or not parsed.host:
        raise OpenApiError(f"base_url {given[:200]!r} must have a host and no query or fragment")
    return given.rstrip("/")


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str) or any(c in name + value for c in "\r\n\0"):
            raise OpenApiError("headers= must map header names to values, strings without line breaks")
        result[name] = value
    return result


def _namespace_descriptions(data: Mapping[str, Any], plans: list[OperationPlan], namespace: str | None,
                            title: str) -> dict[str, str]:
    """One line per namespace: the tag's description (or name), the document's title for the others."""
    info = data["info"] if isinstance(data.get("info"), dict) else {}
    summary = info.get("summary") or info.get("description") or title
    fallback = _first_line(summary if isinstance(summary, str) else title) or title
    if namespace is not None:
        return {namespace: fallback}
    described: dict[str, str] = {}
    tags = data.get("tags")
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and isinstance(tag.get("name"), str):
            text = tag.get("description")
            name = clean_text(tag["name"])
            described[name] = _first_line(text) if isinstance(text, str) and text.strip() else _first_line(name)
    used = dict.fromkeys(plan.namespace for plan in plans if plan.namespace is not None)
    return {name: described.get(name) or (fallback if name == title else name) for name in used}


def _first_line(text: str) -> str:
    line = clean_text(text).strip().split("\n", 1)[0].strip()
    return line if len(line) <= 200 else line[:197] + "..."

