"""The kernel class our kernelspec launches: ipykernel's, with the agent's additions."""

from __future__ import annotations

from typing import Any

from ipykernel.ipkernel import IPythonKernel
from traitlets import Float

from kernel_agent._version import __version__
from kernel_agent.kernel import sdk


class AgentKernel(IPythonKernel):
    """IPython kernel used by every kernel-agent session.

    Two additions: tool-bridge replies are taken off the shell channel before
    ipykernel routes it (see :mod:`kernel_agent.kernel.bridge`), and the
    model-facing names (``tools``, ``progress``, ``final_answer``, the
    ``ToolError`` family) exist from the start, so that a kernel opened
    without a host explains itself instead of raising NameError.
    """

    implementation = "kernel-agent"
    implementation_version = __version__

    # ipykernel sleeps 0.5 ms before every execute reply so that late output
    # reaches iopub first; the host waits for the iopub idle status anyway.
    _execute_sleep = Float(0.0).tag(config=True)

    #: The tool bridge, once a host has installed the SDK (kernel_agent.kernel.bridge.install).
    bridge: Any = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shell.user_ns.update({
            "tools": sdk.build_tools({}),
            "progress": sdk.progress,
            "final_answer": sdk.final_answer,
            "ToolError": sdk.ToolError,
            "ToolValidationError": sdk.ToolValidationError,
            "ToolDenied": sdk.ToolDenied,
            "ToolTimeoutError": sdk.ToolTimeoutError,
        })

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
        await super().shell_channel_thread_main(msg)
