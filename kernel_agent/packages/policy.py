"""Which packages the host installs for a kernel: the PackagePolicy, and strict parsing of what a kernel asks for.

A request comes from the kernel (``%pip install NAME[==VERSION]``) or from a
recording being replayed or resumed: hostile input either way. It must be a
plain PEP 508 requirement: a name and optional version specifiers, nothing
else (no URL, no path, no extras, no environment marker, no pip option), of
bounded length. Where packages come from (index, local wheel directory) is
the policy's, never the request's.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kernel_agent.errors import PackageInstallError, PackageNotAllowedError
from kernel_agent.sandbox.hostpython import python_command

MAX_REQUIREMENT_CHARS = 200
MAX_REQUIREMENTS = 16

#: Asked for each requirement the allowlist does not cover; True installs it. May be async.
Approval = Callable[[Requirement], "bool | Awaitable[bool]"]


def parse_requirement(text: Any) -> Requirement:
    """A requirement a kernel (or a recording) gave, checked: ``name`` and version specifiers only."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_REQUIREMENT_CHARS:
        raise PackageInstallError(f"a package requirement must be a non-empty string of at most "
                                  f"{MAX_REQUIREMENT_CHARS} characters, like 'tabulate' or 'humanize==4.9.0'")
    try:
        requirement = Requirement(text.strip())
    except InvalidRequirement as exc:
        raise PackageInstallError(f"{text.strip()!r} is not a package requirement: {exc}") from None
    if requirement.url or requirement.marker or requirement.extras:
        raise PackageInstallError(f"{text.strip()!r}: only a name and versions may be asked for (no URL, path, "
                                  "extras or environment marker); the host chooses where packages come from")
    return Requirement(f"{canonicalize_name(requirement.name)}{requirement.specifier}")


def parse_requirements(texts: Any) -> list[Requirement]:
    """A list of requirements, each checked by :func:`parse_requirement`, each name once."""
    if not isinstance(texts, list) or not texts or len(texts) > MAX_REQUIREMENTS:
        raise PackageInstallError(f"ask for 1 to {MAX_REQUIREMENTS} packages at a time")
    parsed = [parse_requirement(text) for text in texts]
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        raise PackageInstallError("each package may be named once per request")
    return parsed


def parse_version(text: Any) -> Version:
    """A version from a recording, checked."""
    if not isinstance(text, str) or len(text) > 64:
        raise PackageInstallError(f"{text!r:.80} is not a package version")
    try:
        return Version(text)
    except InvalidVersion:
        raise PackageInstallError(f"{text!r} is not a package version") from None


@dataclass(frozen=True)
class PackagePolicy:
    """What a session's kernel may have installed, and where the host's pip gets it.

    ``allow``: requirements the host installs without asking (``"tabulate"``:
    any version; ``"humanize>=4,<5"``: only those; a request is narrowed to
    the allowed versions). ``approve``: asked for anything else (sync or
    async; True installs). Neither: every request is refused
    (:class:`~kernel_agent.errors.PackageNotAllowedError`). ``index_url``,
    ``find_links``, ``no_index``: pip's options for where wheels come from
    (default: pip's own configuration on the host; ``isolated=True``
    ignores that configuration, files and ``PIP_`` variables, so only the
    policy's options count). ``timeout`` and
    ``max_output_bytes`` bound each pip run, ``max_wheel_bytes`` every file
    it writes (a download, a cache entry, an installed file: 4 GiB). ``pip``: the command that runs
    pip (default: this Python's ``-I -m pip``; it runs in a private
    directory with a minimal environment). Only wheels are installed, and
    no dependencies (those of the host's environment are importable; ask for
    others by name).
    """

    allow: Sequence[str] = ()
    approve: Approval | None = field(default=None, compare=False)
    index_url: str | None = None
    find_links: Sequence[str] = ()
    no_index: bool = False
    isolated: bool = False
    timeout: float = 300.0
    max_output_bytes: int = 64 * 1024
    max_wheel_bytes: int = 4 * 1024**3
    pip: Sequence[str] | None = None
    allowed: tuple[Requirement, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allow, str) or isinstance(self.find_links, str):
            raise TypeError("PackagePolicy: allow and find_links are lists of strings, not one string")
        object.__setattr__(self, "allowed", tuple(parse_requirement(text) for text in self.allow))
        object.__setattr__(self, "allow", tuple(self.allow))
        # pip runs in a private directory (never the host's working directory): a relative path is the caller's.
        object.__setattr__(self, "find_links", tuple(link if ":" in link or os.path.isabs(link)
                                                     else os.path.abspath(link) for link in self.find_links))
        if self.timeout <= 0 or self.max_output_bytes < 1024 or self.max_wheel_bytes < 1024**2:
            raise ValueError("PackagePolicy: timeout must be positive, max_output_bytes at least 1024 and "
                             "max_wheel_bytes at least 1 MiB")

    def pip_command(self) -> list[str]:
        """The command that runs pip."""
        return list(self.pip) if self.pip else [*python_command(), "-m", "pip"]

    def source_options(self) -> list[str]:
        """pip's options for where packages come from (the policy's alone)."""
        options: list[str] = ["--isolated"] if self.isolated else []
        if self.no_index:
            options.append("--no-index")
        if self.index_url:
            options += ["--index-url", self.index_url]
        for link in self.find_links:
            options += ["--find-links", link]
        return options

    async def grant(self, requirement: Requirement) -> Requirement:
        """What pip is asked for: the request narrowed to the allowed versions; PackageNotAllowedError if refused."""
        for allowed in self.allowed:
            if allowed.name == requirement.name:
                return Requirement(f"{requirement.name}{requirement.specifier & allowed.specifier}")
        if self.approve is not None:
            # A sync approver may ask a person: in a worker thread, so other sessions' work goes on.
            verdict = await (self.approve(requirement) if inspect.iscoroutinefunction(self.approve)
                             else asyncio.to_thread(self.approve, requirement))
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is True:
                return requirement
        raise PackageNotAllowedError(f"{requirement} is not allowed by this session's package policy"
                                     + (f" (it allows: {', '.join(self.allow)})" if self.allow else
                                        " (it allows none)"))

    async def grant_pinned(self, name: str, version: Version) -> None:
        """Allow exactly ``name==version`` (a recording's install), or raise PackageNotAllowedError."""
        requirement = Requirement(f"{name}=={version}")
        granted = await self.grant(requirement)
        if not SpecifierSet(str(granted.specifier)).contains(version, prereleases=True):
            raise PackageNotAllowedError(f"{name}=={version} is not allowed by this package policy "
                                         f"(it allows: {', '.join(self.allow)})")
