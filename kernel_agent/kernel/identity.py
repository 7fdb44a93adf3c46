"""Become the sandbox's unprivileged user, before any user code runs.

On a root host, bwrap runs privileged without a user namespace and starts
this process as root with only CAP_SETUID and CAP_SETGID (see
``kernel_agent.sandbox.bwrap.sandbox_argv``). Switching every uid and gid
to the unprivileged one clears those too; no-new-privs then stops setuid
binaries (su, sudo on the read-only /usr) from giving anything back. The
process fails closed: if any capability or privileged id survives, it exits.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV_VAR = "KERNEL_AGENT_RUN_AS"
WORKDIR_ENV_VAR = "KERNEL_AGENT_WORKDIR"
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38


def drop_privileges_from_env() -> None:
    """Switch to the uid named in the environment (if any) and forbid regaining privileges."""
    raw = os.environ.pop(ENV_VAR, "")
    if raw:
        uid = int(raw)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    libc = ctypes.CDLL(None, use_errno=True)
    if raw:
        # Changing uid made the process non-dumpable, which makes its own /proc/self
        # files root's; an ordinary process (and every child after exec) is dumpable.
        libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit("kernel-agent: cannot set no-new-privs; refusing to run")
    if raw and (0 in os.getresuid() or 0 in os.getresgid() or _effective_capabilities() != 0):
        sys.exit("kernel-agent: privileges survived the switch to the sandbox uid; refusing to run")
    if workdir := os.environ.get(WORKDIR_ENV_VAR):
        try:
            os.chdir(workdir)
        except OSError as exc:
            # A read-only launch directory the sandbox uid may not enter (mode 0700): the kernel
            # still runs, in its home, and says why in the kernel log.
            home = os.environ.get("HOME", "/")
            print(f"kernel-agent: cannot enter {workdir} ({exc.strerror}); working in {home}", file=sys.stderr)
            os.chdir(home)


def _effective_capabilities() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return -1
