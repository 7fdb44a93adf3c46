"""SyncSession: the Session API for plain scripts, without asyncio.

It runs a private event loop in a background thread, so it also works where
a loop is already running (inside Jupyter). That thread lives as long as the
session: the sandbox's parent-death signal is tied to the thread that
launched it, so the kernel must be started and killed from a thread that
outlives it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from kernel_agent.runtime.results import CellResult
from kernel_agent.session.background import SyncRunningCell
from kernel_agent.session.session import Session

T = TypeVar("T")


class SyncSession:
    """A :class:`Session` driven from synchronous code: ``with SyncSession() as s: s.execute("1+1")``."""

    def __init__(self, workspace: str | os.PathLike[str] | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kernel-agent-session", daemon=True)
        self._thread.start()
        self.session: Session = self._call(self._make(workspace, options))

    @staticmethod
    async def _make(workspace: str | os.PathLike[str] | None, options: dict[str, Any]) -> Session:
        return Session(workspace, **options)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @property
    def workspace(self) -> Any:
        """The directory the kernel works in."""
        return self.session.workspace

    def start(self) -> SyncSession:
        """Launch the sandboxed kernel."""
        self._call(self.session.start())
        return self

    def execute(self, code: str, **options: Any) -> CellResult:
        """Run a cell; see :meth:`Session.execute`."""
        return self._call(self.session.execute(code, **options))

    def start_cell(self, code: str, **options: Any) -> SyncRunningCell:
        """Start a background cell; see :meth:`Session.start_cell` (the handle's methods block)."""
        return SyncRunningCell(self._call(self.session.start_cell(code, **options)), self._call)

    def restart(self) -> None:
        """Replace the kernel with a fresh one."""
        self._call(self.session.restart())

    def metadata(self) -> dict[str, Any]:
        """See :meth:`Session.metadata`."""
        return self.session.metadata()

    def close(self) -> None:
        """Close the session and stop its event loop thread (idempotent)."""
        if not self._loop.is_closed():
            try:
                self._call(self.session.close())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
                self._loop.close()

    def __enter__(self) -> SyncSession:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
