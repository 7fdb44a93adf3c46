"""What a skill is, as data: its versions, their provenance, the content hash, and the bounds on each field.

Everything here is plain data and checks: the library (:mod:`kernel_agent.skills.library`)
stores it and the session side proposes it. A skill's code is only ever text
on the host: nothing here parses, compiles or imports it.

The hash of a version is the sha256 of a canonical form of its name, source
and tests (:func:`content_hash`), so the same code under the same name is
the same version wherever it was written, and a version file whose content
does not give its hash was changed after it was stored.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from kernel_agent.errors import SkillRefusedError
from kernel_agent.terminal_text import terminal_safe

MAX_NAME_CHARS = 64
MAX_SOURCE_BYTES = 256 * 1024  # a skill is a function or a few, not a package
MAX_TESTS_BYTES = 256 * 1024
MAX_DESCRIPTION_CHARS = 300  # one line
MAX_FIELD_CHARS = 4_096  # a provenance field (a notebook path, a model spec, a session id)
PROPOSERS = ("kernel", "cli", "api")

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
# The kernel's `skills` package has these attributes of its own: a skill of that name could never be imported
# (`from skills import propose` is the proposing function), yet the manifest would list it.
RESERVED_NAMES = frozenset({"propose"})
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def check_name(name: object) -> str:
    """``name`` when it can be a skill's name (an ASCII identifier, no keyword, no leading underscore,
    which keeps ``__init__`` and private names out of the ``skills`` package); else SkillRefusedError."""
    if not isinstance(name, str):
        raise SkillRefusedError(f"a skill's name must be a string, not {type(name).__name__}")
    if len(name) > MAX_NAME_CHARS or not _NAME.match(name) or keyword.iskeyword(name) or name in RESERVED_NAMES:
        raise SkillRefusedError(
            f"{name[:MAX_NAME_CHARS + 8]!r} cannot name a skill: use an ASCII Python identifier of at most "
            f"{MAX_NAME_CHARS} characters that starts with a letter, is not a keyword and is not reserved "
            f"({', '.join(sorted(RESERVED_NAMES))})")
    return name


def is_sha256(text: object) -> bool:
    """Whether ``text`` is a sha256 in lowercase hex (the only form a version is named by)."""
    return isinstance(text, str) and _SHA256.match(text) is not None


def clean_line(text: str, limit: int = MAX_DESCRIPTION_CHARS) -> str:
    """``text`` as one terminal-safe line (controls and escape sequences removed, whitespace collapsed),
    cut to ``limit`` characters."""
    return " ".join(terminal_safe(text[: limit * 4 + 64]).split())[:limit]


def check_text(what: str, text: object, max_bytes: int) -> str:
    """``text`` when it is a string that encodes to UTF-8 within ``max_bytes``; else SkillRefusedError."""
    if not isinstance(text, str):
        raise SkillRefusedError(f"a skill's {what} must be a string, not {type(text).__name__}")
    if len(text) > max_bytes:  # a character is at least one byte: no need to encode a huge string
        raise SkillRefusedError(f"the skill's {what} is over the limit of {max_bytes:,} bytes")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise SkillRefusedError(f"the skill's {what} holds an unpaired surrogate (not UTF-8 text)") from None
    if size > max_bytes:
        raise SkillRefusedError(f"the skill's {what} is {size:,} bytes, over the limit of {max_bytes:,}")
    return text


def check_description(description: object) -> str:
    """The description as stored: one clean line, not empty, within :data:`MAX_DESCRIPTION_CHARS`."""
    if not isinstance(description, str):
        raise SkillRefusedError(f"a skill's description must be a string, not {type(description).__name__}")
    line = clean_line(description, MAX_DESCRIPTION_CHARS + 1)
    if not line:
        raise SkillRefusedError("a skill needs a one-line description of what it does")
    if len(line) > MAX_DESCRIPTION_CHARS:
        raise SkillRefusedError(f"the description is over {MAX_DESCRIPTION_CHARS} characters: say it in one line")
    return line


def content_hash(name: str, source: str, tests: str) -> str:
    """The sha256 (hex) of a version: of its name, source and tests in one canonical JSON form."""
    canonical = json.dumps({"name": name, "source": source, "tests": tests}, sort_keys=True,
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """Where a version came from: the session and cell that wrote it, its notebook, the model, and who proposed it.

    ``proposed_by`` is ``"kernel"`` (code in a session's cell), ``"cli"`` or ``"api"`` (the host's own call).
    """

    session_id: str | None = None
    cell: int | None = None  # the execution count of the cell that proposed it
    notebook: str | None = None  # the session's notebook path, as text (never opened from here)
    model: str | None = None  # the model spec of the agent that wrote it
    proposed_by: str = "api"

    def __post_init__(self) -> None:
        for name in ("session_id", "notebook", "model"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD_CHARS):
                raise SkillRefusedError(f"provenance {name} must be a string of at most {MAX_FIELD_CHARS} "
                                        "characters or None")
        if self.cell is not None and (isinstance(self.cell, bool) or not isinstance(self.cell, int)
                                      or not 0 <= self.cell < 2**53):
            raise SkillRefusedError("provenance cell must be an execution count (an int >= 0) or None")
        if self.proposed_by not in PROPOSERS:
            raise SkillRefusedError(f"provenance proposed_by must be one of {', '.join(PROPOSERS)}")

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "cell": self.cell, "notebook": self.notebook, "model": self.model,
                "proposed_by": self.proposed_by}


@dataclass(frozen=True)
class VersionInfo:
    """One version as the index lists it (no code): its hash, number, description, date, provenance and uses."""

    sha256: str
    version: int
    description: str
    created: str  # ISO 8601, UTC
    provenance: Provenance
    uses: int = 0


@dataclass(frozen=True)
class SkillVersion:
    """One stored version of a skill, with its code (text: the host never runs it)."""

    name: str
    sha256: str
    version: int
    source: str
    tests: str
    description: str
    provenance: Provenance
    created: str  # ISO 8601, UTC

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class Skill:
    """A skill as listed: its name, the current version's description, hash and number, the uses of every
    version together, and every version (oldest first)."""

    name: str
    description: str
    sha256: str
    version: int
    uses: int
    versions: tuple[VersionInfo, ...] = field(default=())

    @property
    def import_line(self) -> str:
        return f"from skills import {self.name}"
