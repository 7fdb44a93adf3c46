"""The kernel application: ipykernel's, with an iopub that queues instead of dropping.

zmq drops a PUB socket's messages past its high-water mark (1,000 by
default) without a trace. The host reads iopub through a deliberately short
queue (a bound on host memory: see kernel_agent/runtime/connection.py), so
when the host is slower than a cell's output for a moment (a loaded machine,
a slow ``on_output`` callback), the kernel's queue fills and output vanished
from the middle of a cell: 1,011 of 5,000 printed lines arrived in the test
that found it. Here the backlog waits in the kernel instead, whose memory the
sandbox limits; the host still holds at most its short queue, and output past
its cap is still counted, not kept.
"""

from __future__ import annotations

from typing import Any

import zmq
from ipykernel.kernelapp import IPKernelApp

#: zmq's default high-water mark, restored for the sockets made after iopub's.
_ZMQ_DEFAULT_HWM = 1000


class AgentKernelApp(IPKernelApp):
    """IPKernelApp whose iopub socket (and the IOPub thread's pipe) never drops a message."""

    def init_iopub(self, context: zmq.Context[Any]) -> None:
        # The socket and the pipe are made and bound inside ipykernel's init_iopub: set the context's defaults
        # around it (an option set after bind would not apply to the connection already made).
        context.setsockopt(zmq.SNDHWM, 0)
        context.setsockopt(zmq.RCVHWM, 0)
        try:
            super().init_iopub(context)  # type: ignore[no-untyped-call]  # ipykernel: untyped
        finally:
            context.setsockopt(zmq.SNDHWM, _ZMQ_DEFAULT_HWM)
            context.setsockopt(zmq.RCVHWM, _ZMQ_DEFAULT_HWM)
