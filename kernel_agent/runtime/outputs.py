"""Builds a cell's outputs from iopub messages, within a byte cap (OutputCollector)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from kernel_agent.runtime.results import (
    DEFAULT_MAX_OUTPUT_BYTES,
    OUTPUT_LOST,
    CellError,
    execution_count_of,
    lines_of,
    text_of,
)
from kernel_agent.runtime.streaming import OutputChunk


def _output_from_message(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """The nbformat v4 output for an iopub message.

    nbformat's own ``output_from_msg`` validates every output against the
    JSON schema, which costs more than the rest of a trivial cell on the
    host; these shapes are what it produces, and notebooks are validated
    once when they are written.
    """
    if msg_type == "stream":
        return {"output_type": "stream", "name": content.get("name", "stdout"), "text": str(content.get("text", ""))}
    if msg_type == "error":
        return {"output_type": "error", "ename": text_of(content.get("ename")),
                "evalue": text_of(content.get("evalue")), "traceback": lines_of(content.get("traceback"))}
    output = {"output_type": msg_type, "data": content.get("data", {}), "metadata": content.get("metadata", {})}
    if msg_type == "execute_result":
        output["execution_count"] = execution_count_of(content.get("execution_count"))
    return output


def _plain(text: Any) -> Any:
    """A MIME bundle's text, which nbformat allows as a list of lines."""
    return "".join(map(str, text)) if isinstance(text, list) else text


def _size(output: dict[str, Any]) -> int:
    """What a rich output costs (only when its message size is unknown: the connection gives it)."""
    return len(json.dumps(output, ensure_ascii=False))


# What of an error output is kept when it does not fit the cap (the cell's first error only).
_ERROR_TRACEBACK_LINES = 20
_ERROR_TEXT_CHARS = 10_000


def _trimmed_error(output: dict[str, Any]) -> dict[str, Any]:
    """An error output cut to a bounded size: its value and the last lines of its traceback."""
    traceback = [str(line)[:_ERROR_TEXT_CHARS] for line in output["traceback"][-_ERROR_TRACEBACK_LINES:]]
    return {**output, "evalue": output["evalue"][:_ERROR_TEXT_CHARS], "traceback": traceback}


def _public(output: dict[str, Any]) -> dict[str, Any]:
    """An output as nbformat has it, without the collector's bookkeeping keys."""
    public = {key: value for key, value in output.items() if key not in ("_display_id", "_text", "_bytes")}
    if "_text" in output:
        public["text"] = output["_text"].getvalue()
    return public


class OutputCollector:
    """Builds a cell's outputs from iopub messages, keeping at most ``max_bytes``.

    Consecutive stream messages are merged (as nbclient does), ``clear_output``
    and ``update_display_data`` are honoured, and everything past the cap is
    counted instead of kept so that an output flood cannot grow host memory.
    Every kind counts against the cap: an ``error`` output that does not fit
    is kept only if it is the cell's first, cut to a bounded size; a display
    update that would not fit is dropped (counted).
    The connection asks :meth:`wants_content` before it verifies or parses a
    large message, so output past the cap costs the host only its frame
    lengths.

    ``on_chunk`` gets what is kept, as it is kept (see
    :mod:`.streaming`): the text of each stream message up to the cap, each
    display and error output that fits, each clear; past the cap, one note.
    It is called on the event loop and must not wait (an
    :class:`~kernel_agent.runtime.streaming.OutputStream` queues).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
                 on_chunk: Callable[[OutputChunk], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self._on_chunk = on_chunk
        self._noted_drop = False
        self.outputs: list[dict[str, Any]] = []
        self.kept_bytes = 0
        self.dropped_bytes = 0
        self.execution_count: int | None = None
        self.error: CellError | None = None
        #: How often output addressed to this cell was lost in transit (see :data:`OUTPUT_LOST`).
        self.output_lost = 0
        #: iopub messages addressed to this cell so far, kept or not: whether its output is still arriving.
        self.received = 0
        self._loss_reasons: list[str] = []
        self._notes: list[str] = []
        self._clear_on_next = False
        self._kept_error = False

    def wants_content(self, size: int) -> bool:
        """Whether a message of ``size`` bytes is worth verifying and parsing; if not, it is counted as dropped.

        A message that fits the room left is wanted. One that does not is
        still wanted while it is at most one cap larger than the room (a
        stream message is cut at the cap, so its first part is kept); the
        host never parses more than twice the cap to keep a cap's worth.
        """
        self.received += 1
        room = self.max_bytes - self.kept_bytes
        if size <= max(room, 4096):
            return True
        if room > 0 and size <= room + self.max_bytes:
            return True
        self._drop(size)
        return False

    def add(self, message: dict[str, Any]) -> None:
        """Take one iopub message addressed to this cell."""
        msg_type = message["header"]["msg_type"]
        content = message["content"]
        if not isinstance(content, dict) or "__dropped_bytes__" in content:
            return
        if msg_type == OUTPUT_LOST:
            self.output_lost += 1
            reason = str(content.get("reason") or "output sent by the kernel did not reach the host")
            if reason not in self._loss_reasons:
                self._loss_reasons.append(reason)
                self._emit(OutputChunk("note", f"output lost: {reason}"))
            self._drop(max(0, int(content.get("min_bytes", 0))))
            return
        if msg_type == "execute_input":
            self.execution_count = execution_count_of(content.get("execution_count"))
            return
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_on_next = True
            else:
                self._clear()
            return
        if msg_type == "update_display_data":
            self._update_display(content, message.get("size"))
            return
        if msg_type not in ("stream", "display_data", "execute_result", "error"):
            return
        if self._clear_on_next:
            self._clear()
        output = _output_from_message(msg_type, content)
        if msg_type == "error":
            self._keep_error(output, message.get("size"))
            return
        if msg_type == "display_data" and (display_id := content.get("transient", {}).get("display_id")):
            output.setdefault("metadata", {})
            output["_display_id"] = display_id
        self._keep(output, message.get("size"))

    def _keep(self, output: dict[str, Any], message_size: int | None = None) -> None:
        room = self.max_bytes - self.kept_bytes
        if output["output_type"] == "stream":
            whole: str = output["text"]
            text = whole[: max(room, 0)]
            if text:
                self.kept_bytes += len(text)
                self._emit(OutputChunk("stream", text, output["name"]))
            if len(whole) > len(text):
                self._drop(len(whole) - len(text))
            if not text:
                return
            last = self.outputs[-1] if self.outputs else None
            if last and last["output_type"] == "stream" and last["name"] == output["name"]:
                # A buffer, not `+=` (quadratic) nor a list of pieces (a flood of one-character messages
                # would cost a list entry each, tens of bytes per byte kept).
                last["_text"].write(text)
            else:
                buffer = io.StringIO()
                buffer.write(text)
                self.outputs.append({"output_type": "stream", "name": output["name"], "_text": buffer})
            return
        size = message_size if message_size is not None else _size(output)
        if size > room:
            self._drop(size)
            return
        self.kept_bytes += size
        self.outputs.append({**output, "_bytes": size})
        data = output.get("data")
        if isinstance(data, dict):
            self._emit(OutputChunk(output["output_type"], text_of(_plain(data.get("text/plain"))),
                                   data=MappingProxyType(data)))

    def _keep_error(self, output: dict[str, Any], message_size: int | None) -> None:
        size = message_size or _size(output)
        if size > self.max_bytes - self.kept_bytes:
            if self._kept_error:
                self._drop(size)
                return
            output = _trimmed_error(output)  # the cell's first error is worth a bounded overrun
            self._drop(max(0, size - _size(output)))
            size = _size(output)
        self._kept_error = True
        self.error = CellError(ename=output["ename"], evalue=output["evalue"], traceback=output["traceback"])
        self.kept_bytes += size
        self.outputs.append(output)
        self._emit(OutputChunk("error", f"{output['ename']}: {output['evalue']}".rstrip(": ")))

    def _emit(self, chunk: OutputChunk) -> None:
        if self._on_chunk is not None:
            self._on_chunk(chunk)

    def _drop(self, size: int) -> None:
        """Count output not kept; the first time, tell the stream that what follows the cap is not delivered."""
        self.dropped_bytes += size
        if size > 0 and not self._noted_drop:
            self._noted_drop = True
            self._emit(OutputChunk("note", f"output past max_output_bytes ({self.max_bytes:,} bytes) is not "
                                           "kept or delivered; the cell's result says how much was dropped"))

    def _clear(self) -> None:
        self._emit(OutputChunk("clear_output"))
        self.outputs.clear()
        self.kept_bytes = 0
        self._kept_error = False
        self._clear_on_next = False

    def _update_display(self, content: dict[str, Any], message_size: int | None) -> None:
        display_id = content.get("transient", {}).get("display_id")
        data, metadata = content.get("data", {}), content.get("metadata", {})
        size = message_size if message_size is not None else _size({"data": data, "metadata": metadata})
        for output in self.outputs:
            if display_id is not None and output.get("_display_id") == display_id:
                # The update replaces what the output held: only the growth must fit.
                if size - output.get("_bytes", 0) > self.max_bytes - self.kept_bytes:
                    self._drop(size)
                    continue
                self.kept_bytes += size - output.get("_bytes", 0)
                output.update(data=data, metadata=metadata, _bytes=size)

    def note(self, text: str) -> None:
        """Name something of the cell's that was not kept (a marker line in the outputs)."""
        self._notes.append(text)

    def finish(self) -> list[dict[str, Any]]:
        """The final outputs, with a marker where output was dropped."""
        outputs = [_public(output) for output in self.outputs]
        if self.output_lost:
            outputs.append({
                "output_type": "stream",
                "name": "stderr",
                "text": (f"\n[kernel-agent: output lost: {'; '.join(self._loss_reasons)}. At least "
                         f"{self.dropped_bytes:,} bytes dropped (max_output_bytes is {self.max_bytes:,})]\n"),
            })
        elif self.dropped_bytes:
            outputs.append({
                "output_type": "stream",
                "name": "stderr",
                "text": (f"\n[kernel-agent: output truncated: {self.dropped_bytes:,} bytes dropped after the "
                         f"first {self.max_bytes:,} (max_output_bytes)]\n"),
            })
        if self._notes:
            outputs.append({"output_type": "stream", "name": "stderr",
                            "text": "".join(f"\n[kernel-agent: {note}]" for note in self._notes) + "\n"})
        return outputs
