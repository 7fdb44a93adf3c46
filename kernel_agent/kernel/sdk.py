"""The tool SDK as the model's code sees it, inside the kernel.

The host generates one module of Python source per namespace (real
signatures, type hints, docstrings); each generated function is decorated
with :func:`bind`, which turns a call into a request over the bridge. This
module holds no tool logic: every call runs on the host.

Without a host attached (the kernelspec opened in JupyterLab), ``tools``
exists but every call raises :class:`NoHostError`.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import sys
import types
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from kernel_agent.kernel.catalog_search import (
    CATALOG_MARKER,
    CatalogEntry,
    SearchIndex,
    catalog_entries,
    entry_lines,
    extra_entries,
    module_doc,
    read_catalog,
)
from kernel_agent.protocol.errors import UnserializableValue

# -- errors the model's code can catch ----------------------------------------------


class ToolError(Exception):
    """A tool call failed on the host; ``tool`` names it, ``message`` says why."""

    def __init__(self, tool: str, message: str, *, kind: str = "error", details: Any = None) -> None:
        self.tool = tool
        self.message = message
        self.kind = kind
        self.details = details
        super().__init__(f"{tool}: {message}")


class ToolResultError(ToolError):
    """The tool ran, but its result cannot cross the bridge (a generator, an open file...): ``message`` says
    what it is and where in the result (``result["rows"][3]``)."""


class PlainFormWarning(UserWarning):
    """A value crossed the bridge in a plain form instead of its own type (for example a DataFrame as a list
    of records, because this kernel has no pandas)."""


class ToolValidationError(ToolError):
    """The arguments did not match the tool's schema; ``errors`` lists field, message, expected."""


class ToolDenied(ToolError):
    """The host's policy (or a person) refused this call."""


class ToolTimeoutError(ToolError):
    """The call did not finish within its timeout."""


class ToolBudgetExceeded(ToolError):
    """The session's tool-call budget is spent."""


class UnknownToolError(ToolError):
    """The host has no tool of that name in this session."""


class NoHostError(ToolError):
    """No kernel-agent host is attached to this kernel, so tools cannot run."""


ERROR_KINDS: dict[str, type[ToolError]] = {
    "error": ToolError,
    "unserializable": ToolResultError,
    "invalid": ToolValidationError,
    "denied": ToolDenied,
    "timeout": ToolTimeoutError,
    "budget": ToolBudgetExceeded,
    "unknown_tool": UnknownToolError,
    "no_host": NoHostError,
    # "cancelled" (the cell that made the call ended first) and "refused" (no cell of the
    # session was running, or the call came from a thread of an earlier cell) are plain ToolErrors.
}


class Bridge(Protocol):
    """What the SDK needs from the bridge client."""

    def call(self, tool: str, arguments: dict[str, Any]) -> Any: ...
    def call_async(self, tool: str, arguments: dict[str, Any]) -> Awaitable[Any]: ...
    def notify(self, kind: str, payload: dict[str, Any]) -> None: ...


class _Detached:
    """The bridge of a kernel no host is attached to."""

    message = ("no kernel-agent host is attached to this kernel: tools run on the host of a "
               "kernel-agent Session (or a replay). Opened from Jupyter directly, the kernel has no tools.")

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        raise NoHostError(tool, self.message, kind="no_host")

    async def call_async(self, tool: str, arguments: dict[str, Any]) -> Any:
        raise NoHostError(tool, self.message, kind="no_host")

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        raise NoHostError(kind, self.message, kind="no_host")


_bridge: Bridge = _Detached()


def attach(bridge: Bridge) -> None:
    """Route every tool call through ``bridge`` (done by the host when it installs the SDK)."""
    global _bridge
    _bridge = bridge


# -- generated functions ---------------------------------------------------------------


def bind(
    qualified_name: str, *, params: dict[str, str] | None = None, omit_none: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a generated stub call the host tool ``qualified_name``.

    ``params`` maps Python parameter names to the schema's property names
    (they differ when a property is not a valid identifier). Parameters in
    ``omit_none`` are left out of the request when they are None (optional
    properties the schema does not allow to be null). The result has the
    stub's signature and docstring, and an ``aio`` attribute: the same call
    as a coroutine, for ``await`` and ``asyncio.gather``.
    """
    names = params or {}

    def decorate(stub: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(stub)

        def arguments_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{qualified_name}{signature}: {exc}") from None
            bound.apply_defaults()
            return {names.get(k, k): v for k, v in bound.arguments.items() if not (k in omit_none and v is None)}

        @functools.wraps(stub)
        def call(*args: Any, **kwargs: Any) -> Any:
            return _bridge.call(qualified_name, arguments_of(args, kwargs))

        async def call_async(*args: Any, **kwargs: Any) -> Any:
            return await _bridge.call_async(qualified_name, arguments_of(args, kwargs))

        functools.update_wrapper(call_async, stub)
        call_async.__name__ = call_async.__qualname__ = f"{stub.__name__}.aio"
        call.aio = call_async  # type: ignore[attr-defined]
        call.__kernel_agent_tool__ = qualified_name  # type: ignore[attr-defined]
        return call

    return decorate


# -- the `tools` object ---------------------------------------------------------------


class Namespace(types.SimpleNamespace):
    """A group of tools (``tools`` itself, or ``tools.<namespace>``).

    Its tools are defined by running its generated module, on first use
    (an attribute it does not have yet, ``dir``, ``repr``, ``help``): at
    thousands of tools, running every module when the kernel starts costs
    seconds, and most sessions use few namespaces. Search and
    :meth:`namespaces` read the catalogue each module ends with instead.
    """

    def __init__(self, name: str, doc: str = "", *, source: str | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "__doc__", doc or f"Tools in {name}.")
        module = None
        if source is not None:  # registered now (code may reach it there), run at first use
            module = SdkModule(f"kernel_agent_tools{name.removeprefix('tools')}", source)
            sys.modules[module.__name__] = module
        object.__setattr__(self, "_source", module)  # the module, until its tools are set here
        # The catalogue its source ends with, read at the first search (None: none, or not read yet).
        object.__setattr__(self, "_catalog", None)
        object.__setattr__(self, "_catalog_source", source)
        object.__setattr__(self, "_index", None)

    def _read_catalog(self) -> dict[str, Any] | None:
        source = self.__dict__.get("_catalog_source")
        if source is not None:
            object.__setattr__(self, "_catalog", read_catalog(source))
            object.__setattr__(self, "_catalog_source", None)
        catalog: dict[str, Any] | None = self.__dict__.get("_catalog")
        return catalog

    def _load(self) -> None:
        module = self.__dict__.get("_source")
        if module is None:
            return
        object.__setattr__(self, "_source", None)
        module.load()
        for key, value in vars(module).items():
            if callable(value) and hasattr(value, "__kernel_agent_tool__"):
                setattr(self, key, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that do not exist (yet: the module may not have run).
        if name.startswith("__") or name in ("_source", "_catalog", "_catalog_source", "_index", "_name"):
            raise AttributeError(name)
        if self.__dict__.get("_source") is not None:
            self._load()
            if name in self.__dict__:
                return self.__dict__[name]
        if isinstance(_bridge, _Detached):
            raise NoHostError(f"{self._name}.{name}", _Detached.message, kind="no_host")
        catalog = self._read_catalog()
        extra = next((e for e in extra_entries("", catalog) if e.name == name), None) if catalog else None
        if extra is not None:  # a skill the catalogue lists: say how to import it, not "no such tool"
            raise AttributeError(f"{self._name}.{name} is a {extra.kind}, not a tool: {extra.line}")
        raise AttributeError(f"{self._name} has no tool or namespace {name!r}; see dir({self._name}) "
                             f"or {self._name}.search('words')")

    def __repr__(self) -> str:
        self._load()
        entries = [k for k in vars(self) if not k.startswith("_")]
        return f"<tools {self._name}: {', '.join(sorted(entries)) or 'empty'}>"

    def __dir__(self) -> list[str]:
        self._load()
        return sorted(k for k in vars(self) if not k.startswith("_"))

    def _entries(self) -> list[CatalogEntry]:
        """This namespace's own tools (not its sub-namespaces') as search entries."""
        own = self._name.removeprefix("tools").removeprefix(".")
        catalog = self._read_catalog()
        if catalog is not None:
            return catalog_entries(own, catalog)
        self._load()  # no catalogue (an older recording): ask the functions themselves
        found = []
        for key, value in sorted(vars(self).items()):
            if callable(value) and hasattr(value, "__kernel_agent_tool__"):
                doc = inspect.getdoc(value) or ""
                summary = doc.split("\n", 1)[0]
                signature = inspect.signature(value)
                path = f"{self._name}.{key}"
                found.append(CatalogEntry(path=path, name=key, namespace=own, summary=summary,
                                          line=f"{path}{signature}: {summary}".rstrip(": "),
                                          parameters=tuple(signature.parameters), description=doc[len(summary):]))
        return found

    def search(self, query: str = "", limit: int = 20) -> list[str]:
        """The tools ``query`` describes best, best first: each as its call, signature and summary.

        Words are matched in tool names, namespaces, summaries, parameter
        names and descriptions (``tools.search("refund payment")``); an exact
        name comes first. ``tools.<namespace>.search(...)`` searches one namespace."""
        if self._index is None:
            children = [v for v in vars(self).values() if isinstance(v, Namespace)]
            object.__setattr__(self, "_index", SearchIndex(
                [*self._entries(), *(e for child in children for e in child._entries())]))
        return entry_lines(self._index.search(query, limit))

    def namespaces(self) -> list[str]:
        """Every namespace under this one with its number of tools and one line on it."""
        found = []
        for value in vars(self).values():
            if isinstance(value, Namespace):
                catalog = value._read_catalog()
                if catalog is not None:
                    count, line = len(catalog.get("tools", [])), str(catalog.get("line", ""))
                else:
                    count, line = len(value._entries()), ""
                found.append(f"{value._name} ({count:,}): {line}".rstrip(": "))
        return found


class SdkModule(types.ModuleType):
    """A generated module, in ``sys.modules`` from the start, whose source runs at the first use of one of
    its names (through its Namespace, or ``sys.modules[name].fn`` as before it was lazy)."""

    def __init__(self, name: str, source: str) -> None:
        super().__init__(name)
        self.__file__ = f"<kernel-agent sdk: {name}>"
        self.__dict__["_kernel_agent_source"] = source

    def load(self) -> None:
        """Run the source (once), and give its functions their resolved annotations."""
        source = self.__dict__.pop("_kernel_agent_source", None)
        if source is None:
            return
        filename = self.__file__ or ""
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), self.__dict__)  # host-generated SDK source, not model code
        for value in list(vars(self).values()):
            if callable(value) and hasattr(value, "__kernel_agent_tool__"):
                _resolve_annotations(value, self)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the module does not have (yet); dunders (importlib's probes) never load it.
        if name.startswith("__") or "_kernel_agent_source" not in self.__dict__:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        self.load()
        return getattr(self, name)


def load_module(name: str, source: str) -> types.ModuleType:
    """Execute generated source as a module whose code ``inspect`` and ``help`` can show."""
    module = SdkModule(name, source)
    sys.modules[name] = module
    module.load()
    return module


def build_tools(modules: dict[str, str]) -> Namespace:
    """The ``tools`` object from generated sources: {"": top-level source, "ns": namespace source}.

    Modules run on first use (see :class:`Namespace`); those without a catalogue (recorded before modules
    had one) run now, as search reads their functions.
    """
    top = modules.get("") or None
    root = Namespace("tools", "The tools of this session. dir(tools), tools.search('words'), help(tools.x), "
                     "tools.namespaces().", source=top)
    for namespace, source in modules.items():  # in registration order: search breaks ties by it
        if namespace:
            target = Namespace(f"tools.{namespace}", module_doc(source), source=source)
            setattr(root, namespace, target)
            if CATALOG_MARKER not in source:
                target._load()
    if top is not None and CATALOG_MARKER not in top:
        root._load()
    return root


def _resolve_annotations(function: Callable[..., Any], module: types.ModuleType) -> None:
    """Turn the generated string annotations into objects, so help() shows ``Literal['c', 'f']``, not a string."""
    import typing

    try:
        hints = typing.get_type_hints(function, globalns=module.__dict__)
    except Exception:  # noqa: BLE001 - any annotation that does not resolve: keep the strings
        return  # keep the strings: still readable
    targets: list[Any] = [function, getattr(function, "aio", None)]  # Any: __signature__ is set on them
    for target in targets:
        if target is not None:
            target.__annotations__ = dict(hints)
            target.__signature__ = inspect.signature(target).replace(
                parameters=[p.replace(annotation=hints.get(p.name, p.annotation))
                            for p in inspect.signature(target).parameters.values()],
                return_annotation=hints.get("return", inspect.Signature.empty))


# -- progress and the final answer --------------------------------------------------------


def progress(message: str = "", **fields: Any) -> None:
    """Report progress to the host while the cell runs: ``progress("loaded", rows=10_000)``."""
    _bridge.notify("progress", {"message": str(message), "fields": fields})


def final_answer(value: Any) -> None:
    """Hand the task's answer to the host; the agent loop ends after this cell."""
    _bridge.notify("final_answer", {"value": value})


def model_names(tools: Namespace) -> dict[str, Any]:
    """What the model's code finds in its namespace: ``tools``, ``progress``, ``final_answer``, the errors."""
    return {
        "tools": tools,
        "progress": progress,
        "final_answer": final_answer,
        "ToolError": ToolError,
        "ToolValidationError": ToolValidationError,
        "ToolDenied": ToolDenied,
        "ToolTimeoutError": ToolTimeoutError,
        "ToolResultError": ToolResultError,
        "UnserializableValue": UnserializableValue,
    }
