"""``%pip install NAME[==VERSION] ...`` inside the sandboxed kernel: a request to the host, never a download here.

The kernel has no network and cannot write where packages live. The magic
asks the host's ``packages.install`` tool (registered when the session has a
package policy); the host decides and installs, and the new packages appear
in a read-only directory already on ``sys.path``. Then the import caches are
refreshed, so ``import NAME`` in the same cell works. Options that would
choose where packages come from are refused: that is the host's choice.
IPython's own ``%pip`` (pip run inside the kernel) is replaced.
"""

from __future__ import annotations

import importlib
import shlex
from typing import Any

from IPython.core.error import UsageError

from kernel_agent.kernel import sdk
from kernel_agent.protocol.names import PACKAGES_INSTALL, PACKAGES_NAMESPACE

_TOOL = f"{PACKAGES_NAMESPACE}.{PACKAGES_INSTALL}"
_HARMLESS_OPTIONS = {"-q", "--quiet", "-U", "--upgrade", "--no-deps"}
USAGE = "usage: %pip install NAME[==VERSION] ... (the host decides, and installs wheels from its own sources)"


class PackageNotAllowedError(sdk.ToolDenied):
    """The host's package policy does not allow the package."""


class PackageInstallError(sdk.ToolError):
    """The host could not install the package (malformed request, no wheel, pip failed)."""


class PackagesUnavailableError(sdk.ToolError):
    """This session installs no packages: its host gave it no package policy."""


def _named(error: sdk.ToolError) -> sdk.ToolError:
    """The host's named error (its message starts with the name) as the kernel's class of that name."""
    if error.kind == "unknown_tool":
        return PackagesUnavailableError(_TOOL, "this session installs no packages (its host gave it no package "
                                               "policy); use what is installed, or ask the user")
    for kind in (PackageNotAllowedError, PackageInstallError):
        prefix = f"{kind.__name__}: "
        if error.message.startswith(prefix):
            return kind(error.tool, error.message[len(prefix):], kind=error.kind, details=error.details)
    return error


@sdk.bind(_TOOL)
def _install(requirements: list[str]) -> Any:
    """The host's packages.install tool (bound here whatever the session's SDK holds)."""


def install(*requirements: str) -> list[dict[str, str]]:
    """Ask the host to install ``requirements``; return what it installed (name, version, wheel, sha256)."""
    try:
        result = _install(list(requirements))
    except sdk.ToolError as error:
        raise _named(error) from None
    importlib.invalidate_caches()
    installed = result.get("installed") if isinstance(result, dict) else None
    return installed if isinstance(installed, list) else []


def pip(line: str) -> None:
    """%pip install NAME[==VERSION] ...: the host installs the packages its policy allows."""
    words = shlex.split(line)
    if not words or words[0] != "install":
        raise UsageError(USAGE)
    requirements = [w for w in words[1:] if w not in _HARMLESS_OPTIONS]
    chosen = [w for w in requirements if w.startswith("-")]
    if chosen or not requirements:
        raise UsageError(f"{' '.join(chosen)}: the host chooses where packages come from. {USAGE}" if chosen
                         else USAGE)
    for package in install(*requirements):
        print(f"Installed {package.get('name')} {package.get('version')} (sha256 {str(package.get('sha256'))[:12]})")


def register(shell: Any) -> None:
    """Make ``%pip`` this magic in ``shell`` (replacing IPython's)."""
    shell.register_magic_function(pip, "line", "pip")
