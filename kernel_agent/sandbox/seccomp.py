"""A seccomp filter for the sandbox: refuse the syscalls an agent's code has no use for.

bwrap loads it (``--seccomp FD``) just before it execs the kernel, so it
covers the kernel and everything it starts. Refused (EPERM unless noted):

* creating user namespaces: ``unshare``/``clone`` with CLONE_NEWUSER, and
  ``clone3`` (ENOSYS, so glibc falls back to ``clone``, whose flags a filter
  can read). On a root host the kernel runs without a user namespace of its
  own, where bwrap's ``--disable-userns`` is not available; this is what
  stops nested user namespaces there;
* inspecting or writing other processes: ptrace, process_vm_readv/writev;
* kernel attack surface an agent never needs: keyrings, bpf,
  perf_event_open, userfaultfd, module loading, kexec, mount and the new
  mount API, pivot_root, setns, swap, reboot, open_by_handle_at, and
  io_uring (whose queued operations would not pass through this filter);
* every syscall of a foreign ABI (32-bit ``int 0x80``, x32), which would
  otherwise reach the same functions under other numbers.

Only x86_64 is described here; elsewhere no filter is installed and the
session metadata says so.
"""

from __future__ import annotations

import errno
import platform
import struct

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_CLONE_NEWUSER = 0x10000000

# BPF opcodes (linux/filter.h, linux/bpf_common.h)
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000

# seccomp_data offsets
_NR, _ARCH, _ARG0_LOW = 0, 4, 16

X86_64_DENIED = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
    "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "mount": 165, "umount2": 166, "pivot_root": 155,
    "swapon": 167, "swapoff": 168, "reboot": 169, "setns": 308, "open_by_handle_at": 304,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442, "acct": 163, "quotactl": 179,
    # io_uring: a large, often-exploited kernel surface, and its operations bypass this filter.
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
}
_X86_64_UNSHARE, _X86_64_CLONE, _X86_64_CLONE3 = 272, 56, 435


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _x86_64_program() -> bytes:
    deny = _RET_ERRNO | errno.EPERM
    body: list[bytes] = []
    # Refused outright.
    for number in X86_64_DENIED.values():
        body += [_instruction(_JEQ_K, number, 0, 1), _instruction(_RET_K, deny)]
    body += [_instruction(_JEQ_K, _X86_64_CLONE3, 0, 1), _instruction(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # unshare and clone: refused only with CLONE_NEWUSER in their first argument.
    for number in (_X86_64_UNSHARE, _X86_64_CLONE):
        body += [
            _instruction(_JEQ_K, number, 0, 4),
            _instruction(_LD_W_ABS, _ARG0_LOW),
            _instruction(_JSET_K, _CLONE_NEWUSER, 0, 1),
            _instruction(_RET_K, deny),
            _instruction(_LD_W_ABS, _NR),  # restore the syscall number for the next test
        ]
    body.append(_instruction(_RET_K, _RET_ALLOW))
    header = [
        _instruction(_LD_W_ABS, _ARCH),
        _instruction(_JEQ_K, _AUDIT_ARCH_X86_64, 1, 0),
        _instruction(_RET_K, _RET_ERRNO | errno.ENOSYS),  # a foreign ABI
        _instruction(_LD_W_ABS, _NR),
        _instruction(_JGE_K, _X32_SYSCALL_BIT, 0, 1),
        _instruction(_RET_K, _RET_ERRNO | errno.ENOSYS),  # the x32 ABI
    ]
    return b"".join(header + body)


def filter_program() -> bytes | None:
    """The compiled filter for this machine, or None where none is described."""
    if platform.machine() in ("x86_64", "AMD64"):
        return _x86_64_program()
    return None
