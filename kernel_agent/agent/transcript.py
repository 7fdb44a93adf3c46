"""What a run records of its conversation beyond the cells, so that a resume can give the model it back.

The session records each cell with the step, call id, channel (``tool`` or
``fenced``) and observation of the code request that ran it; the loop adds
the model's messages (kind ``message``, with the step and any malformed tool
calls in their metadata) and its own notes (kind ``note``: the run stopped,
was interrupted). :mod:`kernel_agent.agent.resume` rebuilds the
provider-neutral conversation from exactly these.
"""

from __future__ import annotations

from typing import Any

from kernel_agent.models.base import ModelReply, Observation

#: The kind of the markdown cells the loop adds about the run itself (not the model's words).
NOTE = "note"
#: How much of a malformed tool call's raw arguments the record keeps (it goes back to the model on resume).
MALFORMED_RAW_CHARS = 4000
#: How an interruption note begins (older recordings have it as a ``message``: a resume recognises it).
INTERRUPTED_PREFIX = "*Run interrupted"
#: How a model-error note begins (idem).
STOPPED_PREFIX = "*The run stopped: "


def malformed_observation(call_id: str, raw: str) -> Observation:
    """What the model is told about a tool call whose arguments were not readable as code."""
    return Observation(call_id, f"Error: the call could not be read as Python code ({raw[:200]!r}); "
                                "send code as the `code` argument of the python tool.", is_error=True)


def message_details(step: int, reply: ModelReply) -> dict[str, Any]:
    """The metadata of a recorded model message: its step, and the tool calls that could not be read."""
    details: dict[str, Any] = {"step": step}
    if reply.malformed:
        details["malformed"] = [[call_id, raw[:MALFORMED_RAW_CHARS]] for call_id, raw in reply.malformed]
    return details
