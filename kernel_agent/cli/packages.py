"""The command line's package options (``--allow-package``, ``--find-links``, ``--no-index``): a PackagePolicy.

Shared by the commands that run kernels (``run``, ``replay``); see
docs/analysis.md, "Packages and environments".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # loaded when a command runs: `--help` stays fast
    from kernel_agent.packages import PackagePolicy

F = TypeVar("F", bound=Callable[..., Any])


def package_options(command: F) -> F:
    """Add the package options to a click command (they arrive as allow_package, find_links, no_index)."""
    for option in reversed([
        click.option("--allow-package", multiple=True, metavar="SPEC",
                     help="a package the kernel may have installed by the host, e.g. tabulate or 'humanize>=4' "
                          "(repeatable; replay and resume install a recording's packages only if allowed)"),
        click.option("--find-links", multiple=True, metavar="DIR|URL",
                     help="where the host's pip looks for wheels, besides its own configuration (repeatable)"),
        click.option("--no-index", is_flag=True, help="the host's pip uses no package index (only --find-links)"),
    ]):
        command = option(command)
    return command


def package_policy(allow_package: tuple[str, ...], find_links: tuple[str, ...], no_index: bool) -> PackagePolicy | None:
    """The policy the options describe (None: no package was allowed, so none is installed)."""
    if not allow_package:
        return None
    from kernel_agent.packages import PackagePolicy

    return PackagePolicy(allow=list(allow_package), find_links=list(find_links), no_index=no_index)


def package_session_option(allow_package: tuple[str, ...], find_links: tuple[str, ...],
                           no_index: bool) -> dict[str, Any]:
    """The Session option the package options describe (none when no package is allowed)."""
    policy = package_policy(allow_package, find_links, no_index)
    return {} if policy is None else {"package_policy": policy}
