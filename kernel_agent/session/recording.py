"""The session's recording glue: where its notebook goes, the header it starts with, and the seal at its end.

The recorder itself (:mod:`kernel_agent.record.recorder`) knows nothing of
sessions; a session gives it a header and, once its kernel is stopped, its
totals and settings to seal the record with.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel_agent._version import __version__
from kernel_agent.errors import RecordingError
from kernel_agent.record.format import AUDIT_KEY_ENV
from kernel_agent.record.location import check_record_location, default_record_dir, ensure_record_dir
from kernel_agent.record.recorder import Recorder
from kernel_agent.record.signing import SIGNING_KEY_ENV, SigningKeySource, load_private_key
from kernel_agent.runtime.kernel import Kernel
from kernel_agent.sandbox.policy import SandboxMode, SandboxPolicy
from kernel_agent.tools.sdkgen import sdk_hash

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

#: The notebook option of a Session: a path, True/None (the default place, when recorded by default) or False.
NotebookOption = str | os.PathLike[str] | bool | None


def notebook_path(
    option: NotebookOption, *, session_id: str, records_by_default: bool, record_dir: Path | None
) -> Path | None:
    """Where a session with this notebook option is recorded (None: not recorded)."""
    if option is False:
        return None
    if option is None and not records_by_default:
        return None  # a session on a throwaway workspace records only when asked to
    if option is None or option is True:
        # Out of the sandbox's reach: never the workspace (see kernel_agent.record.location).
        return (record_dir or default_record_dir()) / f"kernel-agent-{session_id[:8]}.ipynb"
    return Path(option).resolve()


def check_notebook_place(
    notebook: Path, *, default_place: bool, writable: list[Path], allow_reachable: bool
) -> str | None:
    """Refuse a record the sandbox could write (unless allowed); create the default record directory.

    Returns why the record is reachable from the sandbox (None: it is not).
    """
    if default_place:
        ensure_record_dir(notebook.parent)
    if not notebook.parent.is_dir():
        raise RecordingError(f"the notebook's directory {notebook.parent} does not exist; create it first")
    return check_record_location(notebook, writable, allowed=allow_reachable)


def record_facts(reachable: str | None, hmac: bool) -> dict[str, Any]:
    """What the record says about itself: whether the sandbox could reach it, whether it carries an HMAC."""
    return {"reachable_from_sandbox": reachable is not None, "why": reachable, "hmac": hmac}


def describe(
    session_id: str, policy: SandboxPolicy, kernel: Kernel | None, workspace: Path | None, restarts: int
) -> dict[str, Any]:
    """What a session is and how it is confined (its metadata, for notebooks and logs)."""
    from ipykernel._version import __version__ as ipykernel_version

    backend = kernel.backend if kernel is not None else {"kind": "local"}
    sandbox: dict[str, Any]
    if backend.get("kind") == "local":
        sandbox = {
            "mode": policy.mode.value,
            "policy": policy.model_dump(mode="json"),
            "loosenings": policy.loosenings(),
            "limits_enforced_by": kernel.enforcement if kernel is not None else {},
            "confined": policy.mode is SandboxMode.BWRAP,
        }
    else:
        # The server launched the kernel from its own kernelspec: that is what confines it, not this host.
        sandbox = {"mode": "server", "policy": None, "loosenings": [], "limits_enforced_by": {},
                   "confined": None, "confined_by": f"the server's kernelspec {backend.get('kernel_name')!r}"}
    return {
        "session_id": session_id,
        "kernel_agent_version": __version__,
        "ipykernel_version": ipykernel_version,
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "workspace": str(workspace) if workspace else None,
        "kernel": backend,
        "sandbox": sandbox,
        "kernel_restarts": restarts,
    }


def session_header(
    metadata: dict[str, Any],
    *,
    started_at: float,
    settings: dict[str, Any],
    record: dict[str, Any],
    manifest: str,
    sdk_modules: dict[str, str],
    definitions: list[dict[str, Any]],
) -> dict[str, Any]:
    """The recording's header: the session's metadata, settings and tools."""
    return {
        "session_id": metadata["session_id"],
        "started_at": dt.datetime.fromtimestamp(started_at, dt.UTC).isoformat(),
        "kernel_agent_version": metadata["kernel_agent_version"],
        "ipykernel_version": metadata["ipykernel_version"],
        "python_version": metadata["python_version"],
        "workspace": metadata["workspace"],
        "sandbox": metadata["sandbox"],
        "kernel": metadata["kernel"],
        "settings": settings,
        "record": record,
        "tools": {
            "manifest": manifest,
            "sdk_hash": sdk_hash(sdk_modules),
            "sdk_modules": sdk_modules,
            "definitions": definitions,
        },
    }


def seal(recorder: Recorder, totals: dict[str, Any], *, reason: str, settings: dict[str, Any],
         record: dict[str, Any], **sources: Any) -> None:
    """Seal the record; call it only once the kernel is stopped (nothing it does can land after this).

    ``sources``: what the session's tool sources add to the end (see ``SessionTools.record_end``)."""
    recorder.close(totals, reason=reason, settings=settings, record=record, **sources)


class SessionRecord:
    """Where a session is recorded, with which keys, and its recorder once it records.

    The recorder is a hook the session is given: made at start from the
    session's header, or attached once by resume (appending to a recorded
    notebook); never replaced while one is attached.
    """

    def __init__(
        self,
        option: NotebookOption,
        *,
        session_id: str,
        audit_key: bytes | str | None,
        record_dir: str | os.PathLike[str] | None,
        signing_key: SigningKeySource | None,
        metadata: dict[str, Any] | None,
    ) -> None:
        self.option = option
        self.session_id = session_id
        key = audit_key if audit_key is not None else os.environ.get(AUDIT_KEY_ENV)
        self.audit_key = key.encode() if isinstance(key, str) else key
        self.record_dir = Path(record_dir).resolve() if record_dir is not None else None
        self.signing_key_source = signing_key if signing_key is not None else os.environ.get(SIGNING_KEY_ENV)
        self.metadata = dict(metadata or {})
        #: Why the record is reachable from the sandbox (None: it is not); set when its place is checked.
        self.reachable: str | None = None
        self.recorder: Recorder | None = None

    def path(self, *, records_by_default: bool) -> Path | None:
        """Where the session is recorded (None: not recorded)."""
        return notebook_path(self.option, session_id=self.session_id, records_by_default=records_by_default,
                             record_dir=self.record_dir)

    def check_place(self, *, records_by_default: bool, writable: list[Path], allow_reachable: bool) -> None:
        """Refuse a record the sandbox could write (unless allowed); create the default record directory."""
        notebook = self.path(records_by_default=records_by_default)
        if notebook is not None:
            self.reachable = check_notebook_place(
                notebook, default_place=self.option in (None, True) and self.record_dir is None,
                writable=writable, allow_reachable=allow_reachable)

    def redirect(self, notebook: Path) -> None:
        """Record into ``notebook`` from now on (check its place again before recording)."""
        self._refuse_second()
        self.option = notebook

    def attach(self, recorder: Recorder) -> None:
        """Take a recorder made elsewhere (resume's); refused if one is attached already."""
        self._refuse_second()
        self.recorder = recorder

    def _refuse_second(self) -> None:
        if self.recorder is not None:
            raise RecordingError(f"this session already records into {self.recorder.notebook}")

    def signing_key(self) -> Ed25519PrivateKey | None:
        """The private key that signs the sealed record (None: unsigned)."""
        return load_private_key(self.signing_key_source) if self.signing_key_source else None

    def facts(self) -> dict[str, Any]:
        """What the record says about itself (see :func:`record_facts`)."""
        return record_facts(self.reachable, self.audit_key is not None)

    def begin(self, path: Path, header: dict[str, Any], signing_key: Ed25519PrivateKey | None) -> None:
        """Start a new record at ``path`` with ``header`` (plus the caller's record metadata)."""
        self.attach(Recorder(path, {**header, **self.metadata}, hmac_key=self.audit_key, signing_key=signing_key))

    def detach(self) -> Recorder | None:
        """The recorder, taken away to be sealed (None: there is none)."""
        recorder, self.recorder = self.recorder, None
        return recorder
