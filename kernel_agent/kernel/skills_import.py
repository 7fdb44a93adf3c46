"""``from skills import NAME``: the host's skills library as a read-only package inside the kernel.

A finder first on ``sys.meta_path`` answers for ``skills`` (an empty package)
and ``skills.NAME`` (one skill). A skill's module is made from the source the
host's ``skills.load`` tool returns (name, sha256, version, source), so the
call is recorded with the session and a replay, served from the record,
imports exactly the version the session used. The module is executed here,
in the sandbox, like any cell's code.

``skills.propose(function, description, tests="")`` proposes a function
defined in a cell (its source read with :mod:`inspect`, which sees IPython's
cells); the host checks it (see ``kernel_agent.skills``) and says why when
it refuses. ``tools.skills.propose(name, source, description, tests)`` is the
same with the source as text.

Kernel side: imports only the standard library and :mod:`kernel_agent.kernel.sdk`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import keyword
import linecache
import sys
import textwrap
import types
from collections.abc import Callable
from typing import Any

from kernel_agent.kernel import sdk

PACKAGE = "skills"
LOAD_TOOL = "skills.load"
PROPOSE_TOOL = "skills.propose"
_NO_LIBRARY = ("this session has no skills library: the host gives one with a SkillsSource among the session's "
               "tools (kernel-agent run --skills)")


def _call(tool: str, arguments: dict[str, Any]) -> Any:
    """Call a host tool through whichever bridge client is attached (a replay's too)."""
    return sdk._bridge.call(tool, arguments)


def valid_name(name: object) -> bool:
    """Whether ``name`` can be a skill's name: a plain ASCII identifier, no keyword, not private."""
    return (isinstance(name, str) and name.isascii() and name.isidentifier() and not keyword.iskeyword(name)
            and not name.startswith("_") and len(name) <= 64 and name != "propose")


def load(name: str) -> dict[str, Any]:
    """What the host's library gives for skill ``name`` (ImportError, saying why, when it gives nothing)."""
    if not valid_name(name):
        raise ImportError(f"{name!r} is not a skill name (a plain identifier, not private)", name=f"skills.{name}")
    try:
        loaded = _call(LOAD_TOOL, {"name": name})
    except sdk.UnknownToolError:
        raise ImportError(_NO_LIBRARY, name=f"skills.{name}") from None
    except sdk.ToolError as exc:
        raise ImportError(f"skill {name!r} could not be loaded: {exc}", name=f"skills.{name}") from None
    if not (isinstance(loaded, dict) and loaded.get("name") == name and isinstance(loaded.get("source"), str)
            and isinstance(loaded.get("sha256"), str)):
        raise ImportError(f"the host's answer for skill {name!r} is not a skill", name=f"skills.{name}")
    return loaded


class SkillsPackage(types.ModuleType):
    """The ``skills`` package: ``skills.NAME`` (and ``from skills import NAME``) is what skill NAME defines
    under its own name, not its module (which is ``sys.modules["skills.NAME"]``, with ``__skill__``)."""

    def __setattr__(self, key: str, value: Any) -> None:
        # The import system binds a loaded submodule on its package: bind what it defines under its name.
        if isinstance(value, types.ModuleType) and value.__name__ == f"{PACKAGE}.{key}" and hasattr(value, key):
            value = getattr(value, key)
        super().__setattr__(key, value)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or not valid_name(key):
            raise AttributeError(key)
        importlib.import_module(f"{PACKAGE}.{key}")  # binds the skill here (see __setattr__)
        return self.__dict__[key]


class SkillFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``skills`` and ``skills.NAME``; loads a skill through the host's ``skills.load``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == PACKAGE:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        head, _, name = fullname.partition(".")
        if head == PACKAGE and name and "." not in name:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return SkillsPackage(spec.name) if spec.name == PACKAGE else None  # a skill: the default module

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ == PACKAGE:
            module.__doc__ = ("The host's skills library: `from skills import NAME` imports a skill (the version "
                              "first imported stays for the session); skills.propose(function, description, "
                              "tests='') proposes one.")
            module.propose = propose  # type: ignore[attr-defined]
            return
        name = module.__name__.partition(".")[2]
        loaded = load(name)
        version = loaded.get("version")
        filename = f"<skill {name} v{version} {loaded['sha256'][:12]}>"
        source = loaded["source"]
        # Tracebacks and inspect.getsource show the skill's lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        module.__file__ = filename
        module.__skill__ = {"name": name, "sha256": loaded["sha256"], "version": version}  # type: ignore[attr-defined]
        exec(compile(source, filename, "exec"), module.__dict__)  # the sandbox runs its own code


def propose(function: Callable[..., Any] | type, description: str, tests: str = "", *,
            name: str | None = None) -> Any:
    """Propose ``function`` (or a class) as a skill: its source, a one-line description, optional tests.

    The tests are code run in a fresh kernel where NAME is defined (and
    importable as ``from skills import NAME``): ``assert`` lines or ``test_*`` functions.
    The source must stand on its own (its imports inside it). Returns what the
    host stored (name, sha256, version); raises the host's refusal, with its reason.
    """
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError) as exc:
        raise ValueError(f"the source of {function!r} cannot be read ({exc}): pass it as text to "
                         "tools.skills.propose(name, source, description, tests)") from None
    chosen = name or getattr(function, "__name__", "")
    return _call(PROPOSE_TOOL, {"name": chosen, "source": source, "description": description, "tests": tests})


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once per process)."""
    if not any(isinstance(finder, SkillFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, SkillFinder())
