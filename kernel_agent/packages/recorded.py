"""A recording's package installs, installed again for a replay or a resume: the same files, if allowed.

The installs are read from the recorded results of ``packages.install``
calls (see :mod:`kernel_agent.packages.tool`). A notebook is hostile input:
every name, version and hash is checked, and nothing is installed because
a notebook says so. The replayer's or resumer's own
:class:`~kernel_agent.packages.policy.PackagePolicy` must allow each one
(exactly that version), else :class:`~kernel_agent.errors.PackageNotAllowedError`
before any kernel starts. Allowed installs are fetched pinned to their
recorded sha256 (``--require-hashes``) and installed before the recorded
cells run, so the cells import what the recorded session imported.

A package installed twice in one recording (an upgrade) is installed once,
at its last recorded version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import Requirement

from kernel_agent.errors import PackageInstallError, PackageNotAllowedError
from kernel_agent.packages.installer import InstalledPackage, install_wheels
from kernel_agent.packages.policy import PackagePolicy, parse_requirement, parse_version
from kernel_agent.packages.tool import package_tools
from kernel_agent.protocol import wire
from kernel_agent.protocol.names import PACKAGES_INSTALL, PACKAGES_NAMESPACE
from kernel_agent.record.recording import RecordedCell, Recording

_SHA256 = re.compile(r"[0-9a-f]{64}")
_TOOL = f"{PACKAGES_NAMESPACE}.{PACKAGES_INSTALL}"


class HasPackagesDir(Protocol):
    """What a session offers for installs (Session satisfies it)."""

    @property
    def packages_dir(self) -> Path | None: ...


@dataclass(frozen=True)
class RecordedInstall:
    name: str
    version: str
    sha256: str


def recorded_installs(cells: Iterable[RecordedCell]) -> list[RecordedInstall]:
    """The installs a recording made, checked (PackageInstallError names the cell of a malformed one)."""
    found: dict[str, RecordedInstall] = {}
    for cell in cells:
        for call in cell.calls:
            if call.get("tool") != _TOOL or call.get("status") != "ok":
                continue
            try:  # the recorded (wire-encoded) result, decoded as a replayed call's would be
                result = wire.decode(call.get("result"), [])
            except wire.DecodeError as exc:
                raise PackageInstallError(f"cell {cell.index}: the recorded {_TOOL} result is unusable: {exc}") \
                    from None
            items = result.get("installed") if isinstance(result, dict) else None
            if not isinstance(items, list) or len(items) > 64:
                raise PackageInstallError(f"cell {cell.index}: the recorded {_TOOL} result is not a list of installs")
            for item in items:
                if not isinstance(item, dict):
                    raise PackageInstallError(f"cell {cell.index}: a recorded install is not an object")
                parsed = parse_requirement(item.get("name"))
                if parsed.specifier:
                    raise PackageInstallError(f"cell {cell.index}: a recorded package name holds a version")
                name = parsed.name
                version = str(parse_version(item.get("version")))
                digest = item.get("sha256")
                if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                    raise PackageInstallError(f"cell {cell.index}: the recorded sha256 of {name} is not a sha256")
                found.pop(name, None)  # a later install of the same package replaces the earlier one
                found[name] = RecordedInstall(name, version, digest)
    return list(found.values())


class RecordedPackages:
    """A recording's installs, allowed by the caller's policy: checked before a kernel starts, installed after."""

    def __init__(self, policy: PackagePolicy | None, installs: Sequence[RecordedInstall], *,
                 had_tool: bool = False) -> None:
        self.policy = policy
        self.installs = list(installs)
        self.had_tool = had_tool  # the recorded session had the packages tool (its SDK has it)

    @classmethod
    async def check(cls, recording: Recording, policy: PackagePolicy | None) -> RecordedPackages:
        """The recording's installs if ``policy`` allows every one; else PackageNotAllowedError naming them."""
        installs = recorded_installs(recording.cells)
        if installs and policy is None:
            raise PackageNotAllowedError(
                "the recording installed " + ", ".join(f"{i.name}=={i.version}" for i in installs)
                + "; nothing is installed because a notebook asks: pass a package policy that allows them "
                "(package_policy=PackagePolicy(allow=[...]))")
        for install in installs:
            assert policy is not None
            await policy.grant_pinned(install.name, parse_version(install.version))
        had_tool = any(d.get("qualified_name") == _TOOL for d in recording.definitions)
        return cls(policy, installs, had_tool=had_tool)

    async def install(self, session: HasPackagesDir) -> list[InstalledPackage]:
        """Install the recorded wheels (pinned by hash) into the session's package directory."""
        if not self.installs:
            return []
        assert self.policy is not None
        target = session.packages_dir
        if target is None:
            raise PackageInstallError("the recording's packages can be installed only for a kernel launched on "
                                      "this host")
        requirements = [Requirement(f"{i.name}=={i.version}") for i in self.installs]
        return await install_wheels(self.policy, target, requirements, {i.name: i.sha256 for i in self.installs})

    def live_tools(self, tools: Any, session: HasPackagesDir) -> list[Any]:
        """The session's live tools after the recorded cells, with the packages tool if the recording had it.

        Without a policy of the caller's, that tool refuses every request
        (the kernel keeps the SDK it was recorded with, and nothing new is
        installed unless the caller says so).
        """
        items = list(tools) if isinstance(tools, (list, tuple, set)) else [tools] if tools else []
        if self.policy is None and not self.had_tool:
            return items
        return [*items, *package_tools(self.policy or PackagePolicy(), lambda: session.packages_dir)]
