"""Where a session's kernel works on this host: the caller's directory, a temporary one, a pooled kernel's, or none.

A temporary workspace is made at start (held, so no other host's reaper
removes it while this host lives; a kept one is named so that it is never
taken for a dead host's leftovers) and removed at close, off the event loop
(the kernel chose how big the tree is). A kernel on a server, or one started
elsewhere, has no workspace here.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from kernel_agent.errors import SessionClosedError, WorkspaceError
from kernel_agent.sandbox.hostlocks import make_held_dir, remove_held_dir
from kernel_agent.sandbox.provisioner import RUN_DIR_PREFIX


class SessionWorkspace:
    """The session's workspace: given, made at start (``owned``), brought by a pooled kernel, or none (elsewhere)."""

    def __init__(self, given: str | os.PathLike[str] | None, *, keep: bool, elsewhere: bool) -> None:
        self.path = Path(given).resolve() if given is not None else None
        self.keep = keep
        #: Whether the kernel runs outside this host's own sandbox launch (a server's, or one started elsewhere).
        self.elsewhere = elsewhere
        #: Whether the session made (or a pool made for it) the workspace, rather than the caller.
        self.owned = given is None and not elsewhere

    @property
    def records_by_default(self) -> bool:
        """A throwaway workspace's session records only when asked to; every other one does."""
        return not self.owned or self.keep

    def require(self) -> Path:
        """The workspace, or why there is none."""
        if self.path is None:
            if self.elsewhere:
                raise WorkspaceError("the kernel runs where it was started (a server, or a kernel started elsewhere): "
                                     "it has no workspace on this host")
            raise SessionClosedError("the session has not been started")
        return self.path

    def prepare(self, *, pooled: bool) -> None:
        """Before the kernel starts: make a temporary workspace or check the caller's (a pooled kernel brings one)."""
        if self.path is None and not pooled and not self.elsewhere:
            owner = "kept" if self.keep else str(os.getpid())
            prefix = f"{RUN_DIR_PREFIX}{owner}-workspace-"
            self.path = Path(tempfile.mkdtemp(prefix=prefix)) if self.keep else make_held_dir(prefix)
        elif self.path is not None and not self.path.is_dir():
            raise WorkspaceError(f"workspace {self.path} does not exist or is not a directory; create it first")

    async def remove(self, *, failed_start: bool = False) -> None:
        """Remove a workspace the session made (kept ones stay, unless the start failed), off the event loop."""
        if self.owned and self.path is not None and (failed_start or not self.keep):
            await asyncio.to_thread(remove_held_dir, self.path)
            if failed_start:
                self.path = None
