"""How the host runs its own Python for a session (pip installs, matplotlib's font cache): isolated from the kernel.

These programs run on the host, often as root, because a kernel asked
(``%pip install``) or a kernel is starting. Whatever a kernel can write
must not become their code or their configuration, and they need none of
the host's secrets:

- ``python -I``: neither the working directory (``python -m pip`` and
  ``python -c`` would put it first on ``sys.path``, and an analyst often
  starts the host in the very directory the kernel writes: ``kernel-agent
  run --workspace .``) nor ``PYTHON*`` variables nor the user's site
  directory decide what is imported;
- a host-private working directory, given by the caller;
- :func:`helper_env`: a minimal environment (the locale, ``PATH``,
  ``HOME``, temporary directory, proxies and certificate bundles), never
  the host's API keys and tokens.
"""

from __future__ import annotations

import os
import sys

#: Variables a helper may need to run and reach a package index: nothing that authenticates the host elsewhere.
_PASSED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
})


def python_command() -> list[str]:
    """This Python, isolated: no working directory, ``PYTHON*`` variable or user site on its import path."""
    return [sys.executable, "-I"]


def helper_env(*, prefixes: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """A minimal environment for a host helper: the variables above, those starting with ``prefixes``, ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if key in _PASSED or (prefixes and key.startswith(prefixes))}
    env.setdefault("PATH", os.defpath)
    return env | extra
