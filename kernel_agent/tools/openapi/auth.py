"""Credentials for an OpenAPI document's security schemes, held by the host and added to its requests.

``auth={"bearerAuth": token, "apiKey": key, "basic": ("user", "password")}`` names schemes of the
document's ``components.securitySchemes``. An operation gets the credentials its security
requirement asks for (its own ``security``, else the document's); the values never enter a
tool's schema, description or SDK, so the kernel and the recording never see them, and they
are set after the call's own parameters, so a parameter of the same name cannot replace them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernel_agent.errors import OpenApiError
from kernel_agent.tools.openapi.document import Document, pointer


@dataclass(frozen=True)
class Credential:
    """Where one scheme's secret goes: a header, a query parameter or a cookie."""

    location: str  # header, query or cookie
    name: str
    value: str = field(repr=False)
    #: The secret as given and its parts (a basic password, a bearer token): what an answer must not echo.
    secrets: tuple[str, ...] = field(repr=False, default=())

    def __repr__(self) -> str:  # never the value (a repr can end up in a log or a traceback)
        return f"Credential({self.location} {self.name!r})"


def credentials(document: Document, auth: Mapping[str, Any]) -> dict[str, Credential]:
    """The credential of each scheme named in ``auth``; an unknown or unsupported scheme is an error."""
    components = document.data.get("components")
    schemes = components.get("securitySchemes") if isinstance(components, dict) else None
    schemes = schemes if isinstance(schemes, dict) else {}
    result: dict[str, Credential] = {}
    for scheme_name, secret in auth.items():
        where = pointer("components", "securitySchemes", str(scheme_name))
        if scheme_name not in schemes:
            known = ", ".join(sorted(map(str, schemes))) or "none"
            raise OpenApiError(f"auth names the security scheme {str(scheme_name)!r}, which the document does not "
                               f"declare (it declares: {known})", pointer=where)
        scheme, where = document.deref(schemes[scheme_name], where)
        result[scheme_name] = _credential(scheme, secret, where)
    return result


def _credential(scheme: Any, secret: Any, where: str) -> Credential:
    kind = scheme.get("type") if isinstance(scheme, dict) else None
    if kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
        if isinstance(secret, (tuple, list)) and len(secret) == 2:
            secret = f"{secret[0]}:{secret[1]}"
        token = base64.b64encode(_text(secret, where).encode()).decode()
        return Credential("header", "Authorization", f"Basic {token}",
                          secrets=(secret, secret.partition(":")[2], token))
    if (kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer") or kind in ("oauth2", "openIdConnect"):
        return Credential("header", "Authorization", f"Bearer {_text(secret, where)}", secrets=(secret,))
    if kind == "apiKey" and scheme.get("in") in ("header", "query", "cookie") and isinstance(scheme.get("name"), str):
        return Credential(scheme["in"], scheme["name"], _text(secret, where), secrets=(secret,))
    raise OpenApiError(f"security scheme of type {kind!r} is not supported (supported: apiKey, http basic, "
                       "http bearer, oauth2 and openIdConnect with a token)", pointer=where)


def _text(secret: Any, where: str) -> str:
    if not isinstance(secret, str) or not secret:
        raise OpenApiError("a credential must be a non-empty string (basic: 'user:password' or a pair)",
                           pointer=where)
    if any(c in secret for c in "\r\n\0"):
        raise OpenApiError("a credential must not contain line breaks or NUL", pointer=where)
    return secret


def for_operation(requirements: tuple[tuple[str, ...], ...] | None, default: tuple[tuple[str, ...], ...] | None,
                  held: Mapping[str, Credential]) -> list[Credential]:
    """The credentials to send: the first alternative all of whose schemes we hold, else what we hold of the first."""
    alternatives = requirements if requirements is not None else default
    if not alternatives:
        return []
    for alternative in sorted(alternatives, key=lambda names: not names):  # anonymous ({}) last
        if all(name in held for name in alternative):
            return [held[name] for name in alternative]
    return [held[name] for name in alternatives[0] if name in held]
