"""The host tool a kernel asks for packages with: ``tools.packages.install`` (``%pip install`` calls it).

A session given a :class:`~kernel_agent.packages.policy.PackagePolicy`
registers it among its tools, so a request travels the tool bridge like any
call (validated, bounded, under the session's tool budget and timeout) and
its recorded result documents the install: name, version, wheel file and
sha256 of every wheel. Replay and resume read them back from there
(:mod:`kernel_agent.packages.recorded`).

Its description never depends on the policy: the tool SDK (and its hash,
which resume checks) is the same whatever is allowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from kernel_agent.errors import PackageError, PackageInstallError
from kernel_agent.packages.installer import InstalledPackage, describe, install_wheels
from kernel_agent.packages.policy import PackagePolicy, parse_requirements
from kernel_agent.protocol.names import PACKAGES_INSTALL, PACKAGES_NAMESPACE
from kernel_agent.sandbox.provisioner import PACKAGES_DIR
from kernel_agent.tools.tool import Tool, tool_from_function

log = logging.getLogger(__name__)


def packages_dir(kernel: Any) -> Path | None:
    """The package directory of a kernel this host launched (None: a kernel elsewhere, or none)."""
    try:
        run_dir = kernel.provisioner.run_dir if kernel is not None else None
    except Exception:  # noqa: BLE001 - a kernel without our provisioner (attached, remote) has no such directory
        return None
    return run_dir / PACKAGES_DIR if isinstance(run_dir, Path) else None


class SessionPackages:
    """Installs what a session's kernel asks for, one request at a time, as its policy allows.

    ``locate`` gives the current kernel's package directory. What was
    installed is kept (name, version, sha256), so that a kernel that replaces
    the session's (a restart: a new run directory) gets the same wheels.
    """

    def __init__(self, policy: PackagePolicy, locate: Callable[[], Path | None]) -> None:
        self.policy = policy
        self.locate = locate
        self.installed: dict[str, InstalledPackage] = {}
        self._lock = asyncio.Lock()

    async def install(self, requirements: Any) -> dict[str, Any]:
        asked = parse_requirements(requirements)
        granted = [await self.policy.grant(requirement) for requirement in asked]
        target = self.locate()
        if target is None or not target.is_dir():
            raise PackageInstallError("packages can be installed only for a kernel launched on this host")
        async with self._lock:
            installed = await install_wheels(self.policy, target, granted)
            self.installed.update((package.name, package) for package in installed)
        return describe(installed)

    async def reinstall(self, target: Path | None) -> None:
        """Install what this session installed so far into ``target`` (a fresh kernel's), pinned by sha256.

        A failure (the wheel source is gone) is logged, not raised: the
        restarted kernel works, and its code can ask again.
        """
        if not self.installed or target is None:
            return
        packages = list(self.installed.values())
        async with self._lock:
            try:
                await install_wheels(self.policy, target, [Requirement(f"{p.name}=={p.version}") for p in packages],
                                     {p.name: p.sha256 for p in packages})
            except PackageError as exc:
                log.warning("kernel-agent: the session's packages could not be installed for its new kernel: %s", exc)

    def tools(self) -> list[Tool]:
        """The ``packages`` tool namespace answered by this object."""
        return package_tools(self.policy, self.locate, self)


def package_tools(policy: PackagePolicy, locate: Callable[[], Path | None],
                  packages: SessionPackages | None = None) -> list[Tool]:
    """The ``packages`` tool namespace for a session (``locate`` gives its kernel's package directory)."""
    packages = packages or SessionPackages(policy, locate)

    async def install(requirements: list[str]) -> dict[str, Any]:
        """Install Python packages (wheels) for this session, if the host's package policy allows them.

        The host installs them into a directory this kernel reads but cannot
        write; import them after the call (``%pip install NAME`` does the same
        and refreshes the import caches). Dependencies are not installed: the
        host's packages are importable, ask for any other by name. Refused
        packages raise PackageNotAllowedError.

        Args:
            requirements: names with optional versions, e.g. ["tabulate", "humanize==4.9.0"]
        """
        return await packages.install(requirements)

    return [tool_from_function(install, name=PACKAGES_INSTALL, namespace=PACKAGES_NAMESPACE)]
