"""``kernel-agent skills``: the skills library on this host: list, show, remove and export skills.

Every subcommand takes ``--library DIR`` (default: ``$KERNEL_AGENT_SKILLS_DIR``,
else ``$XDG_DATA_HOME/kernel-agent/skills``). A skill's code is text here,
never imported or run; everything printed from the library (names are
identifiers, but descriptions, provenance and code may come from a library
copied from elsewhere) goes through :func:`terminal_safe`. Errors are one
line on stderr with exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from kernel_agent.cli.errors import input_error
from kernel_agent.cli.terminal_text import terminal_safe
from kernel_agent.errors import SkillError, SkillNotFoundError, UnsafePathError

_LIBRARY_HELP = "the skills library (default: $KERNEL_AGENT_SKILLS_DIR, else $XDG_DATA_HOME/kernel-agent/skills)"


def _library_command(name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Add ``--library DIR`` and report the library's errors in one line with exit status 2."""

    def decorate(function: Callable[..., int]) -> Callable[..., int]:
        @wraps(function)
        def run(*args: Any, **kwargs: Any) -> int:
            try:
                return function(*args, **kwargs)
            except (SkillError, UnsafePathError) as exc:
                return input_error(f"skills {name}", exc)

        return click.option("--library", metavar="DIR", help=_LIBRARY_HELP)(run)

    return decorate


def _open(library: str | None) -> Any:
    from kernel_agent.skills import SkillLibrary

    return SkillLibrary(library)


def _out(text: str) -> None:
    print(terminal_safe(text))


@click.group("skills", short_help="list, show, remove and export the skills kept across sessions")
def command() -> None:
    """The skills library: functions agents wrote in earlier sessions, kept with their provenance."""


@command.command("list", short_help="every skill: name, version, uses, hash, description")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
@_library_command("list")
def list_command(library: str | None, as_json: bool) -> int:
    """List the skills of the library, one a line."""
    store = _open(library)
    skills = store.skills()
    if as_json:
        print(json.dumps([{"name": s.name, "version": s.version, "sha256": s.sha256, "uses": s.uses,
                           "versions": len(s.versions), "description": s.description} for s in skills], indent=2))
        return 0
    if not skills:
        _out(f"no skills in {store.directory}")
        return 0
    width = max(len(s.name) for s in skills)
    _out(f"{'NAME':<{width}}  VERSION  USES  HASH          DESCRIPTION")
    for s in skills:
        _out(f"{s.name:<{width}}  {'v' + str(s.version):<7}  {s.uses:<4}  {s.sha256[:12]}  {s.description}")
    return 0


def _code_text(code: str) -> str:
    """A skill's code as text a person can review: every control, bidirectional or other invisible character
    shown as its escape (``\\x1b``, ``\\u202e``) instead of dropped. Dropping an escape sequence drops its
    payload too, and inside a string literal that payload is code the kernel runs: ``s = "<ESC>]0;"; evil()
    # <BEL>`` must not print as ``s = "``."""
    return "".join(c if c in "\n\t" or c.isprintable() else ascii(c)[1:-1] for c in code)


def _provenance_text(provenance: Any) -> str:
    """The provenance on one line: its fields come from the library's files, and a newline in a notebook path
    must not print as a line of its own."""
    parts = [f"proposed by {provenance.proposed_by}"]
    if provenance.session_id:
        parts.append(f"session {provenance.session_id}")
    if provenance.cell is not None:
        parts.append(f"cell {provenance.cell}")
    if provenance.model:
        parts.append(f"model {provenance.model}")
    if provenance.notebook:
        parts.append(f"notebook {provenance.notebook}")
    return " ".join(", ".join(parts).split())


@command.command("show", short_help="a skill's versions and provenance (--source: its code)")
@click.argument("name")
@click.option("--version", "sha256", metavar="SHA", help="one version, by its hash or a unique prefix of it")
@click.option("--source", "with_source", is_flag=True, help="print the version's source and tests")
@_library_command("show")
def show_command(name: str, sha256: str | None, with_source: bool, library: str | None) -> int:
    """Show a skill: every version with its provenance; with --source, the code of the current one (or --version)."""
    store = _open(library)
    chosen = store.get(name, sha256)  # raises for an unknown name or hash
    # Another process may remove the skill between the two reads: a named error then, not a StopIteration.
    skill = next((s for s in store.skills() if s.name == name), None)
    if skill is None:
        raise SkillNotFoundError(f"skill {name!r} was removed while it was being shown")
    _out(f"{skill.name}: {skill.description}")
    _out(f"import: from skills import {skill.name}; uses: {skill.uses}; current: v{skill.version} {skill.sha256}")
    _out("versions:")
    for info in skill.versions:
        mark = "*" if info.sha256 == skill.sha256 else " "
        _out(f" {mark}v{info.version:<4} {info.sha256[:12]}  {info.created}  uses {info.uses}  "
             f"{_provenance_text(info.provenance)}")
        _out(f"        {info.description}")
    if with_source:
        _out(f"\n# source of {chosen.name} v{chosen.version} (sha256 {chosen.sha256})")
        _out(_code_text(chosen.source.rstrip("\n")))
        if chosen.tests:
            _out(f"\n# tests of {chosen.name} v{chosen.version}")
            _out(_code_text(chosen.tests.rstrip("\n")))
    return 0


@command.command("remove", short_help="remove a skill, or one version of it")
@click.argument("name")
@click.option("--version", "sha256", metavar="SHA", help="remove this version only (a hash or a unique prefix)")
@click.option("--yes", is_flag=True, help="do not ask first")
@_library_command("remove")
def remove_command(name: str, sha256: str | None, yes: bool, library: str | None) -> int:
    """Remove a skill (every version), or one version of it with --version."""
    store = _open(library)
    target = store.get(name, sha256)  # an unknown name or hash fails before anything is asked
    what = f"version v{target.version} ({target.sha256[:12]}) of skill {name}" if sha256 else f"skill {name}"
    if not yes:
        if not sys.stdin.isatty():
            print(f"kernel-agent skills remove: error: pass --yes to remove {what} without being asked",
                  file=sys.stderr)
            return 2
        if not click.confirm(f"Remove {what}?", default=False):
            return 1
    removed = store.remove(name, target.sha256 if sha256 else None)
    _out(f"removed {what}: {len(removed)} version(s)")
    return 0


@command.command("export", short_help="write skills as a plain importable package DIR/skills")
@click.argument("directory", metavar="DIR")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--force", is_flag=True, help="write into a directory that is not empty (files of the same name "
                                            "are replaced)")
@_library_command("export")
def export_command(directory: str, names: tuple[str, ...], force: bool, library: str | None) -> int:
    """Export the current version of every skill (or of NAMEs) as the package DIR/skills."""
    store = _open(library)
    written = store.export(directory, list(names) or None, force=force)
    modules = [p.stem for p in written if p.suffix == ".py" and p.stem != "__init__"]
    _out(f"exported {len(modules)} skill(s) to {written[0].parent if written else directory}: {', '.join(modules)}")
    _out(f"use: PYTHONPATH={directory} python -c 'from skills import NAME'")
    return 0
