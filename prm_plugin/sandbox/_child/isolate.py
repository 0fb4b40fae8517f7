"""Isolation stages, run in the processes the zygote forks.

Stage 1 runs in the first fork (``C``): a new session, then the namespaces. As root no
user namespace is needed: root creates mount/pid/net/ipc/uts namespaces directly and the
program later runs as an unused uid, which the kernel treats as an ordinary user (its
RLIMIT_NPROC holds, unlike root's). Without root, a user namespace maps the caller's uid.

Stage 2 runs in the second fork (``C2``), pid 1 of the new pid namespace: a fresh root on
tmpfs with read-only binds of the system and the interpreter, a size-capped /tmp, a
private /proc, then rlimits, dropping privileges, landlock and seccomp. Every step that
the plan asks for either succeeds or raises: nothing is silently skipped.
"""

from __future__ import annotations

import ctypes
import os
import resource
from typing import Any

from . import landlock, libc, seccomp

NS_FLAGS = libc.CLONE_NEWNS | libc.CLONE_NEWPID | libc.CLONE_NEWNET | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS
DEV_NODES = ("null", "zero", "full", "random", "urandom")


def stage1(variant: str, uid: int) -> None:
    """Namespaces for ``variant`` ("root", "userns" or "basic"); ``uid`` is the run's uid."""
    os.setsid()
    if variant == "root":
        libc.unshare(NS_FLAGS)
    elif variant == "userns":
        outer_uid, outer_gid = os.geteuid(), os.getegid()
        libc.unshare(libc.CLONE_NEWUSER | NS_FLAGS)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {outer_uid} 1")
        _write("/proc/self/gid_map", f"0 {outer_gid} 1")


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def build_root(root: str, mounts: list[list[Any]], uid: int, tmp_mb: int, proc: bool) -> None:
    """Fill ``root`` (an empty host directory) with the sandbox's file system and enter it."""
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    libc.mount("tmpfs", root, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "size=4m,mode=0755")
    for sub in ("proc", "tmp", "dev/shm", "etc", ".old"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    _write(os.path.join(root, "etc/passwd"), f"sandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n")
    _write(os.path.join(root, "etc/group"), f"sandbox:x:{uid}:\n")
    _write(os.path.join(root, "etc/hosts"), "127.0.0.1 localhost\n")
    # The private /tmp first: read-only binds of host paths under /tmp (a virtualenv or a
    # checkout there) then sit on top of it instead of being hidden by it.
    size = f"size={tmp_mb}m,mode=1777"
    for sub in ("tmp", "dev/shm"):
        libc.mount("tmpfs", os.path.join(root, sub), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, size)
    ro = libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV
    for kind, path, *rest in mounts:
        target = root + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if kind == "symlink":
            os.symlink(rest[0], target)
            continue
        if kind == "dir":
            os.makedirs(target, exist_ok=True)
        else:
            open(target, "a").close()
        _bind(path, target, ro)
    for name in DEV_NODES:
        target = os.path.join(root, "dev", name)
        open(target, "a").close()
        _bind("/dev/" + name, target, libc.MOUNT_ATTR_NOSUID)
    for name, dest in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(dest, os.path.join(root, "dev", name))
    if proc:  # must happen before pivot_root: the kernel wants a visible /proc to copy
        libc.mount("proc", os.path.join(root, "proc"), "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
    libc.pivot_root(root, os.path.join(root, ".old"))
    os.chdir("/")
    libc.umount2("/.old", libc.MNT_DETACH)
    os.rmdir("/.old")
    libc.mount(None, "/", None, libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV)
    os.chdir("/tmp")
    ctypes.CDLL(None, use_errno=True).sethostname(b"sandbox", 7)


def _bind(source: str, target: str, attrs: int) -> None:
    libc.mount(source, target, None, libc.MS_BIND | libc.MS_REC)
    try:
        libc.mount_setattr_recursive(target, attrs)
    except OSError as exc:
        if exc.errno != 38:  # ENOSYS: kernel < 5.12, fall back to a (non-recursive) remount
            raise
        flags = libc.MS_REMOUNT | libc.MS_BIND | libc.MS_NOSUID
        flags |= (libc.MS_RDONLY | libc.MS_NODEV) if attrs & libc.MOUNT_ATTR_RDONLY else 0
        flags |= _locked_flags(target)
        libc.mount(None, target, None, flags)


def _locked_flags(path: str) -> int:
    # A remount in a user namespace must keep the flags the source mount was locked with.
    f = os.statvfs(path).f_flag
    pairs = ((os.ST_NOEXEC, libc.MS_NOEXEC), (os.ST_NOATIME, libc.MS_NOATIME),
             (os.ST_NODIRATIME, libc.MS_NODIRATIME), (getattr(os, "ST_RELATIME", 4096), libc.MS_RELATIME))
    return sum(ms for st, ms in pairs if f & st)


def set_limits(limits: dict[str, int]) -> None:
    """Apply rlimits; ``nproc`` is only set when the plan says the kernel enforces it."""
    table = {
        "as_bytes": resource.RLIMIT_AS,
        "fsize_bytes": resource.RLIMIT_FSIZE,
        "nofile": resource.RLIMIT_NOFILE,
        "nproc": resource.RLIMIT_NPROC,
        "core": resource.RLIMIT_CORE,
    }
    for key, res in table.items():
        if limits.get(key) is not None:
            resource.setrlimit(res, (limits[key], limits[key]))
    if limits.get("cpu_s"):
        cpu = int(limits["cpu_s"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def drop_privileges(variant: str, uid: int, keep_dac_read: bool = False) -> None:
    """Become an ordinary user with no capabilities and no way to regain any.

    ``keep_dac_read`` (basic level as root only, when the interpreter lives where an
    ordinary uid cannot read, e.g. under /root): keep CAP_DAC_READ_SEARCH alone, so the
    program can import the standard library; landlock then bounds what it can read.
    """
    if variant == "userns" or os.geteuid() != 0:
        if variant == "userns":
            libc.drop_all_capabilities()
    elif keep_dac_read:
        libc.keep_only_capability(libc.CAP_DAC_READ_SEARCH, lambda: _become(uid))
    else:
        _become(uid)
    # Keep /proc/self readable by the program itself (ptrace is refused by seccomp anyway).
    libc.prctl(libc.PR_SET_DUMPABLE, 1)
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)


def _become(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def confine(variant: str, read_only: list[str], workdir: str, layers: dict[str, Any]) -> None:
    """Landlock and seccomp, as far as the plan's ``layers`` say they are available."""
    dev = ["/dev/" + n for n in DEV_NODES]
    if layers.get("landlock"):
        if variant == "basic":
            layers["landlock"] = landlock.restrict(read_only, [workdir, *dev])
        else:
            layers["landlock"] = landlock.restrict(["/"], ["/tmp", "/dev/shm", *dev])
    if layers.get("seccomp"):
        seccomp.install(deny_kill_all=variant == "basic")
