"""What a session tells the tools it serves about itself (see :mod:`kernel_agent.tools.call_context`).

Facts of the host's own making: the session's id, where it is recorded, the
model named in its record metadata, and the trees its sandbox may write (a
tool that keeps files must keep them out of those). Nothing here comes from
the kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from kernel_agent.sandbox.policy import SandboxPolicy


class _Described(Protocol):
    """What the facts are read from (a Session; not imported, which would make a cycle)."""

    id: str
    policy: SandboxPolicy

    @property
    def notebook(self) -> Path | None: ...

    @property
    def local_workspace(self) -> Path | None: ...


def session_facts(session: _Described, record_metadata: dict[str, Any] | None) -> dict[str, Any]:
    """``session_id``, ``notebook`` (str or None), ``model`` (spec or None), ``writable`` (paths as str)."""
    model = (record_metadata or {}).get("model")
    spec = model.get("spec") if isinstance(model, dict) else None
    notebook = session.notebook
    try:
        workspace = session.local_workspace
    except Exception:  # noqa: BLE001 - no workspace yet: nothing of it to report
        workspace = None
    writable = [str(path) for path in (workspace, *session.policy.writable_paths) if path is not None]
    return {"session_id": session.id, "notebook": str(notebook) if notebook is not None else None,
            "model": spec if isinstance(spec, str) else None, "writable": writable}
