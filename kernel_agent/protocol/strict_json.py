"""Strict, bounded JSON parsing for recordings kernel-agent did not write itself (stdlib only).

A notebook, journal or side file handed to kernel-agent may have been
crafted: ``json.loads`` alone accepts ``NaN`` and ``Infinity``, turns
``1e999999`` into ``inf``, spends quadratic time on a 100,000-digit
integer, lets a duplicated key hide a value from one reader but not
another, and raises ``RecursionError`` (not ``ValueError``) on deep
nesting; a value nested just below that limit then overflows the stack of
whichever recursive code meets it next. :func:`loads` refuses all of these
with one exception type, :class:`StrictJSONError`, and returns values
nested at most ``max_depth`` levels, so code that recurses over them later
stays far from the interpreter's limit.

Both the host (:mod:`kernel_agent.record.reader`) and the kernel
(:mod:`kernel_agent.kernel.replay`) import this module, so it must stay
standard-library only.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Containers deeper than this are refused. Far below Python's recursion limit (1000) even for code
#: that spends two or three frames a level (copy.deepcopy, the JSON encoder), yet far above any
#: value a session records in practice.
MAX_DEPTH = 256
#: Integer literals longer than this are refused before conversion (int() is quadratic in digits).
MAX_INT_DIGITS = 1000
#: Float literals longer than this are refused (a float's repr has at most 24 characters).
MAX_FLOAT_CHARS = 400


class StrictJSONError(ValueError):
    """The text is not JSON kernel-agent reads: malformed, or past one of the bounds.

    The message is a predicate ("is nested too deeply ...") to follow the name of what was read.
    """


class MalformedJSONError(StrictJSONError):
    """The text is not JSON at all (a syntax error): what a write cut short by a crash leaves."""


def loads(data: bytes | str, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` as strict JSON, or raise StrictJSONError naming the problem."""
    if max_bytes is not None and len(data) > max_bytes:
        raise StrictJSONError(f"is {len(data):,} bytes, over the limit of {max_bytes:,}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"is not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float,
                           object_pairs_hook=_object)
    except StrictJSONError:
        raise
    except RecursionError:
        # The C scanner counts nesting against the interpreter's recursion limit.
        raise StrictJSONError(f"is nested too deeply (more than {max_depth} levels)") from None
    except ValueError as exc:
        raise MalformedJSONError(f"is not valid JSON ({exc})") from None
    # The UTF-8 decoder never yields a lone surrogate, so only a \u escape can: look further only then.
    check_tree(value, max_depth, strings="\\ud" in text or "\\uD" in text)
    return value


def check_tree(value: Any, max_depth: int = MAX_DEPTH, *, strings: bool = False) -> None:
    """Refuse containers nested deeper than ``max_depth`` (and, with ``strings``, lone surrogates).

    Iterative, so a deep value cannot overflow the stack here.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
            if strings:
                for key in node:
                    _check_string(key)
        elif isinstance(node, list):
            children = node
        else:
            if strings and isinstance(node, str):
                _check_string(node)
            continue
        if depth > max_depth:
            raise StrictJSONError(f"is nested too deeply (more than {max_depth} levels)")
        for child in children:
            if isinstance(child, (dict, list)) or (strings and isinstance(child, str)):
                stack.append((child, depth + 1))


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Hashing, writing or printing such a string fails later, far from here.
        raise StrictJSONError("holds a string with an unpaired surrogate (\\ud800-\\udfff)") from None


def _constant(name: str) -> Any:
    raise StrictJSONError(f"holds {name}, which is not JSON (NaN and infinities are refused)")


def _int(literal: str) -> int:
    if len(literal) > MAX_INT_DIGITS + 1:
        raise StrictJSONError(f"holds an integer of {len(literal):,} digits (the limit is {MAX_INT_DIGITS:,})")
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_FLOAT_CHARS:
        raise StrictJSONError(f"holds a number written with {len(literal):,} characters "
                              f"(the limit is {MAX_FLOAT_CHARS})")
    value = float(literal)
    if not math.isfinite(value):
        raise StrictJSONError(f"holds the number {literal[:40]}, which overflows to infinity")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        counts: dict[str, int] = {}
        for key, _ in pairs:
            counts[key] = counts.get(key, 0) + 1
        duplicate = next(key for key, count in counts.items() if count > 1)
        # Readers disagree on which copy wins; an auditor must not see another value than a viewer.
        raise StrictJSONError(f"has the key {duplicate[:80]!r} twice in one object")
    return result
