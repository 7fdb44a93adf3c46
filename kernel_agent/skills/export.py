"""A library's skills written out as a plain Python package anyone can import without kernel-agent.

``TARGET/skills/__init__.py`` (a docstring listing the skills, ``__all__``, and
a module ``__getattr__`` so that ``from skills import NAME`` gives the function
the skill defines under its name, as in a session),
``TARGET/skills/NAME.py`` per skill (its source, byte for byte, so its hash can
be checked) and ``TARGET/skills/provenance.json`` (per skill: version, hash,
description, date, provenance and its tests). The target must be empty (or
``force``); it and the ``skills`` directory are opened without following a
link, and every file is written by descriptor (a link planted at a file's
name is replaced, never followed). Text from the library goes into generated
Python only as ``repr`` literals, so no description can become code.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from kernel_agent.errors import SkillError, UnsafePathError
from kernel_agent.safe_fs import open_dir, open_subdir, replace_file
from kernel_agent.skills.versions import SkillVersion

PACKAGE = "skills"
PROVENANCE_FILE = "provenance.json"


_GETATTR = '''

def __getattr__(name):
    # As in a kernel-agent session: `from skills import NAME` gives what the skill defines under its name
    # (its function), and the module is sys.modules["skills.NAME"]. Imported on first use, not with the package.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no skill {name!r}")
    module = _importlib.import_module(f"{__name__}.{name}")
    value = getattr(module, name, module)
    globals()[name] = value
    return value
'''


def _init_source(versions: list[SkillVersion]) -> str:
    doc = "Skills exported from a kernel-agent skills library: import one with `from skills import NAME`.\n\n"
    doc += "".join(f"{v.name} (v{v.version}, sha256 {v.sha256[:12]}): {v.description}\n" for v in versions)
    names = ", ".join(repr(v.name) for v in versions)
    return f"{doc!r}\n\nimport importlib as _importlib\n\n__all__ = [{names}]\n{_GETATTR}"


def _provenance(versions: list[SkillVersion]) -> bytes:
    records = [{"name": v.name, "version": v.version, "sha256": v.sha256, "description": v.description,
                "created": v.created, "provenance": v.provenance.to_json(), "tests": v.tests} for v in versions]
    return (json.dumps({"format": "kernel-agent-skills-export/1", "skills": records}, indent=1) + "\n").encode()


def _check_owned(fd: int, where: Path) -> None:
    """Refuse a directory another user owns or everyone can write (``/tmp`` itself, a ``skills`` planted there):
    whoever can write it could swap the exported code after we wrote it, and the user (often root) imports it."""
    status = os.fstat(fd)
    if status.st_uid != os.geteuid():
        raise SkillError(f"cannot export into {where}: it belongs to user {status.st_uid}, not to this user "
                         f"({os.geteuid()})")
    if status.st_mode & stat.S_IWOTH:
        raise SkillError(f"cannot export into {where}: every user can write it (export into a directory of yours)")


def export_package(versions: list[SkillVersion], target: Path, *, force: bool = False) -> list[Path]:
    """Write ``versions`` as the package ``target/skills``; return the paths written.

    Raises SkillError when ``target`` is not empty (without ``force``), is a
    link, belongs to another user or is writable by every user (so is a
    ``skills`` directory already in it), or cannot be written.
    """
    try:
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise SkillError(f"cannot create {target}: {exc.strerror}") from None
    try:
        dir_fd = open_dir(target)
    except UnsafePathError:
        raise SkillError(f"cannot export into {target}: it is a symbolic link or not a directory") from None
    written: list[Path] = []
    try:
        _check_owned(dir_fd, target)
        if os.listdir(dir_fd) and not force:
            raise SkillError(f"{target} is not empty: export into a new or empty directory (or pass --force)")
        try:
            package_fd = open_subdir(dir_fd, PACKAGE, create=True, mode=0o755)
        except UnsafePathError as exc:
            raise SkillError(f"cannot export into {target / PACKAGE}: {exc}") from None
        try:
            _check_owned(package_fd, target / PACKAGE)
            files = [("__init__.py", _init_source(versions).encode()), (PROVENANCE_FILE, _provenance(versions))]
            files += [(f"{v.name}.py", v.source.encode("utf-8")) for v in versions]
            for name, data in files:
                replace_file(package_fd, name, data, mode=0o644)
                written.append(target / PACKAGE / name)
        except (UnsafePathError, OSError) as exc:
            raise SkillError(f"cannot write the package in {target / PACKAGE}: {exc}") from None
        finally:
            os.close(package_fd)
    finally:
        os.close(dir_fd)
    return written
