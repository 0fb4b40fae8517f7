"""A small seccomp-bpf deny-list, built by hand (no libseccomp needed).

The filter is a straight line of ``if nr == X: return ERRNO`` pairs, so no jump ever
exceeds the 8-bit BPF offset. It refuses what a graded program never needs and what
would let it undo the other layers: new namespaces, mounts, ptrace and cross-process
memory access, kernel modules, keyrings, BPF, io_uring (which bypasses seccomp), and
``socket()`` (``socketpair`` stays allowed, so ``multiprocessing`` works). ``clone3``
answers ENOSYS so libc falls back to ``clone``, whose flags *can* be inspected.
"""

from __future__ import annotations

import ctypes
import errno
import struct

from . import libc

_DENY = (  # noqa: SIM905 - one string reads better than 50 quoted names
    "ptrace process_vm_readv process_vm_writev mount umount2 pivot_root chroot unshare setns "
    "swapon swapoff reboot kexec_load kexec_file_load init_module finit_module delete_module "
    "bpf perf_event_open keyctl add_key request_key userfaultfd socket io_uring_setup "
    "io_uring_enter io_uring_register open_by_handle_at name_to_handle_at quotactl acct "
    "settimeofday clock_settime clock_adjtime adjtimex syslog sethostname setdomainname iopl "
    "ioperm lookup_dcookie vhangup mount_setattr move_mount open_tree fsopen fsconfig fsmount "
    "fspick kcmp"
).split()

# name: (x86_64, aarch64); generated from the kernel's unistd headers.
_TABLE: dict[str, tuple[int | None, int | None]] = {
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "unshare": (272, 97), "setns": (308, 268), "swapon": (167, 224), "swapoff": (168, 225),
    "reboot": (169, 142), "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "bpf": (321, 280), "perf_event_open": (298, 241), "keyctl": (250, 219),
    "add_key": (248, 217), "request_key": (249, 218), "userfaultfd": (323, 282),
    "socket": (41, 198), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "quotactl": (179, 60), "acct": (163, 89),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "clock_adjtime": (305, 266),
    "adjtimex": (159, 171), "syslog": (103, 116), "sethostname": (170, 161),
    "setdomainname": (171, 162), "iopl": (172, None), "ioperm": (173, None),
    "lookup_dcookie": (212, 18), "vhangup": (153, 58), "mount_setattr": (442, 442),
    "move_mount": (429, 429), "open_tree": (428, 428), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433), "kcmp": (312, 272),
    "clone": (56, 220), "clone3": (435, 435), "kill": (62, 129),
}

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_CLONE_NS_FLAGS = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_JGE_K = 0x35
_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000


def _ret_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def supported() -> bool:
    """True when this architecture's syscall table is known."""
    return libc.MACHINE in _AUDIT_ARCH


def build_filter(*, deny_kill_all: bool) -> list[tuple[int, int, int, int]]:
    """The BPF program as ``(code, jt, jf, k)`` tuples.

    Args:
        deny_kill_all: also refuse ``kill(-1, sig)``; needed when there is no pid namespace
            to confine it.
    """
    col = 0 if libc.MACHINE == "x86_64" else 1
    num: dict[str, int] = {}
    for name, pair in _TABLE.items():
        if pair[col] is not None:
            num[name] = pair[col]  # type: ignore[assignment]
    prog = [
        (_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ_K, 1, 0, _AUDIT_ARCH[libc.MACHINE]),
        (_RET_K, 0, 0, _RET_KILL_PROCESS),  # a foreign ABI (i386, x32 via arch) is never allowed
        (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if libc.MACHINE == "x86_64":  # x32 syscalls share the arch value; their numbers have bit 30
        prog += [(_JGE_K, 0, 1, 0x40000000), (_RET_K, 0, 0, _ret_errno(errno.ENOSYS))]
    for name in _DENY:
        if name in num:
            prog += [(_JEQ_K, 0, 1, num[name]), (_RET_K, 0, 0, _ret_errno(errno.EPERM))]
    prog += [(_JEQ_K, 0, 1, num["clone3"]), (_RET_K, 0, 0, _ret_errno(errno.ENOSYS))]
    # clone: refuse namespace flags (args[0], low 32 bits at offset 16)
    prog += [
        (_JEQ_K, 0, 4, num["clone"]),
        (_LD_W_ABS, 0, 0, 16),
        (_JSET_K, 0, 1, _CLONE_NS_FLAGS),
        (_RET_K, 0, 0, _ret_errno(errno.EPERM)),
        (_RET_K, 0, 0, _RET_ALLOW),
    ]
    if deny_kill_all:  # kill(pid == -1): low 32 bits of args[0] are 0xffffffff
        prog += [
            (_JEQ_K, 0, 4, num["kill"]),
            (_LD_W_ABS, 0, 0, 16),
            (_JEQ_K, 0, 1, 0xFFFFFFFF),
            (_RET_K, 0, 0, _ret_errno(errno.EPERM)),
            (_RET_K, 0, 0, _RET_ALLOW),
        ]
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    return prog


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(*, deny_kill_all: bool) -> None:
    """Load the filter into this (single-threaded) process; needs no_new_privs set first."""
    prog = build_filter(deny_kill_all=deny_kill_all)
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    libc.prctl_ptr(libc.PR_SET_SECCOMP, 2, ctypes.byref(fprog))  # SECCOMP_MODE_FILTER
