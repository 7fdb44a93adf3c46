"""The library's two kinds of file, written and read back: ``index.json`` and ``versions/<sha256>.json``.

A library directory may have been copied from elsewhere, so both are read as
hostile: strict JSON within a size cap (:mod:`kernel_agent.protocol.strict_json`),
every field of the expected type and bound, every name an identifier, every
hash a sha256 that the version's content actually gives. Anything else is a
:class:`~kernel_agent.errors.SkillLibraryError` naming the file and the field;
the reader never repairs or rewrites what it refused, so nothing is lost.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Mapping
from typing import Any

from kernel_agent.errors import SkillLibraryError, SkillRefusedError
from kernel_agent.protocol.strict_json import StrictJSONError, loads
from kernel_agent.safe_fs import describe_os_error, read_at_most
from kernel_agent.skills.versions import (
    MAX_DESCRIPTION_CHARS,
    MAX_SOURCE_BYTES,
    MAX_TESTS_BYTES,
    Provenance,
    SkillVersion,
    VersionInfo,
    check_name,
    check_text,
    clean_line,
    content_hash,
    is_sha256,
)

INDEX_FORMAT = "kernel-agent-skills/1"
VERSION_FORMAT = "kernel-agent-skill-version/1"
MAX_SKILLS = 10_000
MAX_VERSIONS = 1_000  # per skill
MAX_INDEX_BYTES = 32 * 1024 * 1024
# A version file holds source and tests as JSON strings: escaping can make them up to six times longer.
MAX_VERSION_BYTES = 6 * (MAX_SOURCE_BYTES + MAX_TESTS_BYTES) + 64 * 1024
_MAX_COUNT = 2**53


class SkillEntry:
    """One skill as the index holds it: the current version's hash, the next version number, every version."""

    __slots__ = ("current", "next_version", "versions")

    def __init__(self, current: str, next_version: int, versions: list[VersionInfo]) -> None:
        self.current = current
        self.next_version = next_version
        self.versions = versions

    def find(self, sha256: str) -> VersionInfo | None:
        return next((v for v in self.versions if v.sha256 == sha256), None)


def copy_entries(entries: Mapping[str, SkillEntry]) -> dict[str, SkillEntry]:
    """A copy a caller may change (the versions are immutable; the lists and entries are not shared)."""
    return {name: SkillEntry(e.current, e.next_version, list(e.versions)) for name, e in entries.items()}


def read_file(dir_fd: int, name: str, max_bytes: int, where: str) -> bytes | None:
    """A regular file's bytes (never through a link, never blocking on a FIFO, never past ``max_bytes``);
    None when it is not there."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SkillLibraryError(f"{where} cannot be read: {describe_os_error(exc)}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise SkillLibraryError(f"{where} is not a regular file")
        if status.st_uid != os.geteuid():  # someone else wrote it into the user's library
            raise SkillLibraryError(f"{where} belongs to user {status.st_uid}, not to this user ({os.geteuid()})")
        if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):  # copied with its mode: others could rewrite it
            raise SkillLibraryError(f"{where} can be written by other users (chmod go-w it)")
        if status.st_size > max_bytes:
            raise SkillLibraryError(f"{where} is {status.st_size:,} bytes, over the limit of {max_bytes:,}")
        data = read_at_most(fd, max_bytes)
    except OSError as exc:
        raise SkillLibraryError(f"{where} cannot be read: {os.strerror(exc.errno or errno.EIO)}") from None
    finally:
        os.close(fd)
    if data is None:
        raise SkillLibraryError(f"{where} grew past the limit of {max_bytes:,} bytes while it was read")
    return data


def _field(where: str, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SkillLibraryError(f"{where}: the field {key!r} is missing or of the wrong type")
    return value


def _count(where: str, data: Mapping[str, Any], key: str, low: int) -> int:
    value = _field(where, data, key, int)
    if not low <= value < _MAX_COUNT:
        raise SkillLibraryError(f"{where}: the field {key!r} is out of range")
    return int(value)


def _parse(where: str, data: bytes, max_bytes: int, expected_format: str) -> dict[str, Any]:
    try:
        document = loads(data, max_bytes=max_bytes, max_depth=16)
    except StrictJSONError as exc:
        raise SkillLibraryError(f"{where} {exc}") from None
    if not isinstance(document, dict) or document.get("format") != expected_format:
        raise SkillLibraryError(f"{where} is not a kernel-agent skills file (format {expected_format!r})")
    return document


def _provenance(where: str, data: object) -> Provenance:
    if not isinstance(data, dict):
        raise SkillLibraryError(f"{where}: the provenance is not an object")
    try:
        return Provenance(session_id=data.get("session_id"), cell=data.get("cell"), notebook=data.get("notebook"),
                          model=data.get("model"), proposed_by=data.get("proposed_by", ""))
    except SkillRefusedError as exc:
        raise SkillLibraryError(f"{where}: {exc}") from None


def _description(where: str, data: Mapping[str, Any]) -> str:
    # Cleaned again on reading: a copied library's description goes to terminals and prompts.
    return clean_line(_field(where, data, "description", str), MAX_DESCRIPTION_CHARS)


def _name(where: str, name: object) -> str:
    try:
        return check_name(name)
    except SkillRefusedError:
        raise SkillLibraryError(f"{where}: {str(name)[:80]!r} is not a skill name") from None


def _version_info(where: str, data: object) -> VersionInfo:
    if not isinstance(data, dict):
        raise SkillLibraryError(f"{where}: a version is not an object")
    sha256 = _field(where, data, "sha256", str)
    if not is_sha256(sha256):
        raise SkillLibraryError(f"{where}: {sha256[:80]!r} is not a sha256")
    created = clean_line(_field(where, data, "created", str), 40)
    return VersionInfo(sha256=sha256, version=_count(where, data, "version", 1),
                       description=_description(where, data), created=created,
                       provenance=_provenance(where, data.get("provenance")), uses=_count(where, data, "uses", 0))


def read_index(data: bytes, where: str = "index.json") -> dict[str, SkillEntry]:
    """The index's skills by name (in the file's order), or SkillLibraryError naming what is wrong."""
    document = _parse(where, data, MAX_INDEX_BYTES, INDEX_FORMAT)
    skills = _field(where, document, "skills", dict)
    if len(skills) > MAX_SKILLS:
        raise SkillLibraryError(f"{where} lists {len(skills):,} skills, over the limit of {MAX_SKILLS:,}")
    entries: dict[str, SkillEntry] = {}
    for name, raw in skills.items():
        at = f"{where}, skill {str(name)[:80]!r}"
        _name(at, name)
        if not isinstance(raw, dict):
            raise SkillLibraryError(f"{at}: not an object")
        listed = _field(at, raw, "versions", list)
        if not 1 <= len(listed) <= MAX_VERSIONS:
            raise SkillLibraryError(f"{at}: between 1 and {MAX_VERSIONS} versions expected")
        versions = [_version_info(at, v) for v in listed]
        if len({v.sha256 for v in versions}) != len(versions) or len({v.version for v in versions}) != len(versions):
            raise SkillLibraryError(f"{at}: a version hash or number appears twice")
        entry = SkillEntry(_field(at, raw, "current", str), _count(at, raw, "next_version", 1), versions)
        if entry.find(entry.current) is None:
            raise SkillLibraryError(f"{at}: the current version is not one of its versions")
        if entry.next_version <= max(v.version for v in versions):
            raise SkillLibraryError(f"{at}: the next version number is not past every version's")
        entries[name] = entry
    return entries


def write_index(entries: Mapping[str, SkillEntry]) -> bytes:
    """The index file's bytes for ``entries`` (names in order; deterministic)."""
    skills = {name: {"current": e.current, "next_version": e.next_version,
                     "versions": [_info_json(v) for v in e.versions]} for name, e in entries.items()}
    return _dump({"format": INDEX_FORMAT, "skills": skills})


def _info_json(info: VersionInfo) -> dict[str, Any]:
    return {"sha256": info.sha256, "version": info.version, "description": info.description,
            "created": info.created, "provenance": info.provenance.to_json(), "uses": info.uses}


def write_version(version: SkillVersion) -> bytes:
    """A version file's bytes: the code and what the index also says of it (so the file stands on its own)."""
    return _dump({"format": VERSION_FORMAT, "name": version.name, "sha256": version.sha256,
                  "source": version.source, "tests": version.tests, "description": version.description,
                  "created": version.created, "provenance": version.provenance.to_json()})


def read_version(data: bytes, sha256: str, info: VersionInfo, name: str) -> SkillVersion:
    """The version stored as ``versions/<sha256>.json``: its name and content must give ``sha256``.

    The number, description, date and provenance are the index's (``info``);
    the file's own copy of them is only for a reader of the file alone.
    """
    where = f"versions/{sha256}.json"
    document = _parse(where, data, MAX_VERSION_BYTES, VERSION_FORMAT)
    source = _field(where, document, "source", str)
    tests = _field(where, document, "tests", str)
    # The file's cap allows for JSON escapes: a copied file may hold code past what ``add`` takes, which
    # would then be served to kernels, printed and exported. The same bounds as on the way in.
    for what, text, limit in (("source", source, MAX_SOURCE_BYTES), ("tests", tests, MAX_TESTS_BYTES)):
        try:
            check_text(what, text, limit)
        except SkillRefusedError as exc:
            raise SkillLibraryError(f"{where}: {exc}") from None
    stored_name = _name(where, document.get("name"))
    if stored_name != name or document.get("sha256") != sha256 or content_hash(name, source, tests) != sha256:
        raise SkillLibraryError(f"{where}: its name and content do not give its hash (the file was changed)")
    return SkillVersion(name=name, sha256=sha256, version=info.version, source=source, tests=tests,
                        description=info.description, provenance=info.provenance, created=info.created)


def _dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
