"""Tools that answer from a recording: a replayed or restored session gets the recorded results, not new calls."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from kernel_agent.protocol import wire
from kernel_agent.record.recording import RecordedCell, ReplayInputError, json_text
from kernel_agent.tools.calls import CallStatus

# Recorded outcomes that reach a tool's handler (the others are decided by the bridge before it
# looks at the tool, so a replay session's bridge reproduces them by itself).
_HANDLER_STATUSES = {"ok", "error", "unserializable", "timeout", "denied", "budget"}
_INVALID_BY_SCHEMA = "invalid arguments:"


def _has_tag(value: Any, tags: set[str]) -> bool:
    if isinstance(value, list):
        return any(_has_tag(v, tags) for v in value)
    if isinstance(value, dict):
        return value.get(wire.TAG) in tags or any(_has_tag(v, tags) for v in value.values())
    return False


class RecordedTools:
    """Answers a replay session's tool calls with the recorded ones, cell by cell."""

    def __init__(self) -> None:
        self.cell: RecordedCell | None = None
        self.pending: list[dict[str, Any]] = []
        self.served = 0
        self.unrecorded: list[tuple[int, str]] = []  # (cell index, description)
        self.limitations: list[tuple[int, str]] = []
        self.keys: dict[int, str] = {}

    def begin_cell(self, cell: RecordedCell) -> None:
        self.cell = cell
        self.pending = [c for c in cell.calls if self._reaches_handler(c)]
        self.keys = {id(c): _arguments_key(c.get("arguments")) for c in self.pending}

    def end_cell(self) -> None:
        self.cell, self.pending = None, []

    @staticmethod
    def _reaches_handler(call: dict[str, Any]) -> bool:
        status = call.get("status")
        if status == "invalid":  # schema errors come from the handler's tool; bad requests from the bridge
            return str((call.get("error") or {}).get("message", "")).startswith(_INVALID_BY_SCHEMA)
        return status in _HANDLER_STATUSES

    def handler(self, qualified_name: str) -> Any:
        async def handle(arguments: dict[str, Any]) -> Any:
            return self.answer(qualified_name, arguments)

        return handle

    def answer(self, tool: str, arguments: dict[str, Any]) -> Any:
        from kernel_agent.tools.bridge import _Refused

        encoded = wire.encode(arguments)[0]
        key = json_text(encoded)
        cell = self.cell
        if cell is None:
            message = f"replay divergence: a call to {tool} arrived while no recorded cell was running"
            self.unrecorded.append((-1, f"{tool} {key} (outside any cell)"))
            raise _Refused(CallStatus.ERROR, message)
        match = next((c for c in self.pending if c.get("tool") == tool and self.keys[id(c)] == key), None)
        if match is None:
            if self.pending:
                expected = self.pending[0]
                hint = f"the next recorded call of this cell is {expected.get('tool')} " \
                       f"{json_text(expected.get('arguments'))}"
            else:
                hint = f"the recording has no further calls in this cell ({len(cell.calls)} recorded)"
            self.unrecorded.append((cell.index, f"{tool} {key} in cell {cell.index} ({hint})"))
            raise _Refused(CallStatus.ERROR, f"replay divergence: the recording has no call {tool} {key} here; {hint}")
        self.pending.remove(match)
        self.served += 1
        status = match.get("status")
        if status != "ok":
            raw_error = match.get("error")
            error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
            raise _Refused(CallStatus(status), str(error.get("message", "")), error.get("details"))
        result = match.get("result")
        if _has_tag(result, {"bytes"}):
            note = (f"{tool} returned bytes, which a recording does not keep (only a reference to a binary "
                    "buffer): the replay cannot give them back")
            self.limitations.append((cell.index, note))
            raise _Refused(CallStatus.ERROR, f"replay limitation: {note}")
        for tag, module in (("ndarray", "numpy"), ("dataframe", "pandas"), ("series", "pandas")):
            if _has_tag(result, {tag}):
                try:
                    importlib.import_module(module)
                except ImportError:
                    self.limitations.append((cell.index, f"{tool} returned a {module} value, but {module} is "
                                                         "not installed here: it is given back as lists"))
        try:
            return wire.decode(result, [])
        except wire.DecodeError as exc:
            note = f"the recorded result of {tool} cannot be decoded: {exc}"
            self.limitations.append((cell.index, note))
            raise _Refused(CallStatus.ERROR, f"replay limitation: {note}") from None


def _buffer_count(value: Any) -> int:
    if isinstance(value, list):
        return max((_buffer_count(v) for v in value), default=0)
    if isinstance(value, dict):
        own = value["buffer"] + 1 if value.get(wire.TAG) == "bytes" and isinstance(value.get("buffer"), int) else 0
        return max([own, *(_buffer_count(v) for v in value.values())])
    return 0


def _arguments_key(recorded: Any) -> str:
    """The recorded arguments as a replayed call's arguments will look to the handler, re-encoded.

    The handler sees decoded arguments; decoding and encoding again is not
    always the identity (an object the kernel sent as its ``repr`` comes
    back as a plain string), so the recorded side goes through the same
    round trip. Bytes are compared by position only: a recording does not
    keep their content.
    """
    try:
        count = _buffer_count(recorded)
        if count > 10_000:
            raise wire.DecodeError("too many buffers")
        return json_text(wire.encode(wire.decode(recorded, [b""] * count))[0])
    except (wire.DecodeError, RecursionError):
        return json_text(recorded)


def recorded_tools(definitions: list[dict[str, Any]], server: RecordedTools) -> list[Any]:
    from kernel_agent.errors import ToolDefinitionError
    from kernel_agent.tools.key_order import with_recorded_order
    from kernel_agent.tools.tool import tool_from_schema

    tools: list[Any] = []
    for number, definition in enumerate(definitions):
        name = definition.get("name")
        namespace = definition.get("namespace")
        qualified = definition.get("qualified_name") or (f"{namespace}.{name}" if namespace else name)
        try:
            if namespace is not None and not isinstance(namespace, str):
                raise ToolDefinitionError(f"namespace {namespace!r} is not a string")
            definition = with_recorded_order(definition)  # the schemas' key order, which the notebook sorted
            built = tool_from_schema(
                {"name": name, "description": definition.get("description") or "",
                 "input_schema": definition.get("input_schema"), "output_schema": definition.get("output_schema")},
                server.handler(str(qualified)), namespace=namespace,
                read_only=bool(definition.get("read_only")), destructive=bool(definition.get("destructive")),
                takes_mapping=True, source=str(definition.get("source") or "schema"),
                # The arguments are matched as the kernel sent them (as the recording has them): a call the
                # original tool refused as invalid is answered with its recorded refusal, not re-validated.
                # So the schema only makes the SDK, and is not checked (the generator takes any JSON).
                validate_arguments=False,
            )
        except ToolDefinitionError as exc:
            raise ReplayInputError(f"the recorded tool definition {number} ({qualified!r}) cannot be rebuilt: "
                                   f"{exc}") from None
        if built.qualified_name != qualified:
            raise ReplayInputError(f"the recorded tool definition {number} names itself {qualified!r} but is "
                                   f"{built.qualified_name!r}")
        tools.append(built)
    descriptions = {d["namespace"]: d["namespace_description"] for d in definitions
                    if isinstance(d.get("namespace"), str) and isinstance(d.get("namespace_description"), str)}
    if descriptions:  # the namespaces' lines the SDK was generated with, for a ToolRegistry to read
        tools.append(RecordedNamespaces(descriptions))
    return tools


@dataclasses.dataclass(frozen=True)
class RecordedNamespaces:
    """The recorded namespace descriptions, as an item a ToolRegistry takes (no tools of its own)."""

    namespace_descriptions: dict[str, str]
    tools: tuple[()] = ()
