"""Landlock (Linux >= 5.13) through ctypes: file-system, TCP and signal confinement.

``restrict(read_only, read_write)`` allows reading/executing below ``read_only`` paths,
everything below ``read_write`` paths, and nothing else. On ABI >= 4 all TCP bind/connect
is refused; on ABI >= 6 the program can neither signal processes outside its own domain
(the harness, other sandboxes) nor reach abstract unix sockets outside it.
"""

from __future__ import annotations

import ctypes
import os

from . import libc

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1, 2, 4, 8
_FILE_ONLY = _EXECUTE | _WRITE_FILE | _READ_FILE | (1 << 14) | (1 << 15)  # + TRUNCATE, IOCTL_DEV
_READ = _EXECUTE | _READ_FILE | _READ_DIR


def _all_fs(abi: int) -> int:
    bits = (1 << 13) - 1  # EXECUTE .. MAKE_SYM (ABI 1)
    if abi >= 2:
        bits |= 1 << 13  # REFER
    if abi >= 3:
        bits |= 1 << 14  # TRUNCATE
    if abi >= 5:
        bits |= 1 << 15  # IOCTL_DEV
    return bits


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]


def abi_version() -> int:
    """Landlock ABI of the running kernel; 0 when unavailable."""
    if libc.nr("landlock_create_ruleset") is None:
        return 0
    try:
        return libc.syscall("landlock_create_ruleset", None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except OSError:
        return 0


def restrict(read_only: list[str], read_write: list[str]) -> int:
    """Confine this process (and its future children); returns the ABI used.

    Paths that do not exist are skipped. Needs no_new_privs (or CAP_SYS_ADMIN).
    """
    abi = abi_version()
    if abi < 1:
        raise OSError(38, "landlock is not available")
    all_fs = _all_fs(abi)
    attr = _RulesetAttr(all_fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall("landlock_create_ruleset", ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for paths, access in ((read_only, _READ), (read_write, all_fs)):
            for path in paths:
                _add_path(ruleset, path, access)
        libc.syscall("landlock_restrict_self", ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return abi


def _add_path(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            access &= _FILE_ONLY  # directory rights on a file are EINVAL
        rule = _PathBeneath(access, fd)
        libc.syscall("landlock_add_rule", ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)
