"""The errors of kernels on a Jupyter server, caught by meaning::

    KernelAgentError
    └── JupyterServerError            a Jupyter server could not be used as asked
        ├── ServerURLError            the URL is not an http(s) URL of a server (also a ValueError)
        ├── ServerUnreachableError    nothing answers at the URL (refused, DNS, timeout, TLS, cut)
        ├── ServerAuthError           the server refused the token (HTTP 401 or 403)
        ├── ServerHTTPError           any other HTTP error: its status and a bounded excerpt of the body
        ├── KernelNotFoundError       the server has no kernel of that id (never had, shut down, culled)
        └── KernelSpecNotFoundError   the server has no kernelspec of that name (also a KernelStartError)

A kernel that was started but never answered is a plain
:class:`~kernel_agent.errors.KernelStartError`. No message ever holds the
token: every text that comes from the server is passed through the
server's redaction before it is put in one.
"""

from __future__ import annotations

from kernel_agent.errors import KernelAgentError, KernelStartError


class JupyterServerError(KernelAgentError):
    """A Jupyter Server, Kernel Gateway or Enterprise Gateway could not be used as asked (the message says why)."""


class ServerURLError(JupyterServerError, ValueError):
    """The server URL is not usable: not http(s), no host, or credentials in it."""


class ServerUnreachableError(JupyterServerError):
    """Nothing answers at the server's URL (connection refused, unknown host, timeout, TLS failure, cut connection)."""


class ServerAuthError(JupyterServerError):
    """The server refused the token (HTTP 401 or 403): none was given, or it is not the server's."""


class ServerHTTPError(JupyterServerError):
    """The server answered with an HTTP error; ``status`` is its code, the message has a bounded excerpt."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class KernelNotFoundError(JupyterServerError):
    """The server has no kernel of that id: it never existed, or it was shut down or culled."""


class KernelSpecNotFoundError(JupyterServerError, KernelStartError):
    """The server has no kernelspec of the name asked for; the message lists those it has."""
