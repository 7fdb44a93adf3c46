"""Regular expressions of tool schemas matched in linear time, so that the kernel's strings cannot stall the host.

jsonschema matches ``pattern`` and ``patternProperties`` with Python's ``re``, a backtracking engine: a
schema's ``^(a+)+$`` (a tool author's slip, or an MCP server's schema) against 40 characters the kernel
sends takes hours, holding the GIL on the event loop every session shares (a worker thread would not
help: ``re`` does not release the GIL). These keywords here use the linear-time Rust engine of
pydantic-core instead. A pattern that engine cannot compile (look-around, back-references) is not
checked for ``pattern`` (the handler still gets a string) and matches no key for ``patternProperties``
(so ``additionalProperties: false`` refuses the key rather than running it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from pydantic_core import SchemaError, SchemaValidator, core_schema

#: Longest pattern compiled (a schema's text; longer ones are treated as not compilable).
MAX_PATTERN_CHARS = 10_000
_EXTENDED: dict[type[Any], type[Any]] = {}


@functools.lru_cache(maxsize=1024)
def _matcher(pattern: str) -> Callable[[str], bool] | None:
    """A search (unanchored, as JSON Schema has it) for ``pattern`` in linear time; None: not compilable."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return None
    try:
        validator = SchemaValidator(core_schema.str_schema(pattern=pattern, regex_engine="rust-regex"))
    except SchemaError:
        return None
    return validator.isinstance_python


def linear_search(pattern: str) -> Callable[[str], bool] | None:
    """Whether ``pattern`` is found in a text, in linear time (None: the linear engine cannot compile it:
    look-around, back-references, or longer than :data:`MAX_PATTERN_CHARS`)."""
    return _matcher(pattern)


def _search(pattern: Any, text: str) -> bool | None:
    matcher = _matcher(pattern) if isinstance(pattern, str) else None
    return None if matcher is None else matcher(text)


def with_linear_patterns(validator_class: type[Any]) -> type[Any]:
    """``validator_class`` (a jsonschema validator class) with ``pattern``, ``patternProperties`` and
    ``additionalProperties`` matched by the linear engine (made once per class: thousands of tools share it)."""
    extended = _EXTENDED.get(validator_class)
    if extended is None:
        extended = _EXTENDED[validator_class] = _extend(validator_class)
    return extended


def _extend(validator_class: type[Any]) -> type[Any]:
    import jsonschema

    def pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and _search(pattern, instance) is False:
            yield jsonschema.ValidationError(f"{instance!r:.200} does not match {pattern!r:.200}")

    def matched_keys(schema: Any, instance: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
        patterns = schema.get("patternProperties") if isinstance(schema, dict) else None
        for key_pattern in (patterns if isinstance(patterns, dict) else ()):
            for key, value in instance.items():
                if isinstance(key, str) and _search(key_pattern, key):
                    yield key_pattern, key, value

    def pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "object"):
            for key_pattern, key, value in matched_keys(schema, instance):
                yield from validator.descend(value, patterns[key_pattern], path=key, schema_path=key_pattern)

    def additional_properties(validator: Any, allowed: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        known = schema.get("properties", {})
        matched = {key for _, key, _ in matched_keys(schema, instance)}
        extras = sorted((key for key in instance if key not in known and key not in matched), key=str)
        if validator.is_type(allowed, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], allowed, path=extra)
        elif not allowed and extras:
            shown = ", ".join(f"{extra!r:.100}" for extra in extras[:20])
            verb = "was" if len(extras) == 1 else "were"
            yield jsonschema.ValidationError(f"Additional properties are not allowed ({shown} {verb} unexpected)")

    extended: type[Any] = jsonschema.validators.extend(validator_class, {
        "pattern": pattern, "patternProperties": pattern_properties, "additionalProperties": additional_properties})
    return extended
