"""Enter the sandbox: join the session's cgroups, then exec bwrap with a clean environment.

Run as ``python -I -S _enter.py SPEC_JSON`` between jupyter_client and
bwrap; stdlib only, no site-packages (fast, and nothing importable can
interfere). The spec: ``cgroups`` (directories whose ``cgroup.procs`` this
process joins before anything runs in the sandbox, so every process in it
is counted), ``argv`` (what to exec), ``env`` (its environment; default
just PATH, so bwrap's own process, pid 1 of the sandbox, holds nothing of
the host's environment) and ``seccomp`` (a compiled filter, hex: it is put
in a memfd whose number replaces the ``@seccomp`` item of argv).
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    spec = json.loads(sys.argv[1])
    for directory in spec.get("cgroups", []):
        with open(os.path.join(directory, "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    argv = spec["argv"]
    if spec.get("seccomp"):
        fd = os.memfd_create("kernel-agent-seccomp", 0)  # inheritable: bwrap reads it
        os.write(fd, bytes.fromhex(spec["seccomp"]))
        os.lseek(fd, 0, os.SEEK_SET)
        argv = [str(fd) if item == "@seccomp" else item for item in argv]
    os.execve(argv[0], argv, spec.get("env") or {"PATH": "/usr/bin:/bin"})


if __name__ == "__main__":
    main()
