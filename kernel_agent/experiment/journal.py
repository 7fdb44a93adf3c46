"""An experiment's directory: its spec fingerprint, its journal of finished runs, the runs' notebooks.

``experiment.json`` holds the spec (see :func:`~kernel_agent.experiment.spec.fingerprint`);
a directory holding another spec is refused rather than mixed, unless the
caller starts over (the old runs are then moved under ``previous/``).
``runs.jsonl`` gets one line per finished run (its table row), appended,
flushed and fsynced as the run ends, so a killed experiment loses only the
runs that were in flight; they run again next time, their partial notebooks
set aside (``repeat-0.interrupted-1.ipynb``), never overwritten.

Both files may have been edited or crafted by someone else (a shared or
downloaded experiment), so they are read as hostile input: size caps, strict
JSON, every field's type checked; anything else raises
:class:`~kernel_agent.errors.ExperimentError` and changes nothing. A last line
without its newline is what a kill during the append leaves: it is dropped
(that run runs again).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import os
import re
import stat
from collections.abc import Container
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kernel_agent import safe_fs
from kernel_agent.agent.result import StopReason
from kernel_agent.errors import ExperimentError, UnsafePathError
from kernel_agent.protocol import strict_json

FORMAT = "kernel-agent-experiment/1"
SPEC_FILE = "experiment.json"
JOURNAL_FILE = "runs.jsonl"
NOTEBOOKS_DIR = "notebooks"
LOCK_FILE = ".lock"
#: Caps on what is read back: the spec file, the journal, one journal line.
MAX_SPEC_BYTES = 64 * 1024 * 1024
MAX_JOURNAL_BYTES = 512 * 1024 * 1024
MAX_LINE_BYTES = 256 * 1024

RunKey = tuple[str, str, int]  # (configuration, task, repeat)

_Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
_Count = Annotated[int, Field(ge=0, le=10**15)]
_Seconds = Annotated[float, Field(ge=0, le=10**9)]
_Text = Annotated[str, Field(max_length=20_000)]
#: What a row's stop_reason may be: the agent's reasons, or "error" (the run failed outside the agent). Anything
#: else is a crafted row (summaries and the command line list stop reasons, so it would reach the terminal).
_STOP_REASON = "^(" + "|".join(sorted({reason.value for reason in StopReason} | {"error"})) + ")$"
#: started_at: an ISO 8601 time as datetime.isoformat() writes it (and nothing a spreadsheet or terminal acts on)
_ISO_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
_NOTEBOOK = re.compile(r"^(notebooks/[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}/"
                       r"repeat-[0-9]{1,9}\.ipynb)?$")


class RunRow(BaseModel):
    """One journal line: a finished run's table row (its fields: the table's COLUMNS, in order).

    (The table's columns are the reader's contract; this is how the journal
    checks them. A test keeps the two the same.)
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    configuration: _Name
    task: _Name
    repeat: Annotated[int, Field(ge=0, le=10**6)]
    success: bool
    answer: _Text
    checker_error: _Text
    stop_reason: Annotated[str, Field(max_length=100, pattern=_STOP_REASON)]
    error: _Text
    steps: _Count
    cells: _Count
    tool_calls: _Count
    input_tokens: _Count
    output_tokens: _Count
    cache_read_tokens: _Count
    cache_write_tokens: _Count
    total_tokens: _Count
    cost: Annotated[float, Field(ge=0, le=10**12)] | None  # NaN in the table; JSON has none
    seconds: _Seconds
    model_seconds: _Seconds
    model_calls: _Count
    cached_replies: _Count
    notebook: Annotated[str, Field(max_length=400, pattern=_NOTEBOOK.pattern)]
    started_at: Annotated[str, Field(max_length=64, pattern=_ISO_TIME)]

    @model_validator(mode="after")
    def _notebook_is_its_own(self) -> RunRow:
        # A crafted row naming another run's notebook (or one of its own set aside) would send whoever opens the
        # row's record (the summary, the command line, a person) to another run's notebook: it must be its own.
        if self.notebook and self.notebook != notebook_path(self.key):
            raise ValueError(f"the notebook of the run {self.key} is {notebook_path(self.key)!r}, "
                             f"not {self.notebook!r}")
        return self

    @property
    def key(self) -> RunKey:
        return (self.configuration, self.task, self.repeat)

    def table_row(self) -> dict[str, Any]:
        """The row as the table holds it (a missing cost is NaN)."""
        row = self.model_dump()
        row["cost"] = math.nan if self.cost is None else self.cost
        return row


def notebook_path(key: RunKey) -> str:
    """Where the run ``key`` is recorded, relative to the experiment's directory."""
    configuration, task, repeat = key
    return f"{NOTEBOOKS_DIR}/{configuration}/{task}/repeat-{repeat}.ipynb"


def row_json(row: dict[str, Any]) -> bytes:
    """One journal line for a table row (validated: what is written can always be read back)."""
    cost = row.get("cost")
    checked = RunRow.model_validate({**row, "cost": None if cost is None or math.isnan(cost) else float(cost)})
    return json.dumps(checked.model_dump(), ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"


class ExperimentDirectory:
    """The files of one experiment under ``path`` (made if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL_FILE

    def lock(self) -> int:
        """Hold the directory for one running experiment (a second process would run the same runs twice).

        Returns the lock's descriptor (closing it releases the lock); ExperimentError when another holds it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        try:  # O_NONBLOCK: a FIFO planted at .lock must not hang the open
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         0o644)
        except OSError as exc:
            raise ExperimentError(f"{self.path / LOCK_FILE} cannot be used as the experiment's lock: {exc.strerror} "
                                  "(a link or a directory?)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ExperimentError(f"another process is running the experiment in {self.path}; wait for it to "
                                  "finish (or stop it), then run again: finished runs are kept") from None
        return fd

    # -- the spec ----------------------------------------------------------------------

    def prepare(self, name: str, spec: dict[str, Any], *, start_over: bool) -> None:
        """Check (or write) the spec; a different one is refused unless ``start_over`` sets the old runs aside."""
        self.path.mkdir(parents=True, exist_ok=True)
        document = {"format": FORMAT, "name": name, "spec": spec}
        recorded = self.read_spec()
        if recorded is not None and recorded != document:
            if not start_over:
                changed = _difference(recorded, document)
                raise ExperimentError(
                    f"the experiment directory {self.path} holds runs of a different spec ({changed}); use "
                    "another directory, or pass start_over=True to move its runs under previous/ and begin again")
            self._set_aside_everything()
        elif recorded is not None and start_over:
            self._set_aside_everything()
        if recorded != document or start_over:
            _write_atomically(self.path / SPEC_FILE, json.dumps(document, indent=1, ensure_ascii=False).encode())

    def read_spec(self) -> dict[str, Any] | None:
        """``experiment.json`` as recorded (None: none yet), or ExperimentError for an unusable one."""
        where = self.path / SPEC_FILE
        data = _read_capped(where, MAX_SPEC_BYTES)
        if data is None:
            return None
        try:
            document = strict_json.loads(data, max_bytes=MAX_SPEC_BYTES)
        except strict_json.StrictJSONError as exc:
            raise ExperimentError(f"{where} {exc}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(
                document.get("spec"), dict):
            raise ExperimentError(f"{where} is not a kernel-agent experiment spec ({FORMAT})")
        return document

    def _set_aside_everything(self) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        # previous/ made or opened without following a link: a crafted directory whose previous/ links elsewhere
        # would have the host (often root) move the runs wherever it points.
        target = self.folder("previous", stamp)
        for name in (SPEC_FILE, JOURNAL_FILE, NOTEBOOKS_DIR, "results.csv", "results.parquet"):
            if os.path.lexists(self.path / name):
                os.replace(self.path / name, target / name)

    # -- the journal --------------------------------------------------------------------

    def finished(self, wanted: Container[RunKey] | None = None) -> dict[RunKey, RunRow]:
        """The runs the journal says finished (a torn last line dropped), or ExperimentError for a bad journal
        (or one holding a run not in ``wanted``)."""
        return read_journal(self.journal, drop_torn_tail=True, wanted=wanted)

    def append(self, row: dict[str, Any]) -> None:
        """Add a finished run's row, durably (flushed and fsynced before this returns)."""
        line = row_json(row)
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            _check_plain(self.journal, os.fstat(fd))
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- notebooks ------------------------------------------------------------------------

    def notebook(self, key: RunKey) -> Path:
        """Where the run ``key`` is recorded (its directories made)."""
        configuration, task, repeat = key
        return self.folder(NOTEBOOKS_DIR, configuration, task) / f"repeat-{repeat}.ipynb"

    def folder(self, *names: str) -> Path:
        """``path/names...``, each made if missing and each checked to be a real directory, never a link.

        An experiment directory may be crafted (shared, downloaded): a
        ``notebooks/<config>/<task>`` that links to /etc or another user's
        files would have the host, often root, record notebooks there and
        move files out of there. ExperimentError says which one.
        """
        try:
            fd = safe_fs.open_dir(self.path)
            try:
                for name in names:
                    inner = safe_fs.open_subdir(fd, name, create=True)
                    os.close(fd)
                    fd = inner
            finally:
                os.close(fd)
        except UnsafePathError as exc:
            raise ExperimentError(f"the experiment directory {self.path} cannot be used: {exc} (where "
                                  f"{'/'.join(names)} goes: a link, or not a directory)") from None
        return self.path.joinpath(*names)

    def set_aside_partial(self, notebook: Path) -> Path | None:
        """Move an unfinished run's record (notebook, journal, side files) to ``repeat-N.interrupted-K``."""
        stem = notebook.stem
        parts = [notebook, notebook.with_name(f"{stem}.journal.jsonl"), notebook.with_name(f"{stem}.files")]
        if not any(os.path.lexists(part) for part in parts):
            return None
        count = 1
        while any(os.path.lexists(part.with_name(part.name.replace(stem, f"{stem}.interrupted-{count}", 1)))
                  for part in parts):
            count += 1
        for part in parts:
            if os.path.lexists(part):
                os.replace(part, part.with_name(part.name.replace(stem, f"{stem}.interrupted-{count}", 1)))
        return notebook.with_name(f"{stem}.interrupted-{count}.ipynb")


def read_journal(journal: Path, *, drop_torn_tail: bool = False,
                 wanted: Container[RunKey] | None = None) -> dict[RunKey, RunRow]:
    """Rows by run from a ``runs.jsonl``; ExperimentError names the first bad line (or, with ``wanted``, the
    first row of a run not in it).

    With ``drop_torn_tail``, a last line without its newline (a kill during
    the append) is cut off the file, so the next append starts a clean line.
    """
    data = _read_capped(journal, MAX_JOURNAL_BYTES)
    if data is None:
        return {}
    # Lines are read from ``data`` in place (no split copies: one copy of a big journal in memory, not three).
    end = data.rfind(b"\n") + 1  # past the last complete line; what follows is torn
    if end < len(data) and drop_torn_tail:
        fd = os.open(journal, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            _check_plain(journal, os.fstat(fd))  # cutting a hard-linked journal would cut the file it links to
            os.ftruncate(fd, end)
            os.fsync(fd)
        finally:
            os.close(fd)
    rows: dict[RunKey, RunRow] = {}
    start, number = 0, 0
    while start < end:
        stop = data.index(b"\n", start)
        number += 1
        if stop - start > MAX_LINE_BYTES:
            raise ExperimentError(f"{journal}, line {number}, is {stop - start:,} bytes, over the limit of "
                                  f"{MAX_LINE_BYTES:,}")
        line, start = data[start:stop], stop + 1
        if not line.strip():
            continue
        where = f"{journal}, line {number},"
        try:
            row = RunRow.model_validate(strict_json.loads(line, max_bytes=MAX_LINE_BYTES, max_depth=4))
        except strict_json.StrictJSONError as exc:
            raise ExperimentError(f"{where} {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "the line"
            raise ExperimentError(f"{where} is not a run's row: {field}: {first['msg']}") from None
        if row.key in rows:
            raise ExperimentError(f"{where} repeats the run {row.key} (the journal was edited or merged)")
        if wanted is not None and row.key not in wanted:
            # Refused as soon as seen: a crafted journal of a million rows of other runs is not all held first.
            raise ExperimentError(f"{journal} holds runs this spec does not have, e.g. {row.key} (line {number})")
        rows[row.key] = row
    return rows


def _read_capped(path: Path, cap: int) -> bytes | None:
    """A file's bytes (None: absent), never following a last-component link, refused past ``cap``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ExperimentError(f"{path} cannot be read: {exc.strerror} (a link or a special file?)") from None
    try:
        status = os.fstat(fd)
        _check_plain(path, status)
        if status.st_size > cap:
            raise ExperimentError(f"{path} is {status.st_size:,} bytes, over the limit of {cap:,}")
        data = safe_fs.read_at_most(fd, cap)
        if data is None:
            raise ExperimentError(f"{path} is over the limit of {cap:,} bytes")
        return data
    finally:
        os.close(fd)


def _check_plain(path: Path, status: os.stat_result) -> None:
    """A regular file with one link, or ExperimentError: a hard link in a crafted directory is another file (the
    journal's torn-tail cut, or its appends, would change that file; reading it would show it)."""
    if not stat.S_ISREG(status.st_mode):
        raise ExperimentError(f"{path} is not a regular file")
    if status.st_nlink != 1:
        raise ExperimentError(f"{path} has {status.st_nlink} hard links: it is another file too, so it is not used")


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by a new file (random name, O_EXCL, no link followed), then a rename: the directory may be
    crafted, and a temporary file of a predictable name planted as a link would be written through, as root."""
    try:
        fd = safe_fs.open_dir(path.parent)
        try:
            safe_fs.replace_file(fd, path.name, data, mode=0o644)
        finally:
            os.close(fd)
    except UnsafePathError as exc:
        raise ExperimentError(f"{path} cannot be written: {exc}") from None


def _difference(recorded: dict[str, Any], wanted: dict[str, Any]) -> str:
    """Where two spec documents first differ, in words (``configurations[1].max_steps: 5 -> 8``)."""
    def walk(old: Any, new: Any, where: str) -> str | None:
        if isinstance(old, dict) and isinstance(new, dict):
            for key in [*old, *(k for k in new if k not in old)]:
                found = walk(old.get(key), new.get(key), f"{where}.{key}" if where else str(key))
                if found:
                    return found
            return None
        if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            for index, (a, b) in enumerate(zip(old, new, strict=True)):
                found = walk(a, b, f"{where}[{index}]")
                if found:
                    return found
            return None
        if old != new:
            return f"{where}: {_short(old)} -> {_short(new)}"
        return None

    return walk(recorded, wanted, "") or "the spec differs"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 80 else text[:77] + "..."

