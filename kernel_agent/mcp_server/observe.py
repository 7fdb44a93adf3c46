"""A cell's result as MCP content: the agent loop's bounded observation, and the plots it showed as images.

The same text a kernel-agent agent gets (:mod:`kernel_agent.agent.observation`:
head and tail kept, the whole output spilled to a workspace file, tracebacks
compacted), and the same image checks and bounds (:mod:`kernel_agent.agent.images`:
signature and header checked, downscaled, at most a few a cell), so what a
kernel sends costs the client a bounded number of tokens whatever it printed.
"""

from __future__ import annotations

import asyncio

from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent

from kernel_agent.agent.images import ImageSelection, has_images, select_images
from kernel_agent.agent.observation import bound, cell_notes, cell_output_text
from kernel_agent.mcp_server.config import ClientLimits
from kernel_agent.mcp_server.inert import inert
from kernel_agent.runtime.results import CellResult
from kernel_agent.session.session import Session


async def cell_content(session: Session, cell: CellResult, limits: ClientLimits, number: int) -> CallToolResult:
    """The tool result of one ``run_python`` call (``number``: the client session's cell count, for the spill)."""
    where = f"the notebook (cell In[{cell.execution_count}])" if session.notebook else "the cell's outputs"
    bounded = bound(cell_output_text(cell), limits.observation_limit, where=where, spill_to=session.local_workspace,
                    spill_name=f"mcp-{number:03d}.txt")
    images = ImageSelection()
    if has_images(cell):  # decoding (and Pillow) off the event loop other clients share
        images = await asyncio.to_thread(select_images, cell, limits.image_limits, vision=limits.images,
                                         room=limits.image_limits.max_images, model="this MCP client")
    # What the kernel printed is made inert: no escape sequence reaches the client's terminal, and no carriage
    # return or bidi control makes the kernel's text pass for the notes the server adds after it.
    text = "\n".join(part for part in (inert(bounded.text.rstrip("\n")), images.text, cell_notes(cell)) if part)
    content: list[ContentBlock] = [TextContent(text=text or "(no output)")]
    content += [ImageContent(data=image.data, mime_type=image.media_type) for image in images.images]
    return CallToolResult(content=content, is_error=cell.error is not None)
