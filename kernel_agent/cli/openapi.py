"""The command line's OpenAPI options, part of ``session_options`` (so of ``run`` and ``mcp``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def openapi_options() -> list[Callable[[Any], Any]]:
    """``--openapi``, ``--openapi-header``, ``--openapi-auth`` (their values reach load_tools by these names)."""
    return [
        click.option("--openapi", multiple=True, metavar="PATH[@BASE_URL]",
                     help="an OpenAPI 3.0/3.1 document (JSON or YAML); each operation becomes a tool whose HTTP "
                          "request the host makes (repeatable)"),
        click.option("--openapi-header", multiple=True, metavar="[DOC:]NAME=VALUE",
                     help="a header for a document's requests; VALUE env:VAR reads the host's environment "
                          "(DOC: the file's name without extension, needed with several documents)"),
        click.option("--openapi-auth", multiple=True, metavar="[DOC:]SCHEME=VALUE",
                     help="the secret of one of a document's security schemes, e.g. bearerAuth=env:API_TOKEN "
                          "(kept on the host; never in the kernel or the recording)"),
    ]
