"""Put the host's extra import directories first on the kernel's ``sys.path``.

The host names them in ``KERNEL_AGENT_PYTHON_PATH`` (os.pathsep-separated):
the session's package directory (packages the host installed on request,
see ``kernel_agent.packages``) and the policy's ``python_env``. Both are
read-only in the sandbox. Called after the kernel's own runtime (ipykernel,
IPython, kernel_agent.kernel) is imported, so an environment holding other
versions of those cannot change the running kernel; the model's imports find
the environment's packages first. ``.pth`` files in them are honoured, as
``site`` does for site-packages.
"""

from __future__ import annotations

import os
import site
import sys

from kernel_agent.protocol.names import PYTHON_PATH_ENV


def add_from_env() -> list[str]:
    """Put the directories named in the environment (and what their .pth files add) first; return them."""
    raw = os.environ.pop(PYTHON_PATH_ENV, "")
    directories = [d for d in raw.split(os.pathsep) if d]
    if not directories:
        return []
    before = list(sys.path)
    for directory in directories:
        site.addsitedir(directory)
    added = [entry for entry in sys.path if entry not in before]
    sys.path[:] = added + before
    return added
