"""Parent side of the zygote: starting it, the file-system plan, per-run uids.

The plan (what the sandbox sees) is computed here once: read-only binds of the system
directories, the interpreter's prefix and (optionally) its site-packages, a handful of
/etc files, and the environment the program gets (no variable of the parent's).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any

_PKG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child")
# Load the _child package by location: putting its directory on sys.path would let the
# parent package's modules shadow standard ones in the zygote.
_BOOT = (
    "import sys, importlib.util as u; "
    "s = u.spec_from_file_location('_child', {init!r}, submodule_search_locations=[{pkg!r}]); "
    "m = u.module_from_spec(s); sys.modules['_child'] = m; s.loader.exec_module(m); "
    "from _child import zygote; zygote.main()"
)
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives")
_ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1"}
CHILD_ENV = {**_ZYGOTE_ENV, "HOME": "/tmp", "TMPDIR": "/tmp", "USER": "sandbox", "PYTHONIOENCODING": "utf-8"}
UID_BASE_ENV = "PRM_PLUGIN_SANDBOX_UID_BASE"


def _covered(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def mount_plan(python: str, site_dirs: list[str]) -> list[list[Any]]:
    """Entries ``["dir"|"file", path]`` or ``["symlink", path, target]``, parents first."""
    entries: list[list[Any]] = []
    dirs: list[str] = []
    for path in _SYSTEM_DIRS + _ETC:
        if os.path.islink(path):
            entries.append(["symlink", path, os.readlink(path)])
        elif os.path.isdir(path):
            entries.append(["dir", path])
            dirs.append(path)
        elif os.path.isfile(path):
            entries.append(["file", path])
    prefix = os.path.realpath(sys.base_prefix)
    for path in [prefix, os.path.dirname(os.path.realpath(python)), *site_dirs]:
        if os.path.isdir(path) and not _covered(path, dirs):
            entries.append(["dir", path])
            dirs.append(path)
    return entries


def site_dirs() -> list[str]:
    """This interpreter's site-packages (real paths), without the user site."""
    return [os.path.realpath(p) for p in site.getsitepackages() if os.path.isdir(p)]


def readable_by_anyone(path: str) -> bool:
    """Whether an ordinary uid can reach and read ``path`` (every parent searchable)."""
    path = os.path.realpath(path)
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        current = "/".join(parts[:i]) or "/"
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return False
        need = 0o005 if current == path else 0o001
        if mode & need != need:
            return False
    return True


class ZygoteProcess:
    """One zygote interpreter and the socket its requests go through."""

    def __init__(self, python: str, plan: dict[str, Any]) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        plan = {**plan, "sock_fd": child.fileno()}
        self.proc = subprocess.Popen(
            [python, "-s", "-S", "-X", "utf8", "-c", _BOOT.format(init=os.path.join(_PKG, "__init__.py"), pkg=_PKG)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=None,
            pass_fds=[child.fileno()], env=_ZYGOTE_ENV, cwd="/",
        )
        child.close()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(plan).encode())
        self.proc.stdin.close()
        self.sock = parent
        self._lock = threading.Lock()

    def request(self, message: dict[str, Any], fds: list[int]) -> None:
        from .model import SandboxError

        with self._lock:
            try:
                socket.send_fds(self.sock, [json.dumps(message).encode()], fds)
            except OSError as exc:
                raise SandboxError(f"the sandbox zygote is gone ({exc}); create a new Sandbox") from exc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.sock.close()  # the zygote kills its live sandboxes and exits on EOF
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class UidSlots:
    """Distinct unused uids for concurrent runs (root only).

    Each run gets its own uid, so the kernel's per-uid process limit is per run and, at
    the basic level, ``kill(-1)`` as that uid reaches exactly that run's processes.
    """

    def __init__(self, size: int = 256) -> None:
        base = os.environ.get(UID_BASE_ENV)
        self.base = int(base) if base else 1_900_000_000 + (os.getpid() % 50_000) * size
        self._free = list(range(size))
        self._cond = threading.Condition()

    def acquire(self) -> int:
        with self._cond:
            while not self._free:
                self._cond.wait()
            return self.base + self._free.pop()

    def release(self, uid: int) -> None:
        with self._cond:
            self._free.append(uid - self.base)
            self._cond.notify()


_slots: UidSlots | None = None
_slots_lock = threading.Lock()


def uid_slots() -> UidSlots:
    """The process-wide pool: two Sandboxes must never hand out the same uid at once."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = UidSlots()
        return _slots


def make_dir(prefix: str, mode: int = 0o755) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, mode)
    return path


def remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
