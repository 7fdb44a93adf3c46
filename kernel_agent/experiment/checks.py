"""Declarative answer checks, for experiments written as TOML: equals, contains, regex, number within tolerance.

Each check is a callable object whose ``__qualname__`` spells out what it
checks (``equals(4)``), so the experiment's fingerprint changes when the check
does and a directory of runs checked otherwise is never silently continued.
The answer is a model's: text checks look at its first
:data:`TEXT_LIMIT` characters only, so a huge answer cannot make a check slow.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: characters of an answer's text a check reads
TEXT_LIMIT = 100_000
_NUMBER = re.compile(r"[-+]?(?:\d[\d,_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def answer_text(answer: Any) -> str:
    """The answer as text: itself when a string, else its ``str`` (bounded either way)."""
    text = answer if isinstance(answer, str) else str(answer)
    return text[:TEXT_LIMIT]


def answer_number(answer: Any) -> float | None:
    """The number an answer gives: a number (not a bool), or text that is one number (``"1,234.5"``,
    ``"about 42 km"``); None when there is none or more than one."""
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)):
        return float(answer)
    if not isinstance(answer, str):
        return None
    found = _NUMBER.findall(answer[:TEXT_LIMIT])
    if len(found) != 1:
        return None
    try:
        return float(found[0].replace(",", "").replace("_", ""))
    except ValueError:
        return None


class AnswerCheck:
    """A check named by what it checks (its ``__qualname__``, for the fingerprint)."""

    def __init__(self, description: str) -> None:
        self.__qualname__ = description
        self.__module__ = __name__

    def __call__(self, answer: Any) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.__qualname__


class Equals(AnswerCheck):
    """``answer == value``; text compared without surrounding whitespace (and case, with ``ignore_case``)."""

    def __init__(self, value: Any, *, ignore_case: bool = False) -> None:
        super().__init__(f"equals({value!r}{', ignore_case' if ignore_case else ''})")
        self.value, self.ignore_case = value, ignore_case

    def __call__(self, answer: Any) -> bool:
        if isinstance(self.value, str) and isinstance(answer, str):
            left, right = answer.strip(), self.value.strip()
            return left.casefold() == right.casefold() if self.ignore_case else left == right
        if isinstance(answer, bool) != isinstance(self.value, bool):
            return False  # True is not the answer 1, nor 1 the answer True
        return bool(answer == self.value)


class Contains(AnswerCheck):
    """The answer's text contains ``text`` (case-insensitively with ``ignore_case``)."""

    def __init__(self, text: str, *, ignore_case: bool = False) -> None:
        super().__init__(f"contains({text!r}{', ignore_case' if ignore_case else ''})")
        self.text, self.ignore_case = text, ignore_case

    def __call__(self, answer: Any) -> bool:
        seen = answer_text(answer)
        return self.text.casefold() in seen.casefold() if self.ignore_case else self.text in seen


class Matches(AnswerCheck):
    """The regular expression ``pattern`` is found in the answer's text, in linear time.

    The answer is kernel-made text: Python's backtracking ``re`` would let ``(a+)+$`` against a crafted
    answer hold the GIL (and the whole experiment) for hours, so patterns use pydantic-core's linear
    engine (Rust regex syntax: no look-around or back-references; ValueError names such a pattern).
    """

    def __init__(self, pattern: str, *, ignore_case: bool = False) -> None:
        from kernel_agent.tools.patterns import linear_search

        super().__init__(f"regex({pattern!r}{', ignore_case' if ignore_case else ''})")
        re.compile(pattern)  # re.error naming a syntax error (compiling only: matching is the linear engine's)
        search = linear_search(("(?i)" if ignore_case else "") + pattern)
        if search is None:
            raise ValueError(f"the regex {pattern[:200]!r} cannot be matched in linear time (look-around and "
                             "back-references are not supported, nor patterns over 10,000 characters)")
        self.search = search

    def __call__(self, answer: Any) -> bool:
        return self.search(answer_text(answer))


class Near(AnswerCheck):
    """The answer's number is within ``tolerance`` of ``value`` (absolute; ``relative`` makes it a fraction)."""

    def __init__(self, value: float, *, tolerance: float = 0.0, relative: bool = False) -> None:
        if not all(math.isfinite(x) for x in (value, tolerance)) or tolerance < 0:
            raise ValueError(f"a number check needs a finite value and a tolerance >= 0, got {value}, {tolerance}")
        super().__init__(f"number({value!r}, tolerance={tolerance!r}{', relative' if relative else ''})")
        self.value, self.tolerance, self.relative = float(value), float(tolerance), relative

    def __call__(self, answer: Any) -> bool:
        number = answer_number(answer)
        if number is None or not math.isfinite(number):
            return False
        allowed = self.tolerance * abs(self.value) if self.relative else self.tolerance
        return abs(number - self.value) <= allowed
