"""jsonschema's ``uniqueItems`` in linear time, for the arguments a kernel sends.

A tool's schema comes from a document or a server (OpenAPI, MCP, JSON-schema definitions), its
arguments from the kernel, and validation runs on the event loop every session shares (in a
thread only past 256 kB, and a thread does not stop a runaway check either). jsonschema's own
``uniqueItems`` compares every pair of items that cannot be sorted (objects, mixed types):
1,000 small objects took 7 s, 4,000 (40 kB of arguments) a minute. Here the items are keyed by
a hashable canonical form, with jsonschema's equality (``1 == 1.0``, ``True != 1``). (The
``format`` checkers are bounded in :mod:`kernel_agent.tools.tool`.)

jsonschema is imported when a validator class is first extended, not with this module (importing
it costs seconds with jupyter-server's format packages installed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_EXTENDED: dict[type[Any], type[Any]] = {}


def with_linear_unique_items(validator_class: type[Any]) -> type[Any]:
    """``validator_class`` with a linear ``uniqueItems`` (made once per class)."""
    extended = _EXTENDED.get(validator_class)
    if extended is None:
        import jsonschema

        extended = _EXTENDED[validator_class] = jsonschema.validators.extend(
            validator_class, validators={"uniqueItems": _unique_items})
    return extended


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not unique or not validator.is_type(instance, "array"):
        return
    import jsonschema

    seen: set[Any] = set()
    for index, item in enumerate(instance):
        try:
            key = _canonical(item)
        except (RecursionError, TypeError):
            yield jsonschema.ValidationError("the array's items could not be compared (too deep or not JSON)")
            return
        if key in seen:
            # Not the array's repr (jsonschema's message): it may be most of the request.
            yield jsonschema.ValidationError(f"has non-unique elements (item {index} repeats an earlier one)")
            return
        seen.add(key)


def _canonical(value: Any) -> Any:
    """A hashable form, equal exactly when jsonschema's ``equal`` says the values are equal."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)  # 1 and 1.0 are equal and hash alike
    if isinstance(value, str):
        return ("string", value)
    if value is None:
        return ("null",)
    if isinstance(value, dict):
        return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return ("array", tuple(_canonical(item) for item in value))
    raise TypeError(type(value).__name__)
