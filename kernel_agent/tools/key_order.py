"""The key order of a tool's schemas, kept next to them in a recording.

A notebook stores JSON with sorted keys (nbformat, and the chain's
canonical form), but the order of a schema's keys is part of the SDK made
from it: ``properties`` give the parameters' order (so ``tools.f(1, 2)``
means the same thing again) and the fields of generated TypedDicts, and
dicts inside defaults and enums are printed as they are. A recorded tool
definition therefore carries ``key_order``: for each of its schemas, those
dicts (every ``properties`` map, every dict inside a :data:`SHOWN_VALUES`
keyword) whose keys are not in sorted order, as ``[path, keys]`` (``path``
the keys and list indices leading to the dict). The order of a schema's own
keywords (``type`` before ``description``) makes no difference to the SDK
and is not kept, which keeps the record small (a 2,500-operation catalogue
whose keywords were all kept grew by half). A replay, resume or restore
puts every listed dict back in its order, and the others in sorted order
(as they were read): the regenerated SDK is then the recorded one, whatever
the source of the tool (Python, JSON schema, MCP, OpenAPI).

The notebook is hostile input: an order must name an existing dict of the
schema, at most once, and be a permutation of its keys; anything else is a
ToolDefinitionError naming the path (the recording is refused, never half
applied). A definition without ``key_order`` (recorded before it existed)
is used as read, as before.
"""

from __future__ import annotations

from typing import Any

from kernel_agent.errors import ToolDefinitionError

#: The schemas of a definition whose key order is recorded.
ORDERED_SCHEMAS = ("input_schema", "output_schema")
#: Dicts deeper than this many steps keep sorted order (the SDK types schemas that deep as Any anyway).
MAX_ORDER_PATH = 64
#: Keywords whose values the SDK prints (defaults, enums): every dict inside them keeps its order.
SHOWN_VALUES = frozenset({"default", "const", "enum", "examples"})

Path = tuple[str | int, ...]


def key_order(schema: Any) -> list[list[Any]]:
    """``[[path, keys], ...]`` for the dicts of ``schema`` whose order the SDK shows and that are not sorted."""
    entries: list[list[Any]] = []
    _collect(schema, (), entries, set(), False)
    entries.sort(key=lambda entry: [str(part) for part in entry[0]])  # the same schema, the same record
    return entries


def _collect(value: Any, path: Path, entries: list[list[Any]], ancestors: set[int], in_value: bool) -> None:
    # Bounded by MAX_ORDER_PATH; ``ancestors`` stops at a Python schema that contains itself
    # (which no recording can hold anyway), without skipping a sub-schema shared by two properties.
    if len(path) > MAX_ORDER_PATH or not isinstance(value, (dict, list)) or id(value) in ancestors:
        return
    ancestors.add(id(value))
    if isinstance(value, list):
        for index, item in enumerate(value):
            _collect(item, (*path, index), entries, ancestors, in_value)
    elif all(isinstance(k, str) for k in value):
        keys = list(value)
        if (in_value or path[-1:] == ("properties",)) and keys != sorted(keys):
            entries.append([list(path), keys])
        for key in keys:
            _collect(value[key], (*path, key), entries, ancestors, in_value or key in SHOWN_VALUES)
    ancestors.discard(id(value))


def schema_key_orders(definition: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """The ``key_order`` field of a recorded definition: each ordered schema's :func:`key_order`, when not empty.

    Present even when empty: it says the schemas were recorded in sorted order except where it lists.
    """
    orders = {name: key_order(definition.get(name)) for name in ORDERED_SCHEMAS}
    return {name: order for name, order in orders.items() if order}


def with_recorded_order(definition: dict[str, Any]) -> dict[str, Any]:
    """``definition`` with its schemas' dicts in the recorded key order (as is without one)."""
    if "key_order" not in definition:
        return definition
    orders = definition["key_order"]
    if not isinstance(orders, dict) or not set(orders) <= set(ORDERED_SCHEMAS):
        raise ToolDefinitionError(f"key_order must be an object with the keys {' and '.join(ORDERED_SCHEMAS)}")
    ordered = dict(definition)
    for name in ORDERED_SCHEMAS:
        ordered[name] = _apply(definition.get(name), orders.get(name, []), name)
    return ordered


def _apply(schema: Any, entries: Any, name: str) -> Any:
    if not isinstance(entries, list):
        raise ToolDefinitionError(f"key_order.{name} is not a list")
    wanted: dict[Path, list[str]] = {}
    for number, entry in enumerate(entries):
        where = f"key_order.{name}[{number}]"
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list)
                and isinstance(entry[1], list)):
            raise ToolDefinitionError(f"{where} is not a [path, keys] pair")
        path, keys = entry
        if len(path) > MAX_ORDER_PATH or not all(
                isinstance(p, str) or (isinstance(p, int) and not isinstance(p, bool)) for p in path):
            raise ToolDefinitionError(f"{where}: the path is not a list of at most {MAX_ORDER_PATH} keys and indices")
        if not all(isinstance(k, str) for k in keys):
            raise ToolDefinitionError(f"{where}: the keys are not all strings")
        if tuple(path) in wanted:
            raise ToolDefinitionError(f"{where}: the path {_show(path)} is ordered twice")
        wanted[tuple(path)] = keys
    used: set[Path] = set()
    result = _rebuild(schema, (), wanted, used, name)
    unused = next((path for path in wanted if path not in used), None)
    if unused is not None:
        raise ToolDefinitionError(f"key_order.{name}: the path {_show(list(unused))} leads to no object of the schema")
    return result


def _rebuild(value: Any, path: Path, wanted: dict[Path, list[str]], used: set[Path], name: str) -> Any:
    # Recursion is bounded: past MAX_ORDER_PATH nothing is reordered, and the value is kept as read.
    if len(path) > MAX_ORDER_PATH or not isinstance(value, (dict, list)):
        return value
    if isinstance(value, list):
        return [_rebuild(item, (*path, index), wanted, used, name) for index, item in enumerate(value)]
    keys = wanted.get(path)
    if keys is None:
        keys = sorted(value) if all(isinstance(k, str) for k in value) else list(value)
    else:
        used.add(path)
        if len(keys) != len(value) or set(keys) != set(value):
            raise ToolDefinitionError(f"key_order.{name}: the keys given for {_show(list(path))} are not an order "
                                      f"of that object's {len(value)} keys")
    return {key: _rebuild(value[key], (*path, key), wanted, used, name) for key in keys}


def _show(path: list[Any]) -> str:
    text = "/" + "/".join(str(part) for part in path)
    return repr(text if len(text) <= 120 else text[:117] + "...")
