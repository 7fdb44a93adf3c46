"""An experiment from a file: a Python file defining ``experiment``, or a TOML spec with declarative checks.

TOML (see docs/experiments.md)::

    [experiment]
    name = "arithmetic"
    repeats = 3

    [[tasks]]
    name = "sum"
    prompt = "What is 2 + 2?"
    check = { equals = 4 }       # or contains / regex / number (+ tolerance) / python = "module:function"

    [[configurations]]
    name = "sonnet"
    model = "anthropic:claude-sonnet-4-5"   # {task} and {repeat} are filled in per run
    max_steps = 10

Relative paths in a TOML spec (the directory, scripted models, input files)
are taken from the spec's own directory; ``MODULE:OBJECT`` names (tools, a
python check) are imported with that directory importable. Anything that is
not the expected shape is an ExperimentSpecError naming the file and the key.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from kernel_agent.errors import ExperimentError, ExperimentSpecError
from kernel_agent.experiment.checks import Contains, Equals, Matches, Near
from kernel_agent.experiment.runner import Experiment
from kernel_agent.experiment.spec import Configuration, Task

_MAX_SPEC_BYTES = 10_000_000
_TOP = {"experiment", "tasks", "configurations"}
_EXPERIMENT = {"name", "repeats", "concurrency", "directory", "tools"}
_TASK = {"name", "prompt", "check", "expected", "files", "tools"}
_CONFIGURATION = {"name", "model", "instructions", "tools", "max_steps", "max_tokens", "max_cost", "price",
                  "max_seconds", "observation_limit", "cell_timeout"}
_CHECKS = {"equals", "contains", "regex", "number", "python"}


def load_experiment(path: str | Path) -> Experiment:
    """The experiment a spec file describes: ``.toml`` read as a spec, anything else run as Python."""
    file = Path(path)
    if not file.is_file():
        raise ExperimentSpecError(f"{file}: no such spec file")
    if file.suffix == ".toml":
        return _from_toml(file)
    return _from_python(file)


def with_options(experiment: Experiment, *, directory: str | Path | None = None, repeats: int | None = None,
                 concurrency: int | None = None, cache: bool = True) -> Experiment:
    """``experiment`` with the command line's choices (a new Experiment: the given one is left as it is)."""
    if directory is None and repeats is None and concurrency is None and cache:
        return experiment
    chosen = Path(directory).resolve() if directory is not None else experiment.directory
    own_cache = experiment.cache is not None and experiment.cache.directory == experiment.directory / "cache"
    return Experiment(
        experiment.name, experiment.tasks, experiment.configurations,
        repeats=experiment.repeats if repeats is None else repeats, directory=chosen,
        concurrency=experiment.concurrency if concurrency is None else concurrency,
        cache=None if not cache else (True if own_cache else experiment.cache),
        pool=experiment.pool, policy=experiment.policy)


def _from_python(file: Path) -> Experiment:
    """Run ``file`` as a module (its directory importable) and take its ``experiment``."""
    name = "kernel_agent_experiment_" + re.sub(r"\W", "_", file.stem)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ExperimentSpecError(f"{file}: cannot be loaded as Python (give a .py file, or a .toml spec)")
    module = importlib.util.module_from_spec(spec)
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ExperimentError as exc:
        raise ExperimentSpecError(f"{file}: {exc}") from None
    except SyntaxError as exc:
        raise ExperimentSpecError(f"{file}: line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - the user's file: whatever it raises is a spec error, said in one line
        raise ExperimentSpecError(f"{file}: running it raised {type(exc).__name__}: {exc}") from None
    experiment = getattr(module, "experiment", None)
    if not isinstance(experiment, Experiment):
        found = "nothing" if experiment is None else f"a {type(experiment).__name__}"
        raise ExperimentSpecError(f"{file}: defines {found} as `experiment`; define "
                                  "`experiment = Experiment(name, tasks, configurations, ...)`")
    return experiment


class _Reader:
    """Typed access to the TOML document, every error naming the file and the key."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.folder = file.resolve().parent

    def fail(self, where: str, message: str) -> ExperimentSpecError:
        return ExperimentSpecError(f"{self.file}: {where}: {message}")

    def table(self, value: object, where: str, keys: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {type(value).__name__}")
        unknown = sorted(set(value) - keys)
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r}; known: {', '.join(sorted(keys))}")
        return value

    def get(self, table: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...],
            default: Any = None, *, required: bool = False) -> Any:
        if key not in table:
            if required:
                raise self.fail(where, f"{key} is required")
            return default
        value = table[key]
        # bool is an int in Python, not in TOML: `max_steps = true` is an error
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(f"{where}.{key}", f"expected {_kind(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(f"{where}.{key}", f"expected {_kind(kind)}, got {type(value).__name__}")
        return value

    def strings(self, table: Mapping[str, Any], key: str, where: str) -> list[str]:
        values = self.get(table, key, where, list, [])
        if not all(isinstance(value, str) for value in values):
            raise self.fail(f"{where}.{key}", "expected a list of strings")
        return list(values)

    def tools(self, table: Mapping[str, Any], where: str) -> list[Any]:
        from kernel_agent.tools.loading import load_tools

        specs = self.strings(table, "tools", where)
        if str(self.folder) not in sys.path:
            sys.path.insert(0, str(self.folder))
        try:
            return load_tools(specs)
        except Exception as exc:  # noqa: BLE001 - importing the user's module: any failure is the spec's
            raise self.fail(f"{where}.tools", f"{type(exc).__name__}: {exc}") from None

    def path(self, text: str, where: str) -> Path:
        """A path the spec names, which must stay inside the spec's own folder (see :func:`inside`)."""
        try:
            return inside(self.folder, text)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None


def inside(folder: Path, text: str) -> Path:
    """``text`` as a path in ``folder``, resolved; ValueError for an absolute path, ``~``, ``..``, or a link
    out of the folder. A TOML spec may come with a repository (next to a shipped reply cache): what it names
    must not make the host, often root, read a file from elsewhere into a workspace and a notebook (input
    files, scripts) or write the experiment anywhere (its directory). The command line's ``--directory`` and
    a Python spec choose freely: they are the operator's own."""
    relative = PurePosixPath(text)
    if not text or relative.is_absolute() or text.startswith("~") or ".." in relative.parts or "\0" in text:
        raise ValueError(f"{text[:200]!r} must be a relative path inside the spec's folder (no '..', '~' or "
                         "absolute path; give --directory on the command line for a directory elsewhere)")
    resolved = (folder / relative).resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise ValueError(f"{text[:200]!r} leads out of the spec's folder (through a link)")
    return resolved


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table", bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _from_toml(file: Path) -> Experiment:
    reader = _Reader(file)
    try:
        if file.stat().st_size > _MAX_SPEC_BYTES:
            raise reader.fail("size", f"larger than {_MAX_SPEC_BYTES:,} bytes")
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentSpecError(f"{file}: not valid TOML: {exc}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ExperimentSpecError(f"{file}: cannot be read: {exc}") from None
    document = reader.table(document, "top level", _TOP)
    head = reader.table(document.get("experiment", {}), "[experiment]", _EXPERIMENT)
    shared_tools = reader.tools(head, "[experiment]")
    tasks_list = reader.get(document, "tasks", "top level", list, required=True)
    configurations_list = reader.get(document, "configurations", "top level", list, required=True)
    try:
        tasks = [_task(reader, item, f"tasks[{index}]") for index, item in enumerate(tasks_list)]
        configurations = [_configuration(reader, item, f"configurations[{index}]", shared_tools)
                          for index, item in enumerate(configurations_list)]
        directory = reader.get(head, "directory", "[experiment]", str)
        name = reader.get(head, "name", "[experiment]", str, file.stem)
        return Experiment(name, tasks, configurations, repeats=reader.get(head, "repeats", "[experiment]", int, 3),
                          concurrency=reader.get(head, "concurrency", "[experiment]", int, 2),
                          directory=None if directory is None else reader.path(directory, "[experiment].directory"))
    except ExperimentSpecError:
        raise
    except ExperimentError as exc:
        raise ExperimentSpecError(f"{file}: {exc}") from None


def _task(reader: _Reader, item: object, where: str) -> Task:
    table = reader.table(item, where, _TASK)
    name = reader.get(table, "name", where, str, required=True)
    where = f"{where} ({name})"
    prompt = reader.get(table, "prompt", where, str, required=True)
    files: dict[str, str | Path] = {}
    for file_name, content in reader.get(table, "files", where, dict, {}).items():
        if isinstance(content, str):
            files[file_name] = content
        elif isinstance(content, dict) and set(content) == {"path"} and isinstance(content["path"], str):
            files[file_name] = reader.path(content["path"], f"{where}.files.{file_name}")
        else:
            raise reader.fail(f"{where}.files.{file_name}", "expected the file's text, or { path = \"...\" }")
    options: dict[str, Any] = {"files": files, "tools": reader.tools(table, where)}
    if "check" in table and "expected" in table:
        raise reader.fail(where, "give check or expected, not both")
    if "check" in table:
        options["check"] = _check(reader, table["check"], f"{where}.check")
    elif "expected" in table:
        options["expected"] = table["expected"]
    return Task(name, prompt, **options)


def _check(reader: _Reader, value: object, where: str) -> Callable[..., Any]:
    table = reader.table(value, where, _CHECKS | {"tolerance", "relative", "ignore_case"})
    kinds = sorted(set(table) & _CHECKS)
    if len(kinds) != 1:
        raise reader.fail(where, f"give exactly one of {', '.join(sorted(_CHECKS))}, got {kinds or 'none'}")
    (kind,) = kinds
    extras = sorted(set(table) - {kind} - ({"tolerance", "relative"} if kind == "number" else {"ignore_case"}
                                          if kind in ("equals", "contains", "regex") else set()))
    if extras:
        raise reader.fail(where, f"{extras[0]} does not go with {kind}")
    ignore_case = reader.get(table, "ignore_case", where, bool, False)
    try:
        if kind == "equals":
            return Equals(table["equals"], ignore_case=ignore_case)
        if kind == "contains":
            return Contains(reader.get(table, "contains", where, str), ignore_case=ignore_case)
        if kind == "regex":
            return Matches(reader.get(table, "regex", where, str), ignore_case=ignore_case)
        if kind == "number":
            return Near(reader.get(table, "number", where, (int, float)),
                        tolerance=reader.get(table, "tolerance", where, (int, float), 0.0),
                        relative=reader.get(table, "relative", where, bool, False))
    except (re.error, ValueError) as exc:
        raise reader.fail(where, str(exc)) from None
    from kernel_agent.tools.loading import load_object

    target = reader.get(table, "python", where, str)
    try:
        loaded = load_object(target)
    except Exception as exc:  # noqa: BLE001 - importing the user's module: any failure is the spec's
        raise reader.fail(f"{where}.python", f"{type(exc).__name__}: {exc}") from None
    if not callable(loaded):
        raise reader.fail(f"{where}.python", f"{target} is not callable")
    return loaded


class _ModelTemplate:
    """``model = "scripted:scripts/{task}.py"``: a spec per run, its ``{task}`` and ``{repeat}`` filled in."""

    def __init__(self, template: str, folder: Path) -> None:
        self.template, self.folder = template, folder
        self.__qualname__ = template  # the fingerprint names the template
        self.__module__ = "spec"

    def __call__(self, task: Task, repeat: int) -> Any:
        return _model(self.template.format(task=task.name, repeat=repeat), self.folder)


def _model(spec: str, folder: Path) -> Any:
    """The model a spec names, a scripted model's relative path taken from the spec file's directory."""
    from kernel_agent.models import model_from_spec

    provider, _, rest = spec.partition(":")
    if provider == "scripted" and rest:
        try:
            spec = f"scripted:{inside(folder, rest)}"
        except ValueError as exc:
            raise ExperimentSpecError(f"model {spec[:200]!r}: {exc}") from None
    return model_from_spec(spec)


def _absolute(spec: str, reader: _Reader) -> str:
    """A scripted spec's relative path made absolute (from the spec file's directory); other specs as they are."""
    provider, _, rest = spec.partition(":")
    return f"scripted:{reader.path(rest, 'model')}" if provider == "scripted" and rest else spec


def _check_model(reader: _Reader, spec: str, where: str) -> None:
    """A provider we know, and a scripted model's file there. A real provider's model is not made here: its
    API key is needed only for replies the reply cache does not have, so an offline re-run needs none."""
    from kernel_agent.models import PROVIDERS

    provider, colon, rest = spec.partition(":")
    if not colon or not rest or provider not in PROVIDERS:
        raise reader.fail(where, f"{spec!r} is not PROVIDER:MODEL with a provider of {', '.join(PROVIDERS)}")
    if provider == "scripted" and "{" not in rest and not Path(rest).is_file():
        raise reader.fail(where, f"no script file at {rest}")


def _configuration(reader: _Reader, item: object, where: str, shared_tools: list[Any]) -> Configuration:
    from kernel_agent.agent.result import Pricing

    table = reader.table(item, where, _CONFIGURATION)
    name = reader.get(table, "name", where, str, required=True)
    where = f"{where} ({name})"
    model_text = reader.get(table, "model", where, str, required=True)
    if re.search(r"\{(?!task\}|repeat\})[^}]*\}", model_text):
        raise reader.fail(f"{where}.model", "only {task} and {repeat} can be filled in")
    model: Any = _ModelTemplate(model_text, reader.folder) if "{" in model_text else _absolute(model_text, reader)
    _check_model(reader, model_text if "{" in model_text else model, f"{where}.model")
    price = reader.get(table, "price", where, list)
    pricing = None
    if price is not None:
        if len(price) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in price):
            raise reader.fail(f"{where}.price", "expected [input, output] in dollars per million tokens")
        pricing = Pricing(input=float(price[0]), output=float(price[1]))
    number = (int, float)
    return Configuration(
        name, model, instructions=reader.get(table, "instructions", where, str),
        tools=[*shared_tools, *reader.tools(table, where)],
        max_steps=reader.get(table, "max_steps", where, int, 30),
        max_tokens=reader.get(table, "max_tokens", where, int),
        max_cost=reader.get(table, "max_cost", where, number), pricing=pricing,
        max_seconds=reader.get(table, "max_seconds", where, number),
        observation_limit=reader.get(table, "observation_limit", where, int, 4000),
        cell_timeout=reader.get(table, "cell_timeout", where, number, 300.0))
