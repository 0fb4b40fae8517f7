"""Thin ctypes wrappers over the Linux system calls the sandbox needs.

Python 3.10/3.11 have no ``os.unshare``/``os.mount``; these wrappers raise ``OSError`` with
the errno, like the ``os`` functions do. Syscall numbers are per architecture; only
x86_64 and aarch64 are supported for the layers that need raw numbers (seccomp,
pivot_root, landlock); other machines lose those layers explicitly.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

MACHINE = platform.machine()

# name -> (x86_64, aarch64). aarch64 uses the asm-generic table.
_NR: dict[str, tuple[int | None, int | None]] = {
    "pivot_root": (155, 41),
    "capset": (126, 91),
    "mount_setattr": (442, 442),
    "landlock_create_ruleset": (444, 444),
    "landlock_add_rule": (445, 445),
    "landlock_restrict_self": (446, 446),
}


def nr(name: str) -> int | None:
    """Syscall number of ``name`` on this machine, or None when unknown here."""
    pair = _NR.get(name)
    if pair is None:
        return None
    return {"x86_64": pair[0], "aarch64": pair[1]}.get(MACHINE)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def syscall(name: str, *args: object) -> int:
    """Call syscall ``name`` with ctypes-compatible ``args``; OSError on failure."""
    number = nr(name)
    if number is None:
        raise OSError(38, f"{name}: no syscall number known for {MACHINE}")
    return _check(_libc.syscall(number, *args), name)


# unshare(2) / clone(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECCOMP = 22
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    ret = _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(ret, f"mount {source!r} on {target!r}")


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(os.fsencode(target), ctypes.c_int(flags)), f"umount {target!r}")


def pivot_root(new_root: str, put_old: str) -> None:
    syscall("pivot_root", os.fsencode(new_root), os.fsencode(put_old))


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
AT_RECURSIVE = 0x8000
AT_FDCWD = -100


def mount_setattr_recursive(path: str, attr_set: int) -> None:
    """Set mount attributes on ``path`` and every mount below it (Linux >= 5.12)."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    syscall(
        "mount_setattr",
        ctypes.c_int(AT_FDCWD),
        os.fsencode(path),
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    args = [ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5)]
    return _check(_libc.prctl(ctypes.c_int(option), *args), f"prctl({option})")


def prctl_ptr(option: int, arg2: int, pointer: object) -> int:
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), pointer, 0, 0), f"prctl({option})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


CAP_DAC_READ_SEARCH = 2
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT_RAISE = 2


def _capset(caps: int) -> None:
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = data[0].inheritable = caps & 0xFFFFFFFF
    syscall("capset", ctypes.byref(header), ctypes.byref(data))


def keep_only_capability(cap: int, change_uid: Callable[[], None]) -> None:
    """Run ``change_uid`` (root -> ordinary uid) keeping capability ``cap`` and no other.

    The capability is also made ambient, so programs the sandboxed code executes keep it.
    """
    for other in range(64):
        if other != cap:
            try:
                prctl(PR_CAPBSET_DROP, other)
            except OSError:
                break
    prctl(PR_SET_KEEPCAPS, 1)
    change_uid()
    _capset(1 << cap)
    prctl(PR_SET_KEEPCAPS, 0)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def drop_all_capabilities() -> None:
    """Empty the bounding, ambient, inheritable, permitted and effective sets.

    With ``SECBIT_NOROOT`` locked first, uid 0 inside the user namespace regains nothing
    on ``execve``: the program is an ordinary user that owns nothing outside its tmp.
    """
    # SECBIT_NOROOT | NO_SETUID_FIXUP | KEEP_CAPS(off) | NO_CAP_AMBIENT_RAISE, each with its lock bit
    prctl(PR_SET_SECUREBITS, 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80)
    for cap in range(64):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            break  # past CAP_LAST_CAP
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _capset(0)
