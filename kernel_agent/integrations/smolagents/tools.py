"""smolagents tools as kernel-agent tools: their ``inputs`` and ``output_type`` as JSON schemas, the tool
object itself as the handler, so that the tool runs on the host and the kernel only holds a typed stub.

smolagents' remote executors ship each tool's source code into their sandbox and run it there; here the
code the model writes calls the stub, the call crosses the comm bridge, and the host runs the tool it was
given (blocking tools in a worker thread, coroutine results awaited). Nothing of the tool object reaches
the kernel but its name, description and schema.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import threading
from collections.abc import Callable, Mapping
from typing import Any

from smolagents.agents import MultiStepAgent

from kernel_agent.errors import ToolDefinitionError
from kernel_agent.integrations.smolagents.errors import ExecutorBusyError, SmolagentsToolError
from kernel_agent.kernel.sdk import Namespace, model_names
from kernel_agent.tools.tool import Tool, tool_from_schema

#: smolagents' input and output types that are JSON-schema types as they are.
JSON_TYPES = frozenset({"string", "boolean", "integer", "number", "array", "object", "null"})
#: smolagents' media types: their values (PIL images, audio tensors) have no form on the bridge.
MEDIA_TYPES = frozenset({"image", "audio"})
#: The namespace of the executor's own tools (the variables the agent sends): ``tools.smolagents``.
INTERNAL_NAMESPACE = "smolagents"
#: Names the kernel's SDK puts in the model's namespace: a tool of that name would hide them.
SDK_GLOBALS = frozenset(model_names(Namespace("tools"))) - {"final_answer"}
_SPEC_KEYS = frozenset({"type", "description", "nullable"})


def global_name(name: object, *, what: str = "tool") -> str:
    """``name`` if it can be a global of the kernel that the model's code calls, else a named error."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise SmolagentsToolError(f"the {what} name {name!r:.80} is not a Python identifier, so the agent's "
                                  "code could not call it: rename the tool")
    if hasattr(builtins, name):
        raise SmolagentsToolError(f"the {what} {name!r} would hide Python's builtin {name}(): rename the tool")
    if name in SDK_GLOBALS:
        raise SmolagentsToolError(f"the {what} {name!r} would hide the kernel SDK's {name}: rename the tool")
    return name


def _defaults(tool: object) -> dict[str, Any]:
    """The defaults of the tool's ``forward`` parameters (smolagents makes optional inputs ``nullable``)."""
    forward = getattr(tool, "forward", None)
    try:
        parameters = inspect.signature(forward).parameters.values() if callable(forward) else []
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return {}
    return {p.name: p.default for p in parameters if p.default is not p.empty}


def _type_schema(kind: object, where: str) -> dict[str, Any]:
    """The JSON schema of a smolagents type (a name or a list of names); ``{}`` is any value."""
    kinds = kind if isinstance(kind, list) else [kind]
    if not kinds or not all(isinstance(k, str) for k in kinds):
        raise SmolagentsToolError(f"{where}: the type {kind!r:.80} is not a smolagents type name")
    if "any" in kinds:
        return {}
    media = sorted(set(kinds) & MEDIA_TYPES)
    if media:
        raise SmolagentsToolError(
            f"{where}: the type {media[0]!r} cannot cross kernel-agent's bridge (images and audio have no form "
            "there): take or return a file path or bytes instead")
    unknown = sorted(set(kinds) - JSON_TYPES)
    if unknown:
        raise SmolagentsToolError(f"{where}: unknown type {unknown[0]!r}; smolagents' types are "
                                  f"{', '.join(sorted(JSON_TYPES | MEDIA_TYPES | {'any'}))}")
    return {"type": kinds[0] if len(kinds) == 1 else list(dict.fromkeys(kinds))}


def _input_schema(tool: object, name: str) -> dict[str, Any]:
    inputs = getattr(tool, "inputs", None)
    if not isinstance(inputs, Mapping):
        raise SmolagentsToolError(f"tool {name}: its inputs must be a dict of input specs, not "
                                  f"{type(inputs).__name__}")
    defaults = _defaults(tool)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for key, spec in inputs.items():
        where = f"tool {name}, input {key!r:.80}"
        if not isinstance(key, str) or not isinstance(spec, Mapping):
            raise SmolagentsToolError(f"{where}: an input needs a string name and a dict spec")
        schema = {k: v for k, v in spec.items() if k not in _SPEC_KEYS}  # enum, items, ... kept as they are
        schema.update(_type_schema(spec.get("type"), where))
        if isinstance(spec.get("description"), str):
            schema["description"] = spec["description"]
        if not spec.get("nullable"):
            required.append(key)
        elif key in defaults and defaults[key] is not None:
            # The stub leaves an unset optional input out of the request, so forward() applies its own default.
            if isinstance(defaults[key], (str, int, float, bool)):
                schema.setdefault("default", defaults[key])
        elif "type" in schema:
            kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            schema["type"] = [*kinds, "null"] if "null" not in kinds else kinds
        properties[key] = schema
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _output_schema(tool: object, name: str) -> dict[str, Any] | None:
    declared = getattr(tool, "output_schema", None)
    schema = _type_schema(getattr(tool, "output_type", "any"), f"tool {name}, output")
    if isinstance(declared, dict) and declared:
        return dict(declared)
    return schema or None


def tool_from_smolagents(tool: Any, name: str | None = None, *, namespace: str | None = None) -> Tool:
    """A kernel-agent :class:`~kernel_agent.Tool` that runs the smolagents ``tool`` (or managed agent) on the host.

    ``name`` is the name the agent knows the tool by (default: ``tool.name``). Raises SmolagentsToolError
    when the tool has no schema the bridge can carry or its name cannot be called.
    """
    tool_name = global_name(name if name is not None else getattr(tool, "name", None))
    if not callable(tool):
        raise SmolagentsToolError(f"tool {tool_name}: {type(tool).__name__} is not callable")
    definition = {"name": tool_name, "description": str(getattr(tool, "description", "") or ""),
                  "input_schema": _input_schema(tool, tool_name), "output_schema": _output_schema(tool, tool_name)}

    def run(**arguments: Any) -> Any:
        # Tool.__call__ runs setup() once, then forward(); a coroutine it returns is awaited by the bridge.
        return tool(**arguments)

    if isinstance(tool, MultiStepAgent):
        run = _one_task_at_a_time(tool_name, tool)

    try:
        return tool_from_schema(definition, run, namespace=namespace, source="smolagents")
    except ToolDefinitionError as exc:
        raise SmolagentsToolError(str(exc)) from None


def _one_task_at_a_time(name: str, agent: Any) -> Callable[..., Any]:
    """A managed agent's handler that refuses a second task while one runs.

    The kernel can call a managed agent many times at once (``await asyncio.gather(*[helper.aio(...)])``),
    each call in a worker thread of the host; a smolagents agent is not made for that: a second ``run()``
    resets the memory of the first and interleaves its steps in the same executor.
    """
    running = threading.Lock()

    def run(**arguments: Any) -> Any:
        if not running.acquire(blocking=False):
            raise ExecutorBusyError(f"the managed agent {name} is working on another task: it takes one task at a "
                                    "time, so call it again when that one has finished")
        try:
            return agent(**arguments)
        finally:
            running.release()

    return run


class FinalAnswers:
    """The final answer of the running step, kept on the host: what the agent's ``final_answer`` tool returned.

    The kernel sends the arguments (through the bridge's value crossing), the tool's own ``forward()`` runs
    here, and its result stays here, so a custom FinalAnswerTool may return anything, even what could not
    cross back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the tool runs in a worker thread, the executor reads in its own
        self._given = False
        self._value: Any = None
        self._tool: Any = None
        self._schema: dict[str, Any] = {}
        self._step = 0  # which step an answer belongs to

    def clear(self) -> None:
        """Forget the answer (before each step)."""
        with self._lock:
            self._given, self._value = False, None
            self._step += 1

    def take(self) -> tuple[bool, Any]:
        """(whether the step gave an answer, the answer)."""
        with self._lock:
            return self._given, self._value

    def tool(self, final_answer_tool: Any) -> Tool:
        """The kernel-agent tool that runs ``final_answer_tool`` and keeps what it returns as the answer."""
        described = tool_from_smolagents(final_answer_tool, "final_answer")
        self._tool, self._schema = final_answer_tool, described.input_schema

        def answer(**arguments: Any) -> None:
            with self._lock:
                step = self._step
            value = self._tool(**arguments)
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise SmolagentsToolError("an async final_answer tool is not supported: make forward() plain")
            with self._lock:
                if self._step != step:
                    # A slow forward() of a call its step left running (fire and forget) ended in a later step:
                    # that step did not answer. Its own call was cancelled at the end of its cell.
                    raise SmolagentsToolError("final_answer() of an earlier step ended too late to answer it")
                self._given, self._value = True, value
            # Nothing goes back: the kernel raises FinalAnswerException once this returns.

        return Tool(name=described.name, description=described.description, input_schema=described.input_schema,
                    output_schema=None, handler=answer, source="smolagents", validate=described.validate)

    def replace(self, final_answer_tool: Any) -> None:
        """Answer with another final_answer tool from now on; its inputs must be the same (the kernel's stub is)."""
        if tool_from_smolagents(final_answer_tool, "final_answer").input_schema != self._schema:
            raise SmolagentsToolError("the agent's final_answer tool changed its inputs after the kernel-agent "
                                      "session started (the kernel's SDK is made once): use a new executor")
        self._tool = final_answer_tool


class Variables:
    """The variables the agent sends, held until the kernel fetches them through ``tools.smolagents.variables()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._sent: dict[str, Any] = {}  # every variable sent, for a kernel that replaced a dead one

    def put(self, variables: Mapping[str, Any]) -> None:
        """Hold ``variables`` (names already checked) for the kernel's next fetch."""
        with self._lock:
            self._pending.update(variables)
            self._sent.update(variables)

    def send_again(self) -> None:
        """Hold every variable sent so far again (a fresh kernel replaced one that died)."""
        with self._lock:
            self._pending = {**self._sent, **self._pending}

    @property
    def pending(self) -> bool:
        """Whether variables wait for the kernel."""
        with self._lock:
            return bool(self._pending)

    def tool(self) -> Tool:
        """``tools.smolagents.variables()``: the variables sent since the last fetch (a dict of name: value)."""

        def variables() -> dict[str, Any]:
            with self._lock:
                sent, self._pending = self._pending, {}
            return sent

        return tool_from_schema(
            {"name": "variables", "description": "The variables the smolagents agent sent since the last call "
             "(name: value); the executor puts them in the namespace before the step that needs them.",
             "input_schema": {"type": "object", "properties": {}, "additionalProperties": False}},
            variables, namespace=INTERNAL_NAMESPACE, source="smolagents")
