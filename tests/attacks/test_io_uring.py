"""The seccomp filter refuses io_uring: called from inside a real kernel, each call fails."""

from __future__ import annotations

import json
import platform

import pytest

from kernel_agent import Session

PROBE = """
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)  # struct io_uring_params
found = {}
for name, number, args in (("io_uring_setup", 425, (8, params)), ("io_uring_enter", 426, (0, 1, 0, 0, None, 0)),
                           ("io_uring_register", 427, (0, 0, None, 0))):
    result = libc.syscall(number, *args)
    found[name] = [result, errno.errorcode.get(ctypes.get_errno(), "?")]
print(json.dumps(found))
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the filter is described for x86_64 only")
async def test_io_uring_is_refused(session: Session) -> None:
    result = await session.execute(PROBE)
    found = json.loads(result.stdout)
    # Without the filter, io_uring_setup returns a descriptor; enter/register on fd 0 would give EBADF/EOPNOTSUPP.
    assert found == {name: [-1, "EPERM"] for name in ("io_uring_setup", "io_uring_enter", "io_uring_register")}
