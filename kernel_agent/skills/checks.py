"""What a proposed skill must pass before its tests run: its name, its size, its syntax, its imports.

These checks are the library's *policy* (what the operator lets skills
import), not confinement: a skill always runs inside a session's sandbox,
which is what confines it. The import walk is static: ``import`` and
``from ... import`` statements, and the names that import or run code
behind its back (``__import__``, ``eval``, ``exec``, ``compile``,
``__builtins__``); a forbidden module reached another way (through an
allowed module's attributes) is the sandbox's to contain.

Each refusal is a :class:`~kernel_agent.errors.SkillRefusedError` whose
message is the reason, sent back to the kernel as it is.
"""

from __future__ import annotations

import ast
import keyword
import math
from dataclasses import dataclass, field

from kernel_agent.errors import SessionOptionError, SkillRefusedError
from kernel_agent.sandbox.policy import SandboxPolicy

#: Modules a skill may not import by default: the host's processes, files, network, interpreter and loaders.
DEFAULT_FORBIDDEN_MODULES = frozenset({
    "os", "sys", "subprocess", "socket", "ctypes", "cffi", "shutil", "importlib", "multiprocessing", "threading",
    "signal", "pty", "fcntl", "resource", "posix", "nt", "builtins", "marshal", "pickle", "shelve", "runpy",
    "code", "codeop", "gc", "inspect", "types", "selectors", "ssl", "http", "urllib", "ftplib", "smtplib",
    "telnetlib", "xmlrpc", "webbrowser", "mmap", "zipimport", "pkgutil", "site", "sysconfig", "kernel_agent",
    "IPython", "ipykernel", "jupyter_client", "zmq", "requests", "httpx",
})
#: Names a skill may not use: they import or run code the import walk cannot see.
DEFAULT_FORBIDDEN_NAMES = frozenset({"__import__", "eval", "exec", "compile", "__builtins__", "breakpoint",
                                     "globals", "vars", "__loader__", "__spec__"})
MAX_NAME_CHARS = 64
MAX_DESCRIPTION_CHARS = 300
RESERVED_NAMES = frozenset({"propose"})  # attributes of the kernel's `skills` package


@dataclass(frozen=True)
class SkillPolicy:
    """What a proposal must satisfy, how its tests run, and how many a session may make.

    ``forbidden_modules`` (top-level names; a dotted entry forbids that
    module and its submodules) and ``forbidden_names`` are checked on the
    source; ``allowed_modules``, when given, is the only list of modules a
    skill may import (besides other skills). The tests run in a fresh kernel
    confined by ``sandbox`` (default: the strict policy: no network) for at
    most ``test_timeout`` seconds; ``max_proposals`` per session, one at a time.
    ``allow_replacing``: whether a proposal may store a new version of a skill
    the library holds (it becomes current for every later session); by default
    such a replacement is refused before its trial, and only new names are taken.
    """

    forbidden_modules: frozenset[str] = DEFAULT_FORBIDDEN_MODULES
    allowed_modules: frozenset[str] | None = None
    forbidden_names: frozenset[str] = DEFAULT_FORBIDDEN_NAMES
    max_source_chars: int = 100_000
    max_tests_chars: int = 100_000
    test_timeout: float = 30.0
    test_output_bytes: int = 64 * 1024
    max_proposals: int = 10
    allow_replacing: bool = False
    sandbox: SandboxPolicy = field(default_factory=SandboxPolicy)

    def __post_init__(self) -> None:
        # Out of range, these fail late and badly: a NaN or negative timeout (a trial never bounded, or refused
        # at once), no room for output, negative caps. A named error here, when the operator makes the policy.
        if not (isinstance(self.test_timeout, (int, float)) and 0 < self.test_timeout < math.inf):
            raise SessionOptionError(f"SkillPolicy.test_timeout must be a finite number of seconds > 0, not "
                                     f"{self.test_timeout!r}")
        for label, value, least in (("test_output_bytes", self.test_output_bytes, 1),
                                    ("max_proposals", self.max_proposals, 0),
                                    ("max_source_chars", self.max_source_chars, 1),
                                    ("max_tests_chars", self.max_tests_chars, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SessionOptionError(f"SkillPolicy.{label} must be a whole number >= {least}, not {value!r}")
        if not isinstance(self.allow_replacing, bool):
            raise SessionOptionError(f"SkillPolicy.allow_replacing must be True or False, not {self.allow_replacing!r}")


def check_name(name: object) -> str:
    """``name`` if it can name a skill (a plain ASCII identifier, not a keyword, not private), else refused."""
    if not isinstance(name, str) or not name:
        raise SkillRefusedError("a skill needs a name: a plain Python identifier")
    shown = repr(name[:MAX_NAME_CHARS])
    if len(name) > MAX_NAME_CHARS:
        raise SkillRefusedError(f"the name {shown}... is longer than {MAX_NAME_CHARS} characters")
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise SkillRefusedError(f"the name {shown} is not a plain ASCII Python identifier (nor a keyword)")
    if name.startswith("_") or name in RESERVED_NAMES:
        raise SkillRefusedError(f"the name {shown} is private or reserved: skills are public names")
    return name


def check_texts(policy: SkillPolicy, source: object, description: object, tests: object) -> None:
    """Types and sizes of the proposal's texts (cheap: done before anything is parsed)."""
    for label, value in (("source", source), ("description", description), ("tests", tests)):
        if not isinstance(value, str):
            raise SkillRefusedError(f"the {label} must be text")
    assert isinstance(source, str) and isinstance(description, str) and isinstance(tests, str)
    if len(source) > policy.max_source_chars:
        raise SkillRefusedError(f"the source is {len(source):,} characters; the limit is {policy.max_source_chars:,}")
    if len(tests) > policy.max_tests_chars:
        raise SkillRefusedError(f"the tests are {len(tests):,} characters; the limit is {policy.max_tests_chars:,}")
    if not description.strip() or "\n" in description.strip() or len(description) > MAX_DESCRIPTION_CHARS:
        raise SkillRefusedError(f"the description must be one line of at most {MAX_DESCRIPTION_CHARS} characters")
    if not source.strip():
        raise SkillRefusedError("the source is empty")


def _parse(text: str, label: str) -> ast.Module:
    try:
        return ast.parse(text, filename=f"<{label}>")
    except SyntaxError as exc:
        raise SkillRefusedError(f"the {label} cannot be parsed: {exc.msg} (line {exc.lineno})") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, nesting past the parser's limits
        raise SkillRefusedError(f"the {label} cannot be parsed: {type(exc).__name__}") from None


def _defines(module: ast.Module, name: str) -> bool:
    """Whether ``name`` is bound at the module's top level (a def, a class or an assignment)."""
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return True
    return False


def _forbidden(policy: SkillPolicy, module: str) -> bool:
    top = module.partition(".")[0]
    if top == "skills":
        return False  # another skill: it was checked when it was stored
    if policy.allowed_modules is not None and top not in policy.allowed_modules \
            and module not in policy.allowed_modules:
        return True
    parts = module.split(".")
    return any(".".join(parts[:end]) in policy.forbidden_modules for end in range(1, len(parts) + 1))


def imports_refusal(policy: SkillPolicy, tree: ast.Module) -> str | None:
    """Why the code's imports or names break ``policy`` (None: they do not)."""
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                return "a relative import: a skill imports other skills as `from skills import NAME`"
            base = node.module or ""
            modules = [base] + ([f"{base}.{alias.name}" for alias in node.names] if base != "skills" else [])
        elif isinstance(node, ast.Name) and node.id in policy.forbidden_names:
            return f"it uses {node.id!r}, which the skill policy forbids (it imports or runs code unseen)"
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr in policy.forbidden_names:
            return f"it uses '.{node.attr}', which the skill policy forbids (it imports or runs code unseen)"
        for module in modules:
            if _forbidden(policy, module):
                return f"it imports {module!r}, which the skill policy forbids"
    return None


def check_code(policy: SkillPolicy, name: str, source: str, tests: str) -> None:
    """The source parses, defines ``name`` at top level and imports nothing forbidden; the tests parse.

    CPU-bound on large input: the caller runs it in a worker thread.
    """
    tree = _parse(source, "source")
    if not _defines(tree, name):
        raise SkillRefusedError(f"the source does not define {name!r} at its top level")
    reason = imports_refusal(policy, tree)
    if reason is not None:
        raise SkillRefusedError(f"the source breaks the skill policy: {reason}")
    if tests.strip():
        _parse(tests, "tests")
