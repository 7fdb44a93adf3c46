"""The kernel class our kernelspec launches: ipykernel's, with the agent's additions."""

from __future__ import annotations

import sys
from typing import Any

from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel
from traitlets import Float

from kernel_agent._version import __version__
from kernel_agent.kernel import pip_magic, sdk
from kernel_agent.kernel.bridge import CELL

#: stdout and stderr are flushed before more than this many characters are waiting, so that no
#: stream message comes near the host's iopub message limit (40 MiB; a character is at most 6 bytes
#: of JSON) and a flood is sent as a steady series of countable messages.
STREAM_FLUSH_CHARS = 1024**2


class CappedOutStream(OutStream):
    """ipykernel's OutStream, flushed by size as well as by time.

    ipykernel buffers stream output and flushes it every 0.2 s, however much
    was written, so ``while True: print('x' * 10**6)`` became messages of
    hundreds of MB that the host refuses (its iopub limit is 40 MiB). Here a
    write that would take the pending output past :data:`STREAM_FLUSH_CHARS`
    flushes first (a long string in pieces), and ``flush()`` waits for the
    IOPub thread: a flood leaves as a steady series of messages of at most
    about 1 MiB, which the host counts past the cell's output cap, paced by
    what the kernel can send, and an interrupt finds the writer waiting in
    Python. A courtesy to well-meaning code: the host does not rely on it.
    """

    _pending_chars = 0  # written since the last size-triggered flush (the timed flush does not reset it)

    def write(self, string: str) -> int | None:  # type: ignore[override]
        if not isinstance(string, str) or self._pending_chars + len(string) <= STREAM_FLUSH_CHARS:
            self._pending_chars += len(string) if isinstance(string, str) else 0
            return super().write(string)
        for start in range(0, len(string), STREAM_FLUSH_CHARS):
            piece = string[start : start + STREAM_FLUSH_CHARS]
            if self._pending_chars + len(piece) > STREAM_FLUSH_CHARS:
                self._pending_chars = 0
                self.flush()  # type: ignore[no-untyped-call]  # ipykernel's OutStream.flush is not annotated
            super().write(piece)
            self._pending_chars += len(piece)
        return len(string)


def cap_output_streams() -> None:
    """Make the kernel's stdout and stderr (ipykernel OutStreams) flush by size (see CappedOutStream)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if type(stream) is OutStream:
            stream.__class__ = CappedOutStream


class AgentKernel(IPythonKernel):
    """IPython kernel used by every kernel-agent session.

    Four additions: stdout and stderr flush by size (:class:`CappedOutStream`),
    tool-bridge replies are taken off the shell channel before
    ipykernel routes it (see :mod:`kernel_agent.kernel.bridge`), the
    model-facing names (``tools``, ``progress``, ``final_answer``, the
    ``ToolError`` family) exist from the start, so that a kernel opened
    without a host explains itself instead of raising NameError, and history
    replies name the current session consistently (:meth:`do_history`).
    """

    implementation = "kernel-agent"
    implementation_version = __version__

    # ipykernel sleeps 0.5 ms before every execute reply so that late output
    # reaches iopub first; the host waits for the iopub idle status anyway.
    _execute_sleep = Float(0.0).tag(config=True)

    #: The tool bridge, once a host has installed the SDK (kernel_agent.kernel.bridge.install).
    bridge: Any = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # ipykernel's Kernel.__init__ is not annotated
        cap_output_streams()  # IPKernelApp made them (init_io) before it made the kernel
        assert self.shell is not None  # IPythonKernel.__init__ made it
        self.shell.user_ns.update(sdk.model_names(sdk.build_tools({})))
        # Tab on `tools.ns.na`: IPython's completer (jedi is off) evaluates `tools.ns` only through objects
        # it trusts not to run code on getattr; a Namespace runs only the host's generated module, on first use.
        completer = getattr(self.shell, "Completer", None)
        if completer is not None and completer.has_trait("policy_overrides"):
            completer.policy_overrides = {"allowed_getattr_external": {"kernel_agent.kernel.sdk.Namespace"}}
        pip_magic.register(self.shell)  # %pip asks the host: the kernel has no network and cannot write packages

    def set_parent(self, ident: Any, parent: Any, channel: str = "shell") -> None:
        """ipykernel's, plus: code run for an execute request knows its cell (tool calls are stamped with it)."""
        super().set_parent(ident, parent, channel)  # type: ignore[no-untyped-call]
        header = parent.get("header") if isinstance(parent, dict) else None
        if channel == "shell" and isinstance(header, dict) and header.get("msg_type") == "execute_request":
            CELL.set(str(header.get("msg_id")))

    async def do_history(self, hist_access_type: str, output: bool, raw: bool, session: int = 0, start: int = 0,
                         stop: int | None = None, n: int | None = None, pattern: str | None = None,
                         unique: bool = False) -> dict[str, Any]:
        """ipykernel's, with the current session named by its number in every reply.

        History lives in memory only (an sqlite database that is never a file:
        see ``kernel_agent.kernel.__main__``). IPython answers a range of the
        current session from its input lists and labels the entries session 0
        ("the current one"), where tail and search, read from the database,
        give the session's number: a frontend asking for a range of the
        session a tail reply named got entries of another session number back
        (jupyter_kernel_test checks this; the stock python3 kernel fails it).
        Asynchronous, as ipykernel's Kernel declares it (a plain method is deprecated there).
        """
        reply: dict[str, Any] = super().do_history(  # type: ignore[no-untyped-call]  # not annotated in ipykernel
            hist_access_type, output, raw, session=session, start=start, stop=stop, n=n, pattern=pattern,
            unique=unique)
        assert self.shell is not None
        current = self.shell.history_manager.session_number
        reply["history"] = [(current if number == 0 else number, line, entry)
                            for number, line, entry in reply["history"]]
        return reply

    async def shell_channel_thread_main(self, msg: list[Any]) -> None:
        """Deliver bridge replies on the shell-channel thread; route everything else as ipykernel does.

        This runs before ipykernel's routing to the main thread or a
        subshell, so a reply reaches its caller even while the cell that
        made the call blocks the main thread. The peek (``content=False``)
        verifies the signature without recording it, exactly as ipykernel's
        own routing does, so the message can still be handled normally.
        """
        bridge = self.bridge
        if bridge is not None and self.session is not None:
            try:
                _, parts = self.session.feed_identities(msg, copy=False)
                message = self.session.deserialize(parts, content=False, copy=False)
                if message["header"].get("msg_type") == "comm_msg":
                    raw = message["content"]
                    content = self.session.unpack(bytes(raw.bytes if hasattr(raw, "bytes") else raw))
                    if content.get("comm_id") == bridge.comm_id:
                        bridge.deliver(content.get("data") or {}, [bytes(b) for b in message["buffers"]])
                        return
            except Exception:
                self.log.warning("kernel-agent: could not inspect a shell message", exc_info=True)
        await super().shell_channel_thread_main(msg)  # type: ignore[no-untyped-call]  # not annotated in ipykernel
