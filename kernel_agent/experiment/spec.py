"""What an experiment runs: tasks (a prompt, inputs, a checker) and configurations (a model and its limits).

Both are plain frozen dataclasses a user writes in a script. Their names
become directory names under the experiment's directory, so they are checked
here; :func:`fingerprint` describes the spec as JSON, so that a directory
holding runs of another spec is never silently continued.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kernel_agent.agent.result import AgentResult, Pricing
from kernel_agent.errors import ExperimentError, MissingApiKeyError
from kernel_agent.experiment.offline import CacheOnlyModel
from kernel_agent.models.base import Model
from kernel_agent.models.scripted import ScriptedModel

#: Names of tasks and configurations: each is a directory under ``notebooks/``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: A task's input file: a relative path of plain names (no ``..``, no hidden top directory tricks).
_FILE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_MAX_FILES = 1000

#: What a configuration's ``model`` may be: a spec string, a Model (shared by every run: stateless models
#: only), or a factory called per run with (task, repeat), for models with state such as a ScriptedModel.
ModelChoice = str | Model | Callable[["Task", int], Model]
_NO_EXPECTED: Any = object()


def check_name(kind: str, name: object) -> str:
    """``name`` if it can be a directory name (letters, digits, ``._-``; 100 at most), else ExperimentError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in {".", ".."}:
        raise ExperimentError(f"the {kind} name {name!r} cannot be used: it becomes a directory name, so use "
                              "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_file_name(name: object) -> tuple[str, ...]:
    """The parts of a task's input file name (``data/sales.csv``), or ExperimentError."""
    if not isinstance(name, str) or not name or len(name) > 1000:
        raise ExperimentError(f"a task's input file name must be a non-empty relative path, got {name!r}")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or not parts or not all(_FILE_PART.fullmatch(part) for part in parts):
        raise ExperimentError(f"the input file name {name!r} cannot be used: give a relative path of names made "
                              "of letters, digits, '.', '_' or '-' (no '..', no absolute path)")
    return parts


@dataclass(frozen=True)
class Task:
    """One thing to do: ``prompt``, checked by ``check(answer)`` (or ``check(answer, result)``) or ``== expected``.

    ``files`` (name -> text, bytes, or a host path to copy) are put in each
    run's workspace before the model's first step; ``tools`` join the
    configuration's. With neither ``check`` nor ``expected``, a run succeeds
    when it ends with an answer. A checker still running after
    ``check_timeout`` seconds fails its run (its thread is left to finish).
    """

    name: str
    prompt: str
    check: Callable[..., Any] | None = None
    expected: Any = _NO_EXPECTED
    files: Mapping[str, str | bytes | os.PathLike[str]] = field(default_factory=dict)
    tools: Sequence[Any] = ()
    check_timeout: float = 60.0

    def __post_init__(self) -> None:
        check_name("task", self.name)
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ExperimentError(f"task {self.name!r}: the prompt must be a non-empty string")
        if self.check is not None and self.has_expected:
            raise ExperimentError(f"task {self.name!r}: give check= or expected=, not both")
        if self.check is not None and not callable(self.check):
            raise ExperimentError(f"task {self.name!r}: check must be callable")
        if len(self.files) > _MAX_FILES:
            raise ExperimentError(f"task {self.name!r}: more than {_MAX_FILES} input files")
        for name, content in self.files.items():
            check_file_name(name)
            if not isinstance(content, (str, bytes, os.PathLike)):
                raise ExperimentError(f"task {self.name!r}: the input file {name!r} must be str, bytes or a path")

    @property
    def has_expected(self) -> bool:
        """Whether ``expected`` was given (None is a value that can be expected)."""
        return self.expected is not _NO_EXPECTED

    def judge(self, answer: Any, result: AgentResult) -> bool:
        """Whether ``answer`` is right (runs the user's checker: call it off the event loop)."""
        if self.check is not None:
            takes_result = _takes_two(self.check)
            verdict = self.check(answer, result) if takes_result else self.check(answer)
            return bool(verdict)
        if self.has_expected:
            return bool(answer == self.expected)
        return True


def _takes_two(function: Callable[..., Any]) -> bool:
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): called with the answer only
        return False
    return True


@dataclass(frozen=True)
class Configuration:
    """How the tasks are attempted: the model, its instructions, tools and limits (see :class:`~kernel_agent.Agent`)."""

    name: str
    model: ModelChoice
    instructions: str | None = None
    tools: Sequence[Any] = ()
    max_steps: int = 30
    max_tokens: int | None = None
    max_cost: float | None = None
    pricing: Pricing | None = None
    max_seconds: float | None = None
    observation_limit: int = 4000
    cell_timeout: float = 300.0
    session_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("configuration", self.name)
        if not isinstance(self.model, (str, Model)) and not callable(self.model):
            raise ExperimentError(f"configuration {self.name!r}: model must be a spec string, a Model, or a "
                                  "factory called with (task, repeat)")
        if isinstance(self.model, ScriptedModel):
            raise ExperimentError(f"configuration {self.name!r}: a ScriptedModel replies by position, so runs cannot "
                                  "share one: give a factory, model=lambda task, repeat: ScriptedModel([...])")
        for option in ("workspace", "pool", "notebook"):
            if option in self.session_options:
                raise ExperimentError(f"configuration {self.name!r}: session option {option!r} is the "
                                      "experiment's to choose (each run gets a pooled workspace and its own notebook)")

    def model_for(self, task: Task, repeat: int, *, cached: bool = False) -> tuple[Model, bool]:
        """The model for one run, and whether the run owns it (a factory's or a spec's: closed after the run).

        With ``cached`` (the run has a reply cache), a spec whose API key is not set gives a model that
        answers from the cache only (:mod:`.offline`): a shipped cache re-runs without a key.
        """
        from kernel_agent.models import model_from_spec

        if isinstance(self.model, str):
            try:
                return model_from_spec(self.model), True
            except MissingApiKeyError as missing:
                if not cached:
                    raise
                return CacheOnlyModel(self.model, missing), True
        if isinstance(self.model, Model):
            return self.model, False
        made = self.model(task, repeat)
        if not isinstance(made, Model):
            raise ExperimentError(f"configuration {self.name!r}: the model factory returned {type(made).__name__}, "
                                  "not a Model")
        return made, True

    @property
    def model_description(self) -> str:
        """The model as the fingerprint names it: its spec, or the factory's qualified name."""
        if isinstance(self.model, str):
            return self.model
        if isinstance(self.model, Model):
            return str(self.model.spec)
        return f"factory:{getattr(self.model, '__module__', '?')}.{getattr(self.model, '__qualname__', '?')}"


def fingerprint(tasks: Sequence[Task], configurations: Sequence[Configuration], repeats: int) -> dict[str, Any]:
    """The spec as JSON-able data: what must not change for runs in a directory to be continued."""
    return {
        "repeats": repeats,
        "tasks": [{"name": task.name, "prompt": task.prompt, "files": sorted(task.files),
                   "files_sha256": _files_hash(task), "tools": _tool_names(task.tools),
                   "check": _callable_name(task.check),
                   "expected": _bounded_repr(task.expected) if task.has_expected else None,
                   "expected_sha256": _repr_hash(task.expected) if task.has_expected else None} for task in tasks],
        "configurations": [{
            "name": config.name, "model": config.model_description, "instructions": config.instructions,
            "tools": _tool_names(config.tools), "max_steps": config.max_steps, "max_tokens": config.max_tokens,
            "max_cost": config.max_cost, "pricing": _pricing(config.pricing), "max_seconds": config.max_seconds,
            "observation_limit": config.observation_limit, "cell_timeout": config.cell_timeout,
            "session_options": sorted(config.session_options)} for config in configurations],
    }


def _files_hash(task: Task) -> str:
    digest = hashlib.sha256()
    for name in sorted(task.files):
        content = task.files[name]
        digest.update(name.encode() + b"\0")
        if isinstance(content, str):
            digest.update(b"s" + content.encode())
        elif isinstance(content, bytes):
            digest.update(b"b" + content)
        else:  # a host path: named, not read (its content is read when each run starts)
            digest.update(b"p" + os.fsencode(Path(content)))
        digest.update(b"\0")
    return digest.hexdigest()


def _tool_names(tools: Sequence[Any]) -> list[str]:
    return [str(getattr(item, "name", None) or getattr(item, "__name__", None) or type(item).__name__)
            for item in tools]


def _callable_name(function: Callable[..., Any] | None) -> str | None:
    if function is None:
        return None
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', type(function).__name__)}"


def _pricing(pricing: Pricing | None) -> Any:
    if pricing is None:
        return None
    return {key: value for key, value in vars(pricing).items() if not (isinstance(value, float) and math.isnan(value))}


def _repr_hash(value: Any) -> str | None:
    """sha256 of the whole repr: the bounded repr shown above cuts long values (``[1, 2, 3, 4, 5, 6, ...]``), so an
    expected answer changed past the cut kept the fingerprint, and a resume kept runs judged against the old one."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user's value whose repr fails (or is too large an int to print)
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _bounded_repr(value: Any) -> str:
    import reprlib

    return reprlib.repr(value)[:500]
