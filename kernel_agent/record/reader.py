"""The one way the host reads recordings: notebooks, journals and side files, all hostile input.

``audit``, ``replay``, ``recover`` and ``Session.resume`` read files that
someone else may have crafted, and that often lie in a tree a sandboxed
kernel could write. Every read goes through here, so every consumer meets
the same guarantees or an :class:`~kernel_agent.errors.UnusableRecordError`
naming the file and the field:

* **Files.** Opened relative to a directory descriptor of the path the
  caller gave, never following a link at the last step (``O_NOFOLLOW``),
  never blocking on a FIFO, refused unless a plain file, and refused past a
  size cap before a byte is read (``KERNEL_AGENT_MAX_RECORD_BYTES``,
  default 256 MiB). Side files are found only next to the notebook the
  caller named (``<stem>.files/<sha256>.json``), by a name checked to be
  64 hex digits, and must hash to that name.
* **JSON.** :mod:`kernel_agent.protocol.strict_json`: no NaN or infinities, bounded
  numbers and nesting, no duplicated keys.
* **Shape.** The fields consumers read have the types they expect (cells a
  list of objects, metadata an object, ``seq`` an integer, ``tool_calls`` a
  list of objects, outputs of the nbformat shapes, ...). Fields nobody reads
  are not checked; fields that are absent stay absent (a consumer decides
  whether it needs them). Nothing here takes a location from a recording:
  the session header's ``workspace`` is history, never a place to use.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel_agent.errors import UnusableRecordError
from kernel_agent.protocol import strict_json
from kernel_agent.record import format as fmt
from kernel_agent.safe_fs import describe_os_error

MAX_BYTES_ENV = "KERNEL_AGENT_MAX_RECORD_BYTES"
DEFAULT_MAX_BYTES = 256 * 1024**2
_HEX64 = re.compile(r"[0-9a-f]{64}")
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def max_bytes() -> int:
    """The size cap of one notebook, journal or side file (the environment may raise it for huge sessions)."""
    value = os.environ.get(MAX_BYTES_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_BYTES


# -- files ------------------------------------------------------------------------------------


def read_bytes(path: Path, what: str = "", *, kind: str = "file") -> bytes:
    """The content of the file the caller named (``what`` names it in errors, default: the path; ``kind`` says
    what it should be, for the error a directory meets)."""
    where = what or str(path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnusableRecordError(f"cannot read {where}: {_reason(exc)}") from None
    try:
        return _read_in(dir_fd, path.name, where, kind)
    finally:
        os.close(dir_fd)


def _read_in(dir_fd: int, name: str, where: str, kind: str = "file") -> bytes:
    if name in ("", ".", "..") or "/" in name:
        raise UnusableRecordError(f"cannot read {where}: not a file name")
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise UnusableRecordError(f"cannot read {where}: {_reason(exc)}") from None
    try:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            raise UnusableRecordError(f"cannot read {where}: it is a directory, not a {kind}")
        if not stat.S_ISREG(status.st_mode):
            raise UnusableRecordError(f"cannot read {where}: it is not a regular file")
        limit = max_bytes()
        if status.st_size > limit:
            raise UnusableRecordError(f"{where} is {status.st_size:,} bytes, over the limit of {limit:,} "
                                      f"(set {MAX_BYTES_ENV} to read larger recordings)")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total) or 1):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise UnusableRecordError(f"{where} is over the limit of {limit:,} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise UnusableRecordError(f"cannot read {where}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _reason(exc: OSError) -> str:
    reason = describe_os_error(exc)
    return reason + " (give the path of the file itself)" if exc.errno == errno.ELOOP else reason


def parse(data: bytes, where: str) -> Any:
    """Strict, bounded JSON (see :mod:`kernel_agent.protocol.strict_json`), or UnusableRecordError."""
    try:
        return strict_json.loads(data, max_bytes=max_bytes())
    except strict_json.StrictJSONError as exc:
        raise UnusableRecordError(f"{where} {exc}") from None


# -- notebooks ----------------------------------------------------------------------------------


def read_notebook(path: Path) -> dict[str, Any]:
    """The notebook at ``path``, parsed and checked (see the module docstring), as recorded: no upgrade."""
    document = parse(read_bytes(path, kind="notebook file"), str(path))
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        raise UnusableRecordError(f"{path} is not a Jupyter notebook (no cells list)")
    check_notebook(document, str(path))
    return document


def check_notebook(document: dict[str, Any], where: str) -> None:
    """Check the fields of a parsed notebook that consumers read."""
    _fields(document, _NOTEBOOK, where)
    for index, cell in enumerate(document.get("cells") or []):
        check_cell(cell, f"{where}: cell {index}")
    metadata = document.get("metadata")
    if isinstance(metadata, dict):
        check_notebook_metadata(metadata, f"{where}: metadata")


def check_notebook_metadata(metadata: dict[str, Any], where: str) -> None:
    """The notebook-level metadata: kernel-agent's part (format, session header, chain, end)."""
    ours = metadata.get(fmt.METADATA_KEY)
    if ours is None:
        return
    where = f"{where}.{fmt.METADATA_KEY}"
    if not isinstance(ours, dict):
        raise UnusableRecordError(f"{where} is {_kind(ours)}, not an object")
    _fields(ours, _OURS, where)
    if isinstance(ours.get("session"), dict):
        check_session_header(ours["session"], f"{where}.session")
    if isinstance(ours.get("chain"), dict):
        _fields(ours["chain"], _CHAIN, f"{where}.chain")


def check_session_header(header: dict[str, Any], where: str) -> None:
    """The session header: its tools (definitions and SDK) and sandbox description."""
    _fields(header, _SESSION, where)
    tools = header.get("tools")
    if isinstance(tools, dict):
        _fields(tools, _TOOLS, f"{where}.tools")
        for number, definition in enumerate(tools.get("definitions") or []):
            _fields(definition, _DEFINITION, f"{where}.tools.definitions[{number}]")
    if isinstance(header.get("sandbox"), dict):
        _fields(header["sandbox"], _SANDBOX, f"{where}.sandbox")


def check_cell(cell: Any, where: str) -> None:
    """One notebook cell: nbformat's shapes, and kernel-agent's metadata when it has some."""
    if not isinstance(cell, dict):
        raise UnusableRecordError(f"{where} is {_kind(cell)}, not an object")
    _fields(cell, _CELL, where)
    for number, output in enumerate(cell.get("outputs") or []):
        _fields(output, _OUTPUT, f"{where}: output {number}")
    metadata = cell.get("metadata")
    if not isinstance(metadata, dict):
        return
    _fields(metadata, _CELL_METADATA, f"{where}: metadata")
    ours = metadata.get(fmt.METADATA_KEY)
    if ours is None:
        return
    where = f"{where}: metadata.{fmt.METADATA_KEY}"
    if not isinstance(ours, dict):
        raise UnusableRecordError(f"{where} is {_kind(ours)}, not an object")
    _fields(ours, _CELL_OURS, where)
    for number, call in enumerate(ours.get("tool_calls") or []):
        _fields(call, _CALL, f"{where}.tool_calls[{number}]")
        if isinstance(call.get("error"), dict):
            _fields(call["error"], _CALL_ERROR, f"{where}.tool_calls[{number}].error")
        for key in ("arguments", "result"):
            _side_file_reference(call.get(key), f"{where}.tool_calls[{number}].{key}")
    _side_file_reference(ours.get("final_answer"), f"{where}.final_answer")


def _side_file_reference(value: Any, where: str) -> None:
    if isinstance(value, dict) and fmt.SIDE_FILE_KEY in value:
        digest, size = value.get(fmt.SIDE_FILE_KEY), value.get("bytes")
        if set(value) != {fmt.SIDE_FILE_KEY, "bytes"} or not isinstance(digest, str) \
                or not _HEX64.fullmatch(digest) or not (isinstance(size, int) and size >= 0):
            raise UnusableRecordError(f"{where} is not a valid side-file reference (expected "
                                      f'{{"{fmt.SIDE_FILE_KEY}": <64 hex digits>, "bytes": <size>}})')


# -- side files -----------------------------------------------------------------------------------


class SideFileMissingError(UnusableRecordError):
    """A side file (or the ``.files`` directory) is not there at all: audit calls that incomplete, not tampered."""


def side_file_bytes(notebook: Path, digest: str, *, verify: bool = True) -> bytes:
    """The bytes of side file ``digest`` of ``notebook``, checked against its name (unless ``verify`` is False).

    Located only as ``<notebook stem>.files/<digest>.json`` next to the
    notebook the caller named, each step opened without following links.
    """
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise UnusableRecordError(f"{digest!r} is not a side-file name (64 lowercase hex digits)")
    directory = f"{notebook.stem}.files"
    where = f"the side file {notebook.parent / directory / digest}.json"
    try:
        parent_fd = os.open(notebook.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnusableRecordError(f"cannot read {where}: {_reason(exc)}") from None
    try:
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=parent_fd)
        except OSError as exc:
            # O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR: say what it really is.
            reason = "is a symbolic link" if _is_link(parent_fd, directory) else _reason(exc)
            missing = exc.errno == errno.ENOENT
            raise (SideFileMissingError if missing else UnusableRecordError)(
                f"cannot read {where}: {directory}/ {reason}") from None
        try:
            if not _exists(dir_fd, f"{digest}.json"):
                raise SideFileMissingError(f"cannot read {where}: it does not exist")
            data = _read_in(dir_fd, f"{digest}.json", where)
        finally:
            os.close(dir_fd)
    finally:
        os.close(parent_fd)
    if verify and hashlib.sha256(data).hexdigest() != digest:
        raise UnusableRecordError(f"{where} does not match its name (changed or corrupt)")
    return data


def read_side_file(notebook: Path, digest: str) -> Any:
    """The value stored in side file ``digest`` of ``notebook`` (see :func:`side_file_bytes`)."""
    return parse(side_file_bytes(notebook, digest), f"the side file {digest}.json")


# -- journals -------------------------------------------------------------------------------------


def read_journal(path: Path) -> list[dict[str, Any]]:
    """All events of a journal, checked: a torn last line (a crash mid-write) is dropped, any other bad line is an
    error."""
    data = read_bytes(path)
    lines = data.split(b"\n")
    complete, torn = lines[:-1], lines[-1]
    events: list[dict[str, Any]] = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            event = strict_json.loads(line)
        except strict_json.MalformedJSONError:
            if number == len(complete) and not torn:
                break  # the last line was cut off after its newline was written: treat as torn
            raise UnusableRecordError(f"{where} is not valid JSON; the journal is corrupt") from None
        except strict_json.StrictJSONError as exc:
            raise UnusableRecordError(f"{where} {exc}") from None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise UnusableRecordError(f"{where} is not a kernel-agent journal event")
        _check_event(event, where)
        events.append(event)
    if not events or events[0].get("event") != "header":
        raise UnusableRecordError(f"{path} is not a kernel-agent journal (no header event)")
    return events


def _check_event(event: dict[str, Any], where: str) -> None:
    kind = event["event"]
    if kind == "cell":
        check_cell(event.get("cell"), f"{where}: cell")
    elif kind in ("header", "end"):
        metadata = event.get("metadata")
        if not isinstance(metadata, dict):
            raise UnusableRecordError(f"{where}: the {kind} event's metadata is {_kind(metadata)}, not an object")
        if kind == "header":
            check_session_header(metadata, f"{where}: header")
        else:
            check_notebook_metadata(metadata, f"{where}: end metadata")


# -- field checks ---------------------------------------------------------------------------------

Check = tuple[Callable[[Any], bool], str]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list_of(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(isinstance(item, kind) for item in value)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


_STR: Check = (lambda v: isinstance(v, str), "a string")
_OPT_STR: Check = (_optional(lambda v: isinstance(v, str)), "a string or null")
_INT: Check = (_is_int, "an integer")
_OPT_INT: Check = (_optional(_is_int), "an integer or null")
_NUMBER: Check = (lambda v: _is_int(v) or isinstance(v, float), "a number")
_OPT_NUMBER: Check = (_optional(lambda v: _is_int(v) or isinstance(v, float)), "a number or null")
_BOOL: Check = (lambda v: isinstance(v, bool), "true or false")
_OPT_BOOL: Check = (_optional(lambda v: isinstance(v, bool)), "true, false or null")
_OBJECT: Check = (lambda v: isinstance(v, dict), "an object")
_OPT_OBJECT: Check = (_optional(lambda v: isinstance(v, dict)), "an object or null")
_OBJECTS: Check = (_list_of(dict), "a list of objects")
_STRINGS: Check = (_list_of(str), "a list of strings")
_TEXT: Check = (lambda v: isinstance(v, str) or _list_of(str)(v), "a string or a list of strings")
_STR_MAP: Check = (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                   "an object of strings")

_NOTEBOOK = {"cells": _OBJECTS, "metadata": _OBJECT, "nbformat": _INT, "nbformat_minor": _INT}
_OURS = {"format": _INT, "session": _OBJECT, "chain": _OBJECT, "ended_at": _STR, "totals": _OBJECT,
         "end": _OBJECT, "recovered": _BOOL}
_CHAIN = {"algorithm": _OPT_STR, "genesis": _OPT_STR, "head": _OPT_STR, "length": _OPT_INT, "hmac": _OPT_STR,
          "seal": _OPT_STR}
_SESSION = {"session_id": _STR, "tools": _OBJECT, "sandbox": _OBJECT, "python_version": _STR, "kernel": _OBJECT}
_TOOLS = {"definitions": _OBJECTS, "sdk_hash": _OPT_STR, "sdk_modules": _STR_MAP}
_DEFINITION = {"name": _STR, "namespace": _OPT_STR, "qualified_name": _OPT_STR, "description": _OPT_STR,
               "input_schema": _OPT_OBJECT, "output_schema": _OPT_OBJECT, "read_only": _OPT_BOOL,
               "destructive": _OPT_BOOL, "source": _OPT_STR, "namespace_description": _OPT_STR,
               "key_order": _OBJECT}
_SANDBOX = {"loosenings": _STRINGS}
_CELL = {"cell_type": _STR, "source": _TEXT, "metadata": _OBJECT, "outputs": _OBJECTS,
         "execution_count": _OPT_INT, "id": _STR}
_CELL_METADATA = {"tags": _STRINGS}
_OUTPUT = {"output_type": _STR, "name": _STR, "text": _TEXT, "data": _OBJECT, "metadata": _OBJECT,
           "ename": _STR, "evalue": _STR, "traceback": _STRINGS, "execution_count": _OPT_INT,
           "transient": _OBJECT}
_CELL_OURS = {"seq": _INT, "kind": _STR, "hash": _STR, "status": _STR, "start_time": _STR, "end_time": _STR,
              "duration": _NUMBER, "timed_out": _BOOL, "kernel_restarted": _BOOL, "state_lost": _BOOL,
              "dropped_output_bytes": _INT, "tool_calls": _OBJECTS, "progress": _OBJECTS,
              "observation": _OBJECT, "usage": _OPT_OBJECT}
_CALL = {"tool": _STR, "status": _STR, "id": _STR, "error": _OPT_OBJECT, "started_at": _OPT_NUMBER,
         "ended_at": _OPT_NUMBER, "cell": _OPT_INT}
_CALL_ERROR = {"kind": _STR, "message": _STR}


_ITEM_KINDS = {"a list of objects": (dict, "an object"), "a list of strings": (str, "a string")}


def _fields(container: dict[str, Any], checks: dict[str, Check], where: str) -> None:
    for key, (check, expected) in checks.items():
        if key not in container or check(container[key]):
            continue
        value = container[key]
        if isinstance(value, list) and expected in _ITEM_KINDS:
            kind, name = _ITEM_KINDS[expected]
            index = next(i for i, item in enumerate(value) if not isinstance(item, kind))
            raise UnusableRecordError(f"{where}: {key}[{index}] is {_kind(value[index])}, not {name}")
        raise UnusableRecordError(f"{where}: {key} is {_kind(value)}, not {expected}")
    if "output_type" in checks and not isinstance(container.get("output_type"), str):
        raise UnusableRecordError(f"{where} has no output_type")
    if "tool" in checks and not isinstance(container.get("tool"), str):
        raise UnusableRecordError(f"{where} has no tool name")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
