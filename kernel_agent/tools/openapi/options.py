"""The command line's OpenAPI options (``run``, ``mcp``): specs, and headers and credentials from the host.

::

    --openapi petstore.yaml@https://api.example.com/v1      a document, and its base URL (optional)
    --openapi-auth bearerAuth=env:PETSTORE_TOKEN            a security scheme's secret, from the environment
    --openapi-header petstore:X-Team=platform               a header for one document's requests

A secret need never be on the command line: ``env:NAME`` reads the host's environment variable
``NAME`` (an error when it is not set), where anything else is the value itself. With several
documents, a header or credential names the document it is for by the file's name without its
extension (``petstore:``); with one document the prefix may be left out. A credential is never
sent to a document it was not given for.

A document file is read once per process: ``kernel-agent mcp`` loads the tools again for each
client session, and a document a kernel could rewrite in between (one inside a workspace) must
not get to choose, for the next session, the server the credentials are sent to.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kernel_agent.errors import SessionOptionError
from kernel_agent.tools.openapi.document import load_document
from kernel_agent.tools.openapi.source import OpenApiSource

_READ: dict[str, dict[str, Any]] = {}  # absolute path -> the document as first read by this process
_BUILT: dict[tuple[Any, ...], OpenApiSource] = {}  # the options of a source -> it, as first built (never started)


def sources_from_options(specs: Iterable[str], headers: Iterable[str] = (), auth: Iterable[str] = (),
                         environ: Mapping[str, str] | None = None) -> list[OpenApiSource]:
    """One OpenApiSource per ``--openapi PATH[@BASE_URL]``, with the ``--openapi-header``/``--openapi-auth`` given."""
    environ = os.environ if environ is None else environ
    documents: dict[str, tuple[str, str | None]] = {}
    for spec in specs:
        path, base_url = _split(spec)
        name = Path(path).stem
        if name in documents:
            raise SessionOptionError(f"--openapi: two documents are named {name!r}; their headers and credentials "
                                     "could not be told apart (rename one file)")
        documents[name] = (path, base_url)
    given_headers = _assignments("--openapi-header", headers, documents, environ)
    given_auth = _assignments("--openapi-auth", auth, documents, environ)
    loaded = {name: _document(path) for name, (path, _) in documents.items()}
    for name, schemes in given_auth.items():
        _check_schemes(name, schemes, loaded[name])
    return [_source(path, loaded[name], base_url, given_headers.get(name, {}), given_auth.get(name, {}))
            for name, (path, base_url) in documents.items()]


def _source(path: str, document: dict[str, Any], base_url: str | None, headers: dict[str, str],
            auth: dict[str, str]) -> OpenApiSource:
    """A fresh source, built once per process for the same options (see OpenApiSource.fresh)."""
    key = (os.path.abspath(path), base_url, tuple(sorted(headers.items())), tuple(sorted(auth.items())))
    if key not in _BUILT:
        _BUILT[key] = OpenApiSource(document, base_url=base_url, headers=headers, auth=auth)
    return _BUILT[key].fresh()


def _check_schemes(name: str, given: Mapping[str, str], document: Mapping[str, Any]) -> None:
    """Every ``--openapi-auth`` names a declared scheme; the message does not repeat an unknown name.

    A secret pasted with an '=' in it (base64's padding, ``--openapi-auth c2VjcmV0=``) reads as
    ``NAME=VALUE``: its NAME is most of the secret, and an error saying it would print it to a terminal
    and a log.
    """
    components = document.get("components")
    declared = components.get("securitySchemes") if isinstance(components, dict) else None
    declared = declared if isinstance(declared, dict) else {}
    if any(scheme not in declared for scheme in given):
        raise SessionOptionError(f"--openapi-auth for {name}: a SCHEME that the document does not declare (not "
                                 f"repeated here: it may be a secret pasted with an '='); the document declares: "
                                 f"{', '.join(sorted(map(str, declared))) or 'no security schemes'}")


def _document(path: str) -> dict[str, Any]:
    """The document at ``path`` as this process first read it (see the module docstring)."""
    key = os.path.abspath(path)
    if key not in _READ:
        _READ[key], _ = load_document(path)
    return _READ[key]


def _split(spec: str) -> tuple[str, str | None]:
    """``PATH`` or ``PATH@URL`` (a path may hold '@': only an http(s) URL after the last one splits it)."""
    path, at, url = spec.rpartition("@")
    if at and path and url.startswith(("http://", "https://")):
        return path, url
    return spec, None


def _assignments(option: str, values: Iterable[str], documents: Mapping[str, tuple[str, str | None]],
                 environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``[DOCUMENT:]KEY=VALUE`` options by document; VALUE ``env:NAME`` is read from the environment."""
    result: dict[str, dict[str, str]] = {}
    for text in values:
        target, equals, value = text.partition("=")
        if not equals or not target or not value:
            # Not shown: a value pasted without its NAME= may be a secret (and "secret=" reads as NAME=).
            raise SessionOptionError(f"{option} expects [DOCUMENT:]NAME=VALUE, got something without a NAME= "
                                     "or without a VALUE (not repeated here: it may be a secret)")
        document, colon, key = target.partition(":")
        if not colon:
            if len(documents) != 1:
                shown = target if option == "--openapi-header" else "SCHEME"  # a scheme "name" may be a secret
                raise SessionOptionError(f"{option} {shown}=...: say which document it is for ({option} "
                                         f"DOCUMENT:{shown}=...; documents: {', '.join(documents) or 'none'})")
            document, key = next(iter(documents)), target
        if document not in documents:
            raise SessionOptionError(f"{option} names the document {document!r}, which no --openapi gives "
                                     f"(documents: {', '.join(documents) or 'none'})")
        if value.startswith("env:"):
            variable = value[len("env:"):]
            if variable not in environ:
                raise SessionOptionError(f"{option} {target}: the environment variable {variable!r} is not set")
            value = environ[variable]
        result.setdefault(document, {})[key] = value
    return result

