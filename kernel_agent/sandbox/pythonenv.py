"""Another Python environment for a session's kernel: a venv or package directory the host prepared, read-only.

The kernel always runs the host's interpreter with the host's packages
(``bwrap.python_paths``). ``SandboxPolicy(python_env=...)`` adds one more
environment in front of them: a virtual environment (a directory with
``pyvenv.cfg``; its ``site-packages`` is used, never its interpreter) or a
plain directory of packages (``pip install --target DIR``). It is bound
read-only at the same path and put first on the kernel's ``sys.path`` after
the kernel's own runtime is imported (so the environment's packages win for
the model's code, and a different ipykernel or kernel_agent in it cannot
break the kernel).

Refused with :class:`~kernel_agent.errors.PythonEnvironmentError`: a
relative or missing path, a venv of another Python minor version (compiled
extensions would not load), and any overlap with a tree the sandbox can
write (the workspace, the policy's writable paths), through the
environment's own path, a directory its ``.pth`` files add, or a package
linked into its site directory: the kernel could then
plant code that the next kernel given this environment would import.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kernel_agent.errors import PythonEnvironmentError

_VERSION_LINE = re.compile(r"^\s*(?:version_info|version)\s*=\s*(\d+)\.(\d+)", re.MULTILINE)


def site_dirs(env: Path) -> list[Path]:
    """The import directories of ``env`` (a venv's site-packages, or the package directory itself)."""
    if not env.is_absolute():
        raise PythonEnvironmentError(f"python_env {env} must be an absolute path")
    if not env.is_dir():
        raise PythonEnvironmentError(f"python_env {env} is not an existing directory")
    config = env / "pyvenv.cfg"
    if not config.is_file():
        return [env.resolve()]
    match = _VERSION_LINE.search(config.read_text(errors="replace")[:65536])
    if match is None:
        raise PythonEnvironmentError(f"python_env {env}: its pyvenv.cfg names no Python version")
    version = (int(match[1]), int(match[2]))
    if version != sys.version_info[:2]:
        raise PythonEnvironmentError(
            f"python_env {env} is a Python {version[0]}.{version[1]} environment; the kernel runs Python "
            f"{sys.version_info[0]}.{sys.version_info[1]} (the host's), whose compiled extensions differ: make the "
            f"venv with {sys.executable}")
    site = env / "lib" / f"python{version[0]}.{version[1]}" / "site-packages"
    if not site.is_dir():
        raise PythonEnvironmentError(f"python_env {env} has no {site.relative_to(env)} directory")
    return [site.resolve()]


def check_outside(env: Path, directory: Path, writable: Iterable[Path], why: str = "which its .pth files add") -> None:
    """Refuse a directory of ``env`` (itself, one its .pth files add, a link's target) overlapping a writable tree."""
    resolved = directory.resolve()
    for tree in writable:
        tree = tree.resolve()
        if resolved.is_relative_to(tree) or tree.is_relative_to(resolved):
            which = "" if resolved == env.resolve() else f": {directory}, {why},"
            raise PythonEnvironmentError(
                f"python_env {env}{which} overlaps {tree}, which the sandbox can write: a kernel could change "
                "the packages later kernels import. Prepare the environment outside the workspace and writable "
                "paths")


def bound_dirs(env: Path) -> list[Path]:
    """What the sandbox binds read-only for ``env``: the environment and the directories its .pth files add."""
    found = [env.resolve()]
    for site in site_dirs(env):
        for pth in sorted(site.glob("*.pth")):
            for line in pth.read_text(errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "import ", "import\t")):
                    entry = (site / line).resolve()
                    if entry.is_dir():
                        found.append(entry)
    return found


@dataclass(frozen=True)
class EnvDirs:
    """A checked python_env: what goes on the kernel's import path, and what the sandbox binds read-only."""

    imported: tuple[Path, ...] = ()
    bound: tuple[Path, ...] = ()


def checked(env: Path | None, writable: Iterable[Path]) -> EnvDirs:
    """``env`` checked for a launch whose sandbox can write ``writable`` (PythonEnvironmentError if unusable)."""
    if env is None:
        return EnvDirs()
    writable = list(writable)
    bound = bound_dirs(env)
    for directory in bound:
        check_outside(env, directory, writable)
    imported = site_dirs(env)
    for link in linked_entries(imported):
        check_outside(env, link, writable, why="a link among its packages")
    return EnvDirs(tuple(imported), tuple(bound))


def linked_entries(sites: Iterable[Path]) -> list[Path]:
    """The top-level entries of ``sites`` that are symbolic links (a package or module linked in from elsewhere).

    Inside the sandbox a link resolves against the sandbox's own tree, where
    the workspace is bound writable at its own path: a link into it would make
    the kernel's files importable under a package's name. Only the top level
    is looked at (where import names live): a full walk of a large venv costs
    most of a second per launch.
    """
    found: list[Path] = []
    for site in sites:
        with os.scandir(site) as entries:
            found += [Path(entry.path) for entry in entries if entry.is_symlink()]
    return found
