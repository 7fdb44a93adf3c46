"""Detach a session from its kernel on a server, and attach a later process to it: one recording throughout.

A kernel on Jupyter Server (or a gateway) outlives the host process that
started it. :func:`detach_session` stops talking to it and records a
``detached`` note (when, by whom, which kernel) as the last cell of the
record, which stays unsealed. :func:`attach_session`, in the same process or
another one later, checks that record before touching the kernel: its chain,
this host's keys, that it ends with the detach of *that* kernel, and that
the tools it is given are the ones recorded (the SDK the kernel holds must
answer to them). It then connects by kernel id, installs the bridge again
and appends an ``attached`` note (when, by whom, how long the gap was), so
the chain runs unbroken across the gap and ``kernel-agent audit`` verifies
the whole. Nothing is taken from the notebook but what is compared: the
server and the kernel id are the caller's.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kernel_agent._version import __version__
from kernel_agent.errors import RecordingError
from kernel_agent.record import format as fmt
from kernel_agent.record.format import AUDIT_KEY_ENV
from kernel_agent.record.recorder import Recorder
from kernel_agent.record.signing import SIGNING_KEY_ENV, load_private_key

#: The kinds of the notes a detach and an attach leave in the record.
DETACHED, ATTACHED = "detached", "attached"


@dataclass(frozen=True)
class DetachedSession:
    """What a later process needs to attach again: the kernel's id, its server's URL and the notebook."""

    kernel_id: str
    server_url: str
    notebook: Path | None


def who() -> dict[str, Any]:
    """Who is acting, as this host knows it (recorded with a detach or an attach)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid(), "kernel_agent_version": __version__}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def record_detach(recorder: Recorder, backend: dict[str, Any], totals: dict[str, Any]) -> None:
    """The detach note, then the record's files are closed unsealed (the session is not over)."""
    kernel_id = backend.get("kernel_id")
    text = (f"*Detached from kernel `{kernel_id}` on {backend.get('url')}; the kernel keeps running. "
            "A later process may attach to it and continue this record.*")
    recorder.record_note(DETACHED, text, {"at": _now(), "by": who(), "kernel": backend, "totals": totals})
    recorder.abandon()


class AttachableSession(Protocol):
    """What attaching needs of a session (Session satisfies it; this module never imports Session)."""

    def attach_to(self, kernel_id: str, *, sdk_hash: str | None) -> None: ...

    async def start(self) -> Any: ...

    async def detach(self) -> Any: ...

    def record_to(self, notebook: str | os.PathLike[str]) -> None: ...

    def attach_recorder(self, recorder: Recorder) -> None: ...

    @property
    def recorder(self) -> Recorder | None: ...


S = TypeVar("S", bound=AttachableSession)


@dataclass(frozen=True)
class _Detach:
    at: dt.datetime
    by: dict[str, Any]
    sdk_hash: str | None


def detach_of(notebook: Path, kernel_id: str, ours: dict[str, Any], cells: list[dict[str, Any]]) -> _Detach:
    """What a verified record says of its detach, once it proved attachable to ``kernel_id`` (else RecordingError).

    Called under the record's lock, with the chain and keys already checked.
    """
    if ours.get("end") is not None:
        raise RecordingError(f"{notebook}: the session was closed and its record sealed; there is nothing to "
                             "attach to (Session.resume rebuilds a closed session in a new kernel)")
    last = (cells[-1].get("metadata") or {}).get(fmt.METADATA_KEY) if cells else None
    if not isinstance(last, dict) or last.get("kind") != DETACHED:
        raise RecordingError(f"{notebook}: the record does not end with a detach, so its session did not leave "
                             "its kernel to be attached (it may still be running, or its host died: "
                             "`kernel-agent audit` says how it ended)")
    kernel = last.get("kernel")
    recorded_id = kernel.get("kernel_id") if isinstance(kernel, dict) else None
    if recorded_id != kernel_id:
        raise RecordingError(f"{notebook}: its session detached from kernel {recorded_id!r}, not {kernel_id!r}")
    tools = ours["session"].get("tools")
    recorded_hash = tools.get("sdk_hash") if isinstance(tools, dict) else None
    by = last.get("by")
    return _Detach(_detach_time(notebook, last.get("at")), by if isinstance(by, dict) else {},
                   recorded_hash if isinstance(recorded_hash, str) else None)


def _detach_time(notebook: Path, value: Any) -> dt.datetime:
    """When the record says its session detached: an ISO time with a timezone, as the recorder writes it."""
    try:
        at = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise RecordingError(f"{notebook}: its detach note has no usable time ({str(value)[:40]!r}); "
                             "the recorder writes an ISO time with a timezone")
    return at


def check_attachable(notebook: Path, kernel_id: str, hmac_key: bytes | None, signing_key: Any) -> _Detach:
    """Read and check a record before anything else happens (no lock: :func:`attach_session` checks again under it)."""
    ours, cells = Recorder.check_resumable(notebook, hmac_key=hmac_key, signing_key=signing_key)
    return detach_of(notebook, kernel_id, ours, cells)


def keys(audit_key: bytes | str | None, signing_key: Any) -> tuple[bytes | None, Any]:
    """The HMAC key and Ed25519 private key an attach checks and signs with (the options, else the environment)."""
    key = audit_key if audit_key is not None else os.environ.get(AUDIT_KEY_ENV)
    source = signing_key or os.environ.get(SIGNING_KEY_ENV)
    return (key.encode() if isinstance(key, str) else key), (load_private_key(source) if source else None)


async def attach_session(make_session: Callable[..., S], kernel_id: str, *, notebook: str | os.PathLike[str] | None,
                         audit_key: bytes | str | None = None, **options: Any) -> S:
    """A started session on the server's kernel ``kernel_id``, recording on into ``notebook`` (if given).

    The record is checked before the kernel is touched, and locked (one
    writer) and checked again before anything is appended. On any failure
    after the kernel was reached, the session detaches again: a kernel
    holding someone's state is never shut down by a failed attach.
    """
    # Absolute, not resolved: a link in the caller's place of the notebook is refused when read, not followed.
    path = Path(os.path.abspath(notebook)) if notebook is not None else None
    hmac_key, signing_key = keys(audit_key, options.get("signing_key"))
    detach = check_attachable(path, kernel_id, hmac_key, signing_key) if path is not None else None
    session = make_session(notebook=False, audit_key=audit_key, **options)
    session.attach_to(kernel_id, sdk_hash=detach.sdk_hash if detach is not None else None)
    recorder = None
    if path is not None:
        found: list[_Detach] = []
        recorder = Recorder.resume(path, hmac_key=hmac_key, signing_key=signing_key,
                                   expect=lambda ours, cells: found.append(detach_of(path, kernel_id, ours, cells)))
        detach = found[0]
        session.attach_to(kernel_id, sdk_hash=detach.sdk_hash)  # as read under the lock
    try:
        await session.start()
    except BaseException:
        if recorder is not None:
            recorder.abandon()
        raise
    try:
        if path is not None and recorder is not None and detach is not None:
            session.record_to(path)
            session.attach_recorder(recorder)
            recorder = None  # the session's now: closed (sealed or detached) with it
            _note_attach(session, kernel_id, detach)
    except BaseException:
        if recorder is not None:
            recorder.abandon()
        await session.detach()
        raise
    return session


def _note_attach(session: AttachableSession, kernel_id: str, detach: _Detach) -> None:
    """The attach note: when, by whom, how long after the detach (the tools were checked at start)."""
    attached_at = dt.datetime.now(dt.UTC)
    gap = round((attached_at - detach.at).total_seconds(), 3)
    details = {"at": attached_at.isoformat(), "by": who(), "kernel_id": kernel_id,
               "detached_at": detach.at.isoformat(), "gap_seconds": gap}
    recorder = session.recorder
    assert recorder is not None
    recorder.record_note(ATTACHED, f"*Attached to kernel `{kernel_id}` again after {gap:g} s.*", details)
