"""A tool as the host knows it: a name, a JSON schema, a validator and a handler.

Three ways to make one, all ending in the same :class:`Tool`:

* a Python callable (sync or async), with or without the :func:`tool`
  decorator: the argument schema comes from its type hints (validated with
  pydantic), descriptions from its docstring;
* a JSON-schema definition (OpenAI function format, Anthropic tool format,
  or a bare ``{name, description, input_schema}``) bound to a handler that
  takes the arguments as keyword arguments (validated with jsonschema);
* an MCP server's tool list (see :mod:`kernel_agent.tools.mcp`).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_type_hints, overload

import pydantic

from kernel_agent.errors import ToolDefinitionError
from kernel_agent.tools.bounded_validation import with_linear_unique_items
from kernel_agent.tools.patterns import with_linear_patterns

Handler = Callable[..., Any]
#: The JSON-schema keyword that marks a parameter or result as a numpy or pandas value (they have no JSON
#: schema of their own); the SDK types it as the class, the bridge carries it in binary form.
DATA_TYPE_KEY = "x-kernel-agent-type"
DATA_TYPES = {("pandas", "DataFrame"): "pandas.DataFrame", ("pandas", "Series"): "pandas.Series",
              ("numpy", "ndarray"): "numpy.ndarray"}
# A validation error report names at most this many fields: a hostile list of a million bad
# items must not make the host build (and record) a million error entries.
MAX_REPORTED_ERRORS = 20


class ArgumentsInvalid(Exception):
    """The arguments of a call do not match the tool's schema; ``errors`` name each field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


@dataclass(frozen=True, eq=False)  # identity equality: usable in sets and as dict keys
class Tool:
    """One callable tool, whatever it was made from."""

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: Handler = field(repr=False)
    namespace: str | None = None
    output_schema: dict[str, Any] | None = None
    read_only: bool = False
    destructive: bool = False
    source: str = "python"
    validate: Callable[[dict[str, Any]], dict[str, Any]] = field(repr=False, default=lambda args: args)
    # MCP handlers take the argument dict as one positional argument.
    takes_mapping: bool = False

    @property
    def qualified_name(self) -> str:
        """``namespace.name``, or ``name`` for a tool without a namespace."""
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @property
    def summary(self) -> str:
        """The first line of the description."""
        return self.description.strip().split("\n", 1)[0] if self.description.strip() else ""

    async def invoke(self, arguments: dict[str, Any], *, validate_in_thread: bool = False) -> Any:
        """Validate ``arguments`` and run the handler (sync handlers run in a worker thread).

        ``validate_in_thread`` validates in a worker thread too: for large
        arguments, so that the event loop other sessions share keeps running.
        """
        validated = await asyncio.to_thread(self.validate, arguments) if validate_in_thread \
            else self.validate(arguments)
        if self.takes_mapping:
            call: Callable[[], Any] = lambda: self.handler(validated)  # noqa: E731
        else:
            call = lambda: self.handler(**validated)  # noqa: E731
        if inspect.iscoroutinefunction(self.handler):
            return await call()
        result = await asyncio.to_thread(call)
        return await result if inspect.isawaitable(result) else result

    def with_namespace(self, namespace: str | None) -> Tool:
        """A copy of this tool in another namespace."""
        return _replace(self, namespace=namespace)


def _replace(tool: Tool, **changes: Any) -> Tool:
    from dataclasses import replace

    return replace(tool, **changes)


# -- from Python callables ---------------------------------------------------

_ARG_LINE = re.compile(r"^\s{2,}(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(description without the Args section, {parameter: description}) from a Google-style docstring."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    description: list[str] = []
    params: dict[str, str] = {}
    section = ""
    current = ""
    for line in lines:
        header = line.strip().rstrip(":").lower()
        if line.strip().endswith(":") and header in ("args", "arguments", "parameters", "params"):
            section, current = "args", ""
            continue
        if line.strip().endswith(":") and header in ("returns", "return", "raises", "yields", "example", "examples"):
            section = "other"
            description.append(line)
            continue
        if section == "args":
            match = _ARG_LINE.match("  " + line if not line.startswith(" ") else line)
            if match and not line.startswith("        "):
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
            elif not line.strip():
                section = ""
            continue
        description.append(line)
    return "\n".join(description).strip(), params


def _pydantic_validator(model: type[pydantic.BaseModel]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            parsed = model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ArgumentsInvalid([
                {"field": ".".join(str(p) for p in error["loc"]) or "(arguments)", "message": error["msg"],
                 "expected": str(error.get("ctx", {}).get("expected", error["type"]))}
                for error in exc.errors()[:MAX_REPORTED_ERRORS]
            ]) from None
        return {name: getattr(parsed, name) for name in model.model_fields}

    return validate


def tool_from_function(
    function: Handler,
    *,
    name: str | None = None,
    namespace: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool = False,
) -> Tool:
    """Make a Tool from a Python callable, using its type hints and docstring."""
    if not callable(function):
        raise ToolDefinitionError(f"{function!r} is not callable")
    tool_name = name or getattr(function, "__name__", None)
    if not tool_name or tool_name == "<lambda>":
        raise ToolDefinitionError("a tool needs a name: pass name=... for lambdas and callables without __name__")
    doc_description, param_docs = _docstring_parts(inspect.getdoc(function) or "")
    try:
        hints = get_type_hints(function)
    except Exception as exc:
        raise ToolDefinitionError(f"tool {tool_name}: cannot resolve its type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    data_types = False
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {tool_name}: *args/**kwargs cannot be described by a schema; "
                                      "name every parameter")
        annotation = hints.get(param.name, Any)
        if (data_type := _data_type(annotation)) is not None:
            # Validated as an instance of the class; described by name (there is no JSON schema of a DataFrame).
            annotation = Annotated[annotation, pydantic.WithJsonSchema(
                {DATA_TYPE_KEY: data_type, "description": f"a {data_type}"})]
            data_types = True
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, pydantic.Field(default, description=param_docs.get(param.name)))
    try:
        config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=data_types)
        model = pydantic.create_model(f"{tool_name}_arguments", __config__=config, **fields)
        input_schema = model.model_json_schema()
    except Exception as exc:
        raise ToolDefinitionError(f"tool {tool_name}: its parameters have no JSON schema: {exc}") from exc
    input_schema.pop("title", None)
    output_schema = None
    returns = hints.get("return")
    if (data_type := _data_type(returns)) is not None:
        output_schema = {DATA_TYPE_KEY: data_type, "description": f"a {data_type}"}
    elif returns not in (None, Any, type(None)):
        try:
            output_schema = pydantic.TypeAdapter(returns).json_schema()
        except Exception:  # noqa: BLE001 - pydantic raises several kinds for types it cannot describe
            output_schema = None  # an arbitrary object: documented by its annotation only
    return Tool(
        name=tool_name,
        namespace=namespace,
        description=description if description is not None else doc_description,
        input_schema=input_schema,
        output_schema=output_schema,
        handler=function,
        read_only=read_only,
        destructive=destructive,
        validate=_pydantic_validator(model),
    )


def _data_type(annotation: Any) -> str | None:
    """``pandas.DataFrame``, ``pandas.Series`` or ``numpy.ndarray`` if ``annotation`` is that class."""
    if not isinstance(annotation, type):
        return None
    return DATA_TYPES.get((annotation.__module__.partition(".")[0], annotation.__name__))


F = TypeVar("F", bound=Callable[..., Any])


@overload
def tool(function: F, /) -> F: ...


@overload
def tool(
    *, name: str | None = None, namespace: str | None = None, description: str | None = None,
    read_only: bool = False, destructive: bool = False,
) -> Callable[[F], F]: ...


def tool(
    function: Handler | None = None,
    /,
    *,
    name: str | None = None,
    namespace: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool = False,
) -> Any:
    """Declare a Python function as a tool: ``@tool`` or ``@tool(namespace="db", destructive=True)``.

    The function stays callable as before; its Tool is at ``function.__kernel_agent_tool__``.
    """

    def decorate(target: Handler) -> Handler:
        target.__kernel_agent_tool__ = tool_from_function(  # type: ignore[attr-defined]
            target, name=name, namespace=namespace, description=description,
            read_only=read_only, destructive=destructive,
        )
        return target

    return decorate(function) if function is not None else decorate


# -- from JSON-schema definitions ---------------------------------------------------


# The formats checked in a tool's arguments (the kernel's values: hostile). jsonschema's default checker
# also runs whatever optional format packages are installed, and rfc3987_syntax (jupyter-server's
# dependencies bring it) parses "iri"/"iri-reference" with an Earley parser, cubic in the string: 16 kB
# held a host thread for 55 s. These formats have linear checks, and none of their valid values is
# longer than _FORMAT_MAX_CHARS, so a longer string fails without being parsed; other formats are
# annotations (JSON Schema 2020-12's default).
_CHECKED_FORMATS = ("date", "date-time", "time", "email", "idn-email", "ipv4", "ipv6", "uuid")
_FORMAT_MAX_CHARS = 320
_format_checker: Any = None


def _bounded_format_checker() -> Any:
    """The one FormatChecker of tool arguments: the formats above, each refusing over-long strings."""
    global _format_checker
    if _format_checker is None:
        import jsonschema

        checker = jsonschema.FormatChecker(formats=())
        for name, (check, raises) in jsonschema.FormatChecker.checkers.items():
            if name in _CHECKED_FORMATS:
                checker.checks(name, raises)(_length_bounded(check))
        _format_checker = checker
    return _format_checker


def _length_bounded(check: Callable[[object], bool]) -> Callable[[object], bool]:
    def bounded(instance: object) -> bool:
        return not (isinstance(instance, str) and len(instance) > _FORMAT_MAX_CHARS) and check(instance)
    return bounded


def jsonschema_validator(schema: dict[str, Any], tool_name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Check ``schema`` (ToolDefinitionError) and return a validator of arguments (ArgumentsInvalid)."""
    # Imported here, not at the top: with jupyter-server's dependencies installed, importing jsonschema
    # builds rfc3987_syntax's grammar (2.5 s of CPU), which every command paid at start, tools or not.
    import jsonschema

    try:
        validator_class = jsonschema.validators.validator_for(schema)
        # The schema's own shape only: whether its "$ref" strings are well-formed URIs would depend on which
        # optional format packages happen to be installed (jupyter-server's dependencies bring them).
        validator_class.check_schema(schema, format_checker=None)
    except jsonschema.SchemaError as exc:
        raise ToolDefinitionError(f"tool {tool_name}: invalid input schema: {exc.message}") from None
    except RecursionError:  # a hostile server can send an absurdly deep schema
        raise ToolDefinitionError(f"tool {tool_name}: the input schema is nested too deeply") from None
    # Linear uniqueItems (see kernel_agent.tools.bounded_validation), patterns matched in linear time (the kernel's
    # strings meet the schema's regular expressions: kernel_agent.tools.patterns), formats bounded as above.
    linear = with_linear_patterns(with_linear_unique_items(validator_class))
    validator = linear(schema, format_checker=_bounded_format_checker())

    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        errors = sorted(itertools.islice(validator.iter_errors(arguments), MAX_REPORTED_ERRORS),
                        key=lambda e: list(e.path))
        if errors:
            raise ArgumentsInvalid([
                {"field": ".".join(str(p) for p in e.path) or "(arguments)", "message": e.message,
                 "expected": str(e.schema.get("type", e.validator)) if isinstance(e.schema, dict) else ""}
                for e in errors
            ])
        return arguments

    return validate


def tool_from_schema(
    definition: dict[str, Any],
    handler: Handler,
    *,
    namespace: str | None = None,
    read_only: bool = False,
    destructive: bool = False,
    takes_mapping: bool = False,
    source: str = "schema",
    validate_arguments: bool = True,
) -> Tool:
    """Make a Tool from an OpenAI, Anthropic or bare JSON-schema definition and a handler.

    ``validate_arguments=False`` neither checks the schema nor validates calls against it: for tools whose
    schema only makes the SDK (a recording's tools, answered from the record), where checking 2,500 schemas
    with jsonschema took 15-20 s. The SDK generator takes any JSON as a schema (tests/tools/test_sdkgen.py).
    """
    if not isinstance(definition, dict):
        raise ToolDefinitionError(f"a tool definition must be a dict, not {type(definition).__name__}")
    body = definition
    if definition.get("type") == "function" and isinstance(definition.get("function"), dict):
        body = definition["function"]  # OpenAI chat-completions format
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ToolDefinitionError(f"tool definition has no name: {sorted(definition)}")
    schema = body.get("input_schema", body.get("inputSchema", body.get("parameters")))
    if schema is None:
        schema = {"type": "object", "properties": {}}
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise ToolDefinitionError(f"tool {name}: the input schema must be a JSON object schema")
    if not callable(handler):
        raise ToolDefinitionError(f"tool {name}: the handler {handler!r} is not callable")
    annotations = body.get("annotations") or {}
    return Tool(
        name=name,
        namespace=namespace,
        description=str(body.get("description") or ""),
        input_schema=schema,
        output_schema=body.get("output_schema", body.get("outputSchema")),
        handler=handler,
        read_only=read_only or bool(annotations.get("readOnlyHint")),
        destructive=destructive or bool(annotations.get("destructiveHint")),
        source=source,
        validate=jsonschema_validator(schema, name) if validate_arguments else _unvalidated,
        takes_mapping=takes_mapping,
    )


def _unvalidated(arguments: dict[str, Any]) -> dict[str, Any]:
    return arguments


AsyncHandler = Callable[[dict[str, Any]], Awaitable[Any]]
