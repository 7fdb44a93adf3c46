"""A session's tools: the items it was given, the sources it started, the registry and the SDK made from them.

Starting and closing tool sources (MCP servers today) is decided in one
place, :mod:`kernel_agent.tools.sources`; this module only keeps what a
session started so that it is closed with the session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kernel_agent.errors import KernelStartError, SessionClosedError
from kernel_agent.kernel.catalog_search import CATALOG_MARKER
from kernel_agent.protocol import wire
from kernel_agent.runtime.execute import run_silently
from kernel_agent.runtime.kernel import Kernel
from kernel_agent.runtime.outputs import OutputCollector
from kernel_agent.tools.bridge import ToolBridge
from kernel_agent.tools.key_order import schema_key_orders
from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.sdkgen import generate_sdk, sdk_hash
from kernel_agent.tools.sources import ToolSource, close_sources, start_sources
from kernel_agent.tools.tool import Tool

# The end's own entries (Recorder.close and the session's seal): a source never replaces them.
_END_KEYS = frozenset({"ended_at", "reason", "cells", "head", "totals", "settings", "record", "recording_problems"})


def tool_items(tools: Iterable[Any] | Any) -> list[Any]:
    """The tools option as a list: one item, or the items of a list, tuple or set."""
    return list(tools) if isinstance(tools, (list, tuple, set)) else [tools] if tools else []


def tool_definition(tool: Tool) -> dict[str, Any]:
    """What a notebook keeps of a tool: enough to regenerate the same SDK for a replay."""
    definition = {
        "qualified_name": tool.qualified_name, "name": tool.name, "namespace": tool.namespace,
        "description": tool.description, "input_schema": tool.input_schema, "output_schema": tool.output_schema,
        "read_only": tool.read_only, "destructive": tool.destructive, "source": tool.source,
    }
    # The notebook sorts keys; the schemas' own order makes the parameters' order (kernel_agent.tools.key_order).
    definition["key_order"] = schema_key_orders(definition)
    return definition


def _registry_and_sdk(items: list[Any]) -> tuple[ToolRegistry, dict[str, str]]:
    registry = ToolRegistry(items)
    return registry, generate_sdk(registry)


def _calls(registry: ToolRegistry | None, modules: dict[str, str]) -> dict[str, str]:
    """What the kernel calls in an SDK: each module holding tools, up to its catalogue line (which skills add to).

    A resumed kernel has the SDK of the notebook's definitions, and the header's hash does not vouch for them
    (a forger rewriting them leaves the hash as it was): the tools that answer next must make these same
    functions, or ``tools.move(a, b)`` reaches them with the parameters in another order."""
    if registry is None:
        return {}
    spaces = [space for space in ["", *registry.namespaces()] if registry.tools(space) and space in modules]
    return {space: modules[space].rsplit("\n" + CATALOG_MARKER, 1)[0] for space in spaces}


class SessionTools:
    """The tools a session's cells call, and the SDK its kernel was given for them."""

    def __init__(self, tools: Iterable[Any] | Any) -> None:
        self.items = tool_items(tools)
        self.registry: ToolRegistry | None = None
        self.sdk_modules: dict[str, str] = {}
        self._started: list[ToolSource] = []

    async def prepare(self) -> None:
        """Start the tool sources among the items, then build the registry and the SDK source."""
        self._started += await start_sources(self.items)
        # Naming and generating 2,500 tools takes a second or two: in a worker thread, off the loop sessions share.
        self.registry, self.sdk_modules = await asyncio.to_thread(_registry_and_sdk, self.items)

    async def replace(self, tools: Iterable[Any] | Any, *, sdk_hash_required: str | None = None) -> bool:
        """Answer calls with ``tools`` from now on, keeping the SDK the kernel has; False if their SDK differs.

        With ``sdk_hash_required``, tools whose SDK has another hash are
        not taken (the sources started for them are closed with the session).
        No tools at all are always taken: calls then fail with a clear error.
        """
        items = tool_items(tools)
        if not items:
            self.registry = ToolRegistry([])
            return True
        self._started += await start_sources(items)
        live, modules = await asyncio.to_thread(_registry_and_sdk, items)
        if sdk_hash_required and (sdk_hash(modules) != sdk_hash_required
                                  or _calls(live, modules) != _calls(self.registry, self.sdk_modules)):
            return False
        # Taken only now: refused items (their record_end) must not write into the sealed end of the record.
        self.items = items
        self.registry = live
        return True

    @contextlib.contextmanager
    def answered_by(self, registry: ToolRegistry) -> Iterator[None]:
        """Answer calls with ``registry`` inside the block (restoring state), then with the tools again."""
        own, self.registry = self.registry, registry
        try:
            yield
        finally:
            self.registry = own

    def lookup(self, qualified_name: str) -> Tool | None:
        """The tool a kernel asked for by name (None: there is no such tool)."""
        try:
            return self.registry.lookup(qualified_name) if self.registry is not None else None
        except (KeyError, LookupError):
            return None

    @property
    def manifest(self) -> str:
        """The short tool manifest for a system prompt (names and one-line summaries)."""
        if self.registry is None:
            raise SessionClosedError("the session has not been started")
        return str(self.registry.manifest()) if len(self.registry) else ""

    def definitions(self) -> list[dict[str, Any]]:
        """What a notebook keeps of every tool (see :func:`tool_definition`)."""
        registry = self.registry
        if registry is None:
            return []
        definitions = []
        for tool in registry:
            definition = tool_definition(tool)
            # Kept so that a replay regenerates the same SDK (the namespace's line is in its module).
            described = registry.namespace_description(registry.namespace_of(tool)) if tool.namespace else None
            if described is not None:
                definition["namespace_description"] = described
            definitions.append(definition)
        return definitions

    def check_places(self, facts: Mapping[str, Any], tools: Iterable[Any] | Any = None) -> None:
        """Let each item (of ``tools``, default the session's) with a ``check_session_place(facts)`` method refuse
        the session (it raises) before its SDK and manifest are given, or before it answers a resumed session's
        calls: a skills library the sandbox can write would feed them forged text."""
        for item in self.items if tools is None else tool_items(tools):
            method = getattr(type(item), "check_session_place", None)
            if callable(method):
                method(item, facts)

    def record_end(self, session: object) -> dict[str, Any]:
        """What the tool items add to the sealed end of the session's record: each item with a
        ``record_end(session)`` method (``session``: the session's bridge, the key of
        :mod:`kernel_agent.tools.call_context`) gives a mapping; string keys only, the record's own kept."""
        added: dict[str, Any] = {}
        for item in self.items:
            method = getattr(type(item), "record_end", None)
            if not callable(method):
                continue
            try:
                given = method(item, session)
            except Exception:  # noqa: BLE001 - a source that cannot say what it adds adds nothing
                continue
            if isinstance(given, dict):
                added.update({k: v for k, v in given.items() if isinstance(k, str) and k not in _END_KEYS})
        return added

    async def close(self) -> None:
        """Close the sources this session started (never raises)."""
        started, self._started = self._started, []
        await close_sources(started)


async def install_sdk(
    kernel: Kernel, bridge: ToolBridge, sdk_modules: dict[str, str], timeout: float, max_output_bytes: int
) -> None:
    """Bind the bridge to the kernel's connection and give the kernel the SDK (a silent cell)."""
    connection = kernel.connection
    assert connection is not None
    bridge.bind(lambda comm_id, data, buffers: connection.post(
        "shell", "comm_msg", {"comm_id": comm_id, "data": data}, buffers))
    connection.on_comm = bridge.on_comm_message
    code = ("from kernel_agent.kernel.bridge import install as _kernel_agent_install\n"
            f"_kernel_agent_install({sdk_modules!r}, {float(bridge.call_timeout)!r}, "
            f"{sorted(wire.local_accepts())!r})\n"
            "del _kernel_agent_install")
    collector = OutputCollector(max_output_bytes)
    run = await run_silently(kernel, code, timeout, on_iopub=collector.add, wants_content=collector.wants_content)
    if not run.ok:
        detail = run.content.get("evalue") or f"the kernel {'died' if run.outcome == 'died' else 'did not answer'}"
        raise KernelStartError(f"the tool SDK could not be installed in the kernel: {detail}")
