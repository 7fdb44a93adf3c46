"""Packages a kernel asks for, installed by the host: the policy, the installer, the tool and recorded installs.

No network inside the sandbox, ever: ``%pip install NAME`` in the kernel is a
tool call to the host (:mod:`.tool`), which decides by the session's
:class:`~kernel_agent.packages.policy.PackagePolicy` and installs wheels
with its own pip (:mod:`.installer`) into a directory the kernel sees
read-only. Each install is recorded (name, version, wheel, sha256); replay
and resume install the same files again, if their own policy allows
(:mod:`.recorded`).
"""

from kernel_agent.packages.policy import PackagePolicy

__all__ = ["PackagePolicy"]
