"""The skills library on the host: a directory of versioned, content-addressed skills with a small index.

Layout (everything 0600 in a 0700 directory the user owns)::

    index.json               per skill: the current version, every version (hash, number,
                             description, date, provenance, uses), the next version number
    versions/<sha256>.json   one version's source, tests, description and provenance;
                             named by its content hash, written once, never overwritten
    .lock                    the lock every reader and writer takes (fcntl.flock)

Several processes may use one library at once: a writer holds the lock
exclusively while it reads the index, writes a new version file (O_EXCL) and
replaces the index atomically (a temporary file, then ``os.replace``);
readers of code hold it shared; the listing (skills, catalogue, manifest,
search: what a session start asks for, on its event loop) reads the index
alone, which needs no lock since it is only ever replaced whole. A crash
leaves at worst a version file no index names, never an index naming a
missing file.

The directory is the operator's, but it may have been copied from elsewhere:
it must be a real directory (not a link) owned by the user and writable by
no one else, and its files are read as hostile (:mod:`kernel_agent.skills.files`).
Every file is opened through a descriptor of the directory, never following
a link. The host never imports or runs a skill's code: it is text here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from kernel_agent.errors import SkillLibraryError, SkillNotFoundError, SkillRefusedError, UnsafePathError
from kernel_agent.kernel.catalog_search import CatalogEntry
from kernel_agent.safe_fs import open_dir, open_regular, open_subdir, replace_file, write_new_file
from kernel_agent.skills import catalog
from kernel_agent.skills.files import (
    MAX_INDEX_BYTES,
    MAX_SKILLS,
    MAX_VERSION_BYTES,
    MAX_VERSIONS,
    SkillEntry,
    copy_entries,
    read_file,
    read_index,
    read_version,
    write_index,
    write_version,
)
from kernel_agent.skills.versions import (
    MAX_SOURCE_BYTES,
    MAX_TESTS_BYTES,
    Provenance,
    Skill,
    SkillVersion,
    VersionInfo,
    check_description,
    check_name,
    check_text,
    content_hash,
)

SKILLS_DIR_ENV = "KERNEL_AGENT_SKILLS_DIR"
_INDEX = "index.json"
_VERSIONS = "versions"
_LOCK = ".lock"
_NO_INDEX = b""  # the key of a library without an index yet
#: ``SkillLibrary.add(expect_current=...)``'s default: store whatever version of the skill is current.
ANY_CURRENT = "*"
_MIN_PREFIX = 4  # hex digits of a hash a person may type instead of all 64


def default_library_dir() -> Path:
    """``$KERNEL_AGENT_SKILLS_DIR``, else ``$XDG_DATA_HOME/kernel-agent/skills`` (``~/.local/share/...``)."""
    if configured := os.environ.get(SKILLS_DIR_ENV):
        return Path(configured).expanduser().absolute()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser().absolute() / "kernel-agent" / "skills"


class SkillLibrary:
    """A directory of skills: ``add`` versions, ``get`` them back, list, search, count uses, remove, export.

    Every method is synchronous, takes the library's lock for its own short
    work, and is safe with other threads and processes using the same
    directory. Raises SkillLibraryError when the directory or a file in it
    cannot be trusted (nothing is changed then), SkillNotFoundError for an
    unknown name or hash, SkillRefusedError for a name, size or type the
    library does not take. A lock another process holds past
    ``lock_timeout`` seconds is a SkillLibraryError, not a wait without end.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, lock_timeout: float = 30.0) -> None:
        self.directory = Path(directory).expanduser().absolute() if directory is not None else default_library_dir()
        self.lock_timeout = lock_timeout
        # The index's bytes as last checked, and what they hold: the next use reads the file again but checks
        # it field by field only when its bytes changed (1,000 skills take long to check, little to compare).
        self._index_cache: tuple[bytes, dict[str, SkillEntry]] | None = None
        # What sessions are shown, derived from those bytes (keyed by the very bytes object, so by identity):
        # every session start asks for the catalogue and the manifest, on the event loop, and with a library
        # near its bounds building them again each time took seconds.
        self._skills_cache: tuple[bytes, list[Skill]] | None = None
        self._search_cache: tuple[bytes, catalog.SkillSearch] | None = None
        self._entries_cache: tuple[bytes, list[CatalogEntry]] | None = None
        self._manifest_cache: tuple[bytes, int, str] | None = None
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SkillLibraryError(f"cannot create the skills library {self.directory}: {exc.strerror}") from None
        with self._locked(exclusive=False):
            pass  # checks the directory and makes the lock file now, not at the first use

    def __repr__(self) -> str:
        return f"SkillLibrary({str(self.directory)!r})"

    # -- storing -----------------------------------------------------------------------

    def add(self, name: str, source: str, description: str, *, tests: str = "",
            provenance: Provenance | None = None, expect_current: str | None = ANY_CURRENT) -> SkillVersion:
        """Store a version of skill ``name`` and make it the current one; return it.

        Nothing is checked but names, sizes and types (whether the code parses,
        passes its tests and keeps the policy is the session side's business).
        The same name, source and tests give the same hash: no new version is
        made, the existing one becomes current again.

        ``expect_current``: the current version's hash the caller decided on (None: no such skill); when the
        library holds another one by now (under its lock), refused, unless this very version is the current one.
        """
        check_name(name)
        check_text("source", source, MAX_SOURCE_BYTES)
        check_text("tests", tests, MAX_TESTS_BYTES)
        description = check_description(description)
        provenance = provenance if provenance is not None else Provenance()
        if not isinstance(provenance, Provenance):
            raise SkillRefusedError(f"provenance must be a Provenance, not {type(provenance).__name__}")
        sha256 = content_hash(name, source, tests)
        with self._locked(exclusive=True) as dir_fd:
            entries = self._read_index(dir_fd)
            entry = entries.get(name)
            current = entry.current if entry is not None else None
            if expect_current != ANY_CURRENT and current not in (expect_current, sha256):
                raise SkillRefusedError(f"skill {name!r} changed while the proposal was checked (another session "
                                        "stored a version): propose it again")
            known = entry.find(sha256) if entry is not None else None
            if entry is not None and known is not None:
                if entry.current != sha256:
                    entry.current = sha256
                    self._write_index(dir_fd, entries)
                return _version(name, known, source, tests)
            if entry is None and len(entries) >= MAX_SKILLS:
                raise SkillRefusedError(f"the library holds {MAX_SKILLS:,} skills, its limit: remove some first")
            if entry is not None and len(entry.versions) >= MAX_VERSIONS:
                raise SkillRefusedError(f"skill {name!r} has {MAX_VERSIONS:,} versions, the limit: remove old ones")
            info = VersionInfo(sha256=sha256, version=entry.next_version if entry else 1, description=description,
                               created=datetime.now(UTC).isoformat(timespec="seconds"), provenance=provenance)
            version = _version(name, info, source, tests)
            self._store_version(dir_fd, version, info)
            if entry is None:
                entries[name] = SkillEntry(sha256, info.version + 1, [info])
            else:
                entry.versions.append(info)
                entry.current, entry.next_version = sha256, info.version + 1
            self._write_index(dir_fd, entries)
            return version

    def count_use(self, name: str, sha256: str) -> int:
        """Count one use of version ``sha256`` of ``name`` (a session imported it); return the skill's total."""
        with self._locked(exclusive=True) as dir_fd:
            entries = self._read_index(dir_fd)
            entry, info = _lookup(entries, name, sha256)
            entry.versions[entry.versions.index(info)] = VersionInfo(
                info.sha256, info.version, info.description, info.created, info.provenance, info.uses + 1)
            self._write_index(dir_fd, entries)
            return sum(v.uses for v in entry.versions)

    def remove(self, name: str, sha256: str | None = None) -> list[VersionInfo]:
        """Remove one version of ``name`` (``sha256``, or a unique prefix of it), or the whole skill when None;
        return what was removed. When the current version goes, the newest one left becomes current."""
        with self._locked(exclusive=True) as dir_fd:
            entries = self._read_index(dir_fd)
            if sha256 is None:
                entry = entries.pop(name, None)
                if entry is None:
                    raise SkillNotFoundError(f"the library has no skill named {name[:80]!r}")
                removed = list(entry.versions)
            else:
                entry, info = _lookup(entries, name, sha256)
                removed = [info]
                entry.versions.remove(info)
                if not entry.versions:
                    del entries[name]
                elif entry.current == info.sha256:
                    entry.current = max(entry.versions, key=lambda v: v.version).sha256
            # The index first: a crash between the two leaves files no index names, never a name without its file.
            self._write_index(dir_fd, entries)
            versions_fd = self._versions_dir(dir_fd)
            try:
                for info in removed:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{info.sha256}.json", dir_fd=versions_fd)
            finally:
                os.close(versions_fd)
            return removed

    # -- reading -----------------------------------------------------------------------

    def get(self, name: str, sha256: str | None = None) -> SkillVersion:
        """Version ``sha256`` of ``name`` (the full hash or a unique prefix of it), the current one when None."""
        with self._locked(exclusive=False) as dir_fd:
            _, info = _lookup(self._read_index(dir_fd), name, sha256)
            return self._load_version(dir_fd, name, info)

    def version(self, sha256: str) -> SkillVersion:
        """The version whose hash is ``sha256`` (all 64 hex digits), whichever skill it belongs to."""
        with self._locked(exclusive=False) as dir_fd:
            for name, entry in self._read_index(dir_fd).items():
                info = entry.find(sha256)
                if info is not None:
                    return self._load_version(dir_fd, name, info)
        raise SkillNotFoundError(f"the library has no skill version {str(sha256)[:80]!r}")

    def skills(self) -> list[Skill]:
        """Every skill, by name: the current version's description, hash and number, uses, every version."""
        return list(self._listing()[1])

    def _listing(self) -> tuple[bytes, list[Skill]]:
        """The index's bytes as last checked and its skills by name, built again only when the bytes changed."""
        # Without the lock: the index is only ever replaced whole (os.replace), so reading it alone needs none,
        # and this runs on a session's event loop at its start, where waiting out a writer's fsync (or a lock
        # another process keeps, up to lock_timeout) would stall every session the loop runs.
        dir_fd = self._open_directory()
        try:
            key, entries = self._checked_index(dir_fd)
        finally:
            os.close(dir_fd)
        cached = self._skills_cache
        if cached is not None and cached[0] is key:
            return cached
        listing = (key, [_skill(name, entries[name]) for name in sorted(entries)])
        self._skills_cache = listing
        return listing

    def __len__(self) -> int:
        with self._locked(exclusive=False) as dir_fd:
            return len(self._read_index(dir_fd))

    def __contains__(self, name: object) -> bool:
        with self._locked(exclusive=False) as dir_fd:
            return name in self._read_index(dir_fd)

    def versions(self, names: Iterable[str] | None = None) -> list[SkillVersion]:
        """The current version of each skill in ``names`` (every skill when None), code included."""
        with self._locked(exclusive=False) as dir_fd:
            entries = self._read_index(dir_fd)
            chosen = sorted(entries) if names is None else list(dict.fromkeys(names))
            found = [_lookup(entries, name, None) for name in chosen]
            return [self._load_version(dir_fd, name, info) for name, (_, info) in zip(chosen, found, strict=True)]

    # -- what sessions see ----------------------------------------------------------------

    def search(self, query: str, limit: int | None = None) -> list[Skill]:
        """Skills ranked for ``query`` (words of names and descriptions), best first; the index is built again
        only when the library changed."""
        key, skills = self._listing()
        cached = self._search_cache
        if cached is None or cached[0] is not key:
            cached = self._search_cache = (key, catalog.SkillSearch(skills))
        return cached[1].search(query, limit)

    def catalog_entries(self) -> list[CatalogEntry]:
        """One search entry per skill (path ``skills.NAME``, line: how to import it and what it does)."""
        key, skills = self._listing()
        cached = self._entries_cache
        if cached is None or cached[0] is not key:
            cached = self._entries_cache = (key, catalog.catalog_entries(skills))
        return list(cached[1])

    def manifest_lines(self, budget: int = catalog.MANIFEST_BUDGET) -> str:
        """The skills section of a model's manifest, at most ``budget`` characters ("" with no skills)."""
        key, skills = self._listing()
        cached = self._manifest_cache
        if cached is None or cached[0] is not key or cached[1] != budget:
            cached = self._manifest_cache = (key, budget, catalog.manifest_section(skills, budget))
        return cached[2]

    def export(self, target: str | os.PathLike[str], names: Iterable[str] | None = None, *,
               force: bool = False) -> list[Path]:
        """Write the current version of ``names`` (every skill when None) as a plain importable package
        ``target/skills/``; return the files written (see :mod:`kernel_agent.skills.export`)."""
        from kernel_agent.skills.export import export_package

        return export_package(self.versions(names), Path(target), force=force)

    # -- the directory ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[int]:
        """A descriptor of the checked library directory, held under its lock for the block."""
        dir_fd = self._open_directory()
        try:
            try:
                lock_fd = open_regular(dir_fd, _LOCK, os.O_RDWR | os.O_CREAT, mode=0o600)
            except UnsafePathError as exc:
                raise SkillLibraryError(f"{self.directory}/{_LOCK}: {exc}") from None
            try:
                self._lock(lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield dir_fd
            finally:
                os.close(lock_fd)  # releases the lock
        finally:
            os.close(dir_fd)

    def _lock(self, lock_fd: int, operation: int) -> None:
        """Take the lock, polling (writers hold it for milliseconds) until ``lock_timeout`` has passed."""
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.002
        while True:
            try:
                fcntl.flock(lock_fd, operation | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SkillLibraryError(
                        f"the skills library {self.directory} is locked by another process for more than "
                        f"{self.lock_timeout:g} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def _open_directory(self) -> int:
        try:
            dir_fd = open_dir(self.directory)
        except UnsafePathError:
            reason = "it is a symbolic link" if self.directory.is_symlink() else "it cannot be opened as a directory"
            raise SkillLibraryError(f"the skills library {self.directory} cannot be used: {reason}") from None
        status = os.fstat(dir_fd)
        problem = None
        if status.st_uid != os.geteuid():
            problem = f"it belongs to user {status.st_uid}, not to this user ({os.geteuid()})"
        elif status.st_mode & 0o022:
            problem = "others can write it (chmod go-w it)"
        if problem:
            os.close(dir_fd)
            raise SkillLibraryError(f"the skills library {self.directory} cannot be used: {problem}")
        return dir_fd

    def _read_index(self, dir_fd: int) -> dict[str, SkillEntry]:
        """The index's entries (a copy the caller may change), checked again only when its bytes changed."""
        return copy_entries(self._checked_index(dir_fd)[1])

    def _checked_index(self, dir_fd: int) -> tuple[bytes, dict[str, SkillEntry]]:
        """The index's bytes and entries as checked, shared (never change them): the same bytes object for the
        same bytes, so what is derived from them can be kept by identity."""
        where = str(self.directory / _INDEX)
        data = read_file(dir_fd, _INDEX, MAX_INDEX_BYTES, where)
        if data is None:
            return _NO_INDEX, {}
        cached = self._index_cache
        if cached is not None and cached[0] == data:  # the very bytes checked before: no need to check them again
            return cached
        entries = read_index(data, where)
        self._index_cache = (data, entries)
        return data, entries

    def _write_index(self, dir_fd: int, entries: dict[str, SkillEntry]) -> None:
        data = write_index(entries)
        try:
            replace_file(dir_fd, _INDEX, data, mode=0o600)
        except (UnsafePathError, OSError) as exc:
            raise SkillLibraryError(f"cannot write {self.directory / _INDEX}: {exc}") from None
        self._index_cache = (data, copy_entries(entries))

    def _versions_dir(self, dir_fd: int) -> int:
        try:
            versions_fd = open_subdir(dir_fd, _VERSIONS, create=True, mode=0o700)
        except UnsafePathError as exc:
            raise SkillLibraryError(f"{self.directory / _VERSIONS}: {exc}") from None
        # Checked like the library itself: a copied library may bring a versions directory others can write
        # (they could remove or replace version files) or one another user owns.
        status = os.fstat(versions_fd)
        if status.st_uid != os.geteuid() or status.st_mode & 0o022:
            os.close(versions_fd)
            raise SkillLibraryError(f"{self.directory / _VERSIONS} cannot be used: it belongs to another user or "
                                    "others can write it (chown it, chmod go-w it)")
        return versions_fd

    def _store_version(self, dir_fd: int, version: SkillVersion, info: VersionInfo) -> None:
        """Write the version file; one already there (a crash after writing it) must hold the same content."""
        versions_fd = self._versions_dir(dir_fd)
        try:
            write_new_file(versions_fd, f"{version.sha256}.json", write_version(version), mode=0o600, sync=True)
        except UnsafePathError:
            self._load_from(versions_fd, version.name, info)  # raises unless it is this very version
        finally:
            os.close(versions_fd)

    def _load_version(self, dir_fd: int, name: str, info: VersionInfo) -> SkillVersion:
        versions_fd = self._versions_dir(dir_fd)
        try:
            return self._load_from(versions_fd, name, info)
        finally:
            os.close(versions_fd)

    def _load_from(self, versions_fd: int, name: str, info: VersionInfo) -> SkillVersion:
        where = str(self.directory / _VERSIONS / f"{info.sha256}.json")
        data = read_file(versions_fd, f"{info.sha256}.json", MAX_VERSION_BYTES, where)
        if data is None:
            raise SkillLibraryError(f"{where} is missing: the index names a version the library does not hold")
        return read_version(data, info.sha256, info, name)


def _lookup(entries: dict[str, SkillEntry], name: str, sha256: str | None) -> tuple[SkillEntry, VersionInfo]:
    """The entry of ``name`` and its version ``sha256`` (a unique prefix will do; the current one when None)."""
    entry = entries.get(name) if isinstance(name, str) else None
    if entry is None:
        raise SkillNotFoundError(f"the library has no skill named {str(name)[:80]!r}")
    wanted = entry.current if sha256 is None else sha256
    if not isinstance(wanted, str) or len(wanted) < _MIN_PREFIX:
        raise SkillNotFoundError(f"a version is named by its sha256 (at least {_MIN_PREFIX} hex digits of it)")
    found = [v for v in entry.versions if v.sha256.startswith(wanted.lower())]
    if len(found) != 1:
        what = "several versions" if found else "no version"
        raise SkillNotFoundError(f"skill {name!r} has {what} whose hash starts with {wanted[:80]!r}")
    return entry, found[0]


def _version(name: str, info: VersionInfo, source: str, tests: str) -> SkillVersion:
    return SkillVersion(name=name, sha256=info.sha256, version=info.version, source=source, tests=tests,
                        description=info.description, provenance=info.provenance, created=info.created)


def _skill(name: str, entry: SkillEntry) -> Skill:
    current = entry.find(entry.current)
    assert current is not None  # read_index checked it
    return Skill(name=name, description=current.description, sha256=current.sha256, version=current.version,
                 uses=sum(v.uses for v in entry.versions), versions=tuple(entry.versions))
