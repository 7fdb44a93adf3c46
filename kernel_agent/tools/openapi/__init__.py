"""OpenAPI specifications as a tool source: one typed SDK function per operation, the request made by the host.

::

    api = OpenApiSource("petstore.yaml", base_url="https://api.example.com/v1",
                        auth={"bearerAuth": os.environ["PETSTORE_TOKEN"]})
    async with Session(workspace, tools=[api]) as session:
        await session.run("tools.pets.list_pets(limit=5)")

What becomes what
-----------------
* each operation (a path and an HTTP method) becomes a :class:`~kernel_agent.tools.tool.Tool`
  named by its ``operationId`` (else ``"get /pets/{id}"``, which the SDK calls ``get_pets_id``),
  in the namespace of its first tag (or ``namespace=``); ``namespace_descriptions`` gives each
  namespace the one line of its tag's description;
* its path, query, header and cookie parameters and its request body become the parameters
  (a JSON or form body whose schema is a plain object is flattened into its fields, any other
  body is one ``body`` parameter), typed from their schemas, with their descriptions, defaults,
  enums and required flags; ``$ref``s are resolved (within the document only, bounded);
* GET, HEAD and OPTIONS operations are read-only, DELETE ones destructive (policies can ask);
* a call returns the 2xx answer: JSON parsed, text as ``str``, other media types as ``bytes``,
  nothing as ``None``; any other status raises :class:`OpenApiCallError` in the host, which the
  kernel sees as a ``ToolError`` with the status and the beginning of the answer.

Trust
-----
The host makes every request, and the credentials (``headers=``, ``auth=``) never reach the
kernel, the SDK, the recording or an error message. Redirects are not followed, answers are
bounded in size and time, path values are percent-encoded whole. A document is hostile input
too: it is read bounded in size, depth and values, ``$ref``s may not leave it, and a broken one
raises :class:`~kernel_agent.errors.OpenApiError` with the JSON pointer of the problem.

Modules: :mod:`.document` (reading, limits, ``$ref``), :mod:`.schemas` (OpenAPI schemas to
JSON schemas), :mod:`.operations` (operations to plans), :mod:`.auth` (security schemes),
:mod:`.http` (the request and its answer), :mod:`.source` (the tool source), :mod:`.options`
(the command line's ``--openapi`` options).
"""

from kernel_agent.errors import OpenApiError
from kernel_agent.tools.openapi.http import OpenApiCallError
from kernel_agent.tools.openapi.source import OpenApiSource

__all__ = ["OpenApiCallError", "OpenApiError", "OpenApiSource"]
