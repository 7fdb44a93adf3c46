"""MCP servers as kernel-agent tools.

An :class:`McpServer` connects to one `Model Context Protocol`_ server (a
local command over stdio, or a remote one over streamable HTTP), lists all
its tools and turns each into a :class:`~kernel_agent.tools.tool.Tool` in
one namespace. The model's code calls them like any other tool; the call
runs on the host, which forwards it to the server::

    async with McpServer.stdio("mcp-server-time") as time_server:   # namespace "mcp_time"
        time_server.tools      # [Tool mcp_time.get_current_time, Tool mcp_time.convert_time]

Built on the official ``mcp`` SDK (2.x), which is imported only when a server
is started, so this module can be imported without it.

What a tool call returns
------------------------
The kernel's code gets back, from the server's ``CallToolResult``:

* an error result (``isError``): :class:`McpToolError` is raised, with the
  server's own text as the message (the bridge turns it into a ``ToolError``
  in the kernel, so the model can read it and correct itself);
* structured content (``structuredContent``): that value, usually a dict;
* otherwise the content blocks: a single text block is returned as its text
  (a ``str``); no block at all as ``None``; anything else as a list in which
  text blocks are ``str`` and the other blocks are dicts:

  - image/audio: ``{"type": "image" | "audio", "mime_type": str, "data": bytes}``
    (``data`` decoded from base64);
  - embedded resource: ``{"type": "resource", "uri": str, "mime_type": str | None}``
    plus ``"text": str`` or ``"data": bytes``;
  - resource link: ``{"type": "resource_link", "uri": str, "name": str,
    "mime_type": str | None, "description": str | None}``.

Failures are split by whose fault they are: :class:`McpToolError` when the
server answered that the call failed (including a JSON-RPC error such as an
unknown tool), :class:`McpToolTimeout` (also a :class:`TimeoutError`) when it
did not answer within ``call_timeout``, and
:class:`~kernel_agent.errors.McpServerError` when the server itself is gone
(its process exited, the HTTP connection closed) or was never started.

Names
-----
The namespace is the ``namespace=`` given, else the server's own name
(``serverInfo.name``) made into a lower_snake identifier (``"mcp-time"`` ->
``mcp_time``), because it becomes an attribute of ``tools`` in the kernel.
Tools keep the server's names (``"get-config"`` stays ``get-config``): the
name is what calls are recorded and sent under, and the registry picks the
Python identifier the kernel sees. ``Tool.source`` is ``"mcp:<serverInfo.name>"``.

Annotations
-----------
``readOnlyHint`` and ``destructiveHint`` become ``Tool.read_only`` and
``Tool.destructive`` with the MCP defaults: a tool that is not read-only and
does not say ``destructiveHint: false`` counts as destructive, as the spec
says, so ``ask_for_destructive`` asks before calling it.

.. _Model Context Protocol: https://modelcontextprotocol.io

The package: :mod:`.server` (the connection's lifecycle: start, list, call,
close), :mod:`.transport` (opening stdio and streamable-HTTP transports, a
stdio server's stderr, paging through tools/list), :mod:`.convert` (MCP tool
definitions -> Tools, call results -> Python values) and :mod:`.errors`.
"""

from kernel_agent.tools.mcp.errors import McpToolError, McpToolTimeout
from kernel_agent.tools.mcp.server import McpServer

__all__ = ["McpServer", "McpToolError", "McpToolTimeout"]
