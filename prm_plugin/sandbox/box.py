"""The :class:`Sandbox`: picks the strongest isolation this machine allows, runs programs.

Levels, tried in order (``isolation="auto"``):

- ``full``/root: as root, fresh mount + pid + network + ipc + uts namespaces, then the
  program runs as an unused uid (so the kernel's process limit holds).
- ``full``/userns: without root, the same namespaces inside a user namespace.
- ``basic``: no namespaces; rlimits, a new session, a subreaper, tree tracking, and
  landlock/seccomp where the kernel has them. Logged once, loudly, with what is lost.

The level and the layers in force are recorded in every result.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Literal

from . import launcher
from ._child import landlock, seccomp
from .model import ExecResult, Level, Limits, SandboxError
from .run import Exited, Frame, Run, exec_result

log = logging.getLogger("prm_plugin.sandbox")
ISOLATION_ENV = "PRM_PLUGIN_SANDBOX_ISOLATION"
_PROBE_FULL = "import os\nassert os.getpid() == 1, 'not pid 1 of a pid namespace'\n"
_warned: set[str] = set()
_warn_lock = threading.Lock()


class Sandbox:
    """A zygote plus the isolation plan; thread-safe, runs many programs concurrently.

    Args:
        isolation: ``"auto"`` (strongest available), ``"full"`` (fail if namespaces are
            unavailable) or ``"basic"`` (force the fallback, e.g. to test it). The
            environment variable ``PRM_PLUGIN_SANDBOX_ISOLATION`` overrides ``"auto"``.
        site_packages: expose this interpreter's site-packages read-only (numpy etc.).
        python: the interpreter to run programs with (default: this one, resolved).
        variants: how the full level may be built, tried in order: ``"root"`` (namespaces
            made as root, program under an unused uid) and/or ``"userns"`` (inside a user
            namespace). Default: both as root, ``userns`` otherwise. Mostly for tests.
    """

    def __init__(
        self,
        isolation: Literal["auto", "full", "basic"] = "auto",
        *,
        site_packages: bool = True,
        python: str | None = None,
        variants: Sequence[str] | None = None,
    ) -> None:
        if isolation == "auto":
            isolation = os.environ.get(ISOLATION_ENV, "auto") or "auto"  # type: ignore[assignment]
        if isolation not in ("auto", "full", "basic"):
            raise ValueError(
                f"isolation must be 'auto', 'full' or 'basic', got {isolation!r} "
                f"(check {ISOLATION_ENV} if you did not pass it)"
            )
        allowed = ("root", "userns")
        if variants is not None and (not variants or any(v not in allowed for v in variants)):
            raise ValueError(f"variants must be a non-empty list drawn from {allowed}, got {variants!r}")
        self.variants = list(variants) if variants is not None else None
        self.isolation = isolation
        self.site_packages = site_packages
        self.python = os.path.realpath(python or sys.executable)
        self._lock = threading.RLock()  # the probe runs inside start()
        self._zygote: launcher.ZygoteProcess | None = None
        self.variant = ""
        self.layers_plan: dict[str, Any] = {}
        self.layers: dict[str, Any] = {}
        self.nproc_enforced = False
        self._slots = launcher.uid_slots() if os.geteuid() == 0 else None
        self._root_dir = ""
        self._finalizer: weakref.finalize | None = None

    # ---- life cycle -----------------------------------------------------------------
    @property
    def zygote(self) -> launcher.ZygoteProcess:
        self.start()
        assert self._zygote is not None
        return self._zygote

    @property
    def level(self) -> Level:
        """``"full"`` or ``"basic"`` (starts the sandbox if needed)."""
        self.start()
        return "basic" if self.variant == "basic" else "full"

    def start(self) -> None:
        """Start the zygote and settle the isolation level (done lazily by every call)."""
        with self._lock:
            if self._zygote is not None and self._zygote.alive():
                return
            if self._zygote is not None:
                log.warning("sandbox zygote died (exit %s); starting a new one", self._zygote.proc.returncode)
            self._root_dir = self._root_dir or launcher.make_dir("prm-sandbox-root-")
            sites = self._sites()
            mounts = launcher.mount_plan(self.python, sites)
            plan = {
                "root_dir": self._root_dir, "mounts": mounts, "site_dirs": sites,
                "read_only": [m[1] for m in mounts if m[0] != "symlink"],
                "env": launcher.CHILD_ENV,
            }
            self._zygote = launcher.ZygoteProcess(self.python, plan)
            if self._finalizer is not None:
                self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _release, self._zygote, self._root_dir)
            self._choose_level()

    def close(self) -> None:
        """Stop the zygote (killing any sandbox still running) and remove its files."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()  # runs _release once; a garbage-collected Sandbox gets the same
                self._finalizer = None
            self._zygote = None
            self._root_dir = ""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sites(self) -> list[str]:
        return launcher.site_dirs() if self.site_packages else []

    def _candidates(self) -> list[tuple[str, dict[str, Any]]]:
        full = {"landlock": landlock.abi_version() > 0, "seccomp": seccomp.supported()}
        variants = self.variants or (["root"] if os.geteuid() == 0 else []) + ["userns"]
        out = []
        if self.isolation != "basic":
            out += [(v, {**full, "proc": proc}) for v in variants for proc in (True, False)]
        if self.isolation != "full":
            hidden = os.geteuid() == 0 and not all(
                launcher.readable_by_anyone(p) for p in [sys.base_prefix, *self._sites()]
            )
            out.append(("basic", {**full, "proc": False, "keep_dac_read": hidden}))
        return out

    def _choose_level(self) -> None:
        errors = []
        for variant, layers in self._candidates():
            if layers.get("keep_dac_read") and not (layers["landlock"] and layers["seccomp"]):
                errors.append(f"{variant}: the interpreter is unreadable for an unprivileged uid and "
                              "there is no landlock+seccomp to bound a read capability")
                continue
            self.variant, self.layers_plan = variant, layers
            if variant == "basic":
                self.nproc_enforced = self._slots is not None  # root: a private uid per run
            else:  # a uid other than 0 outside: the kernel counts its processes
                self.nproc_enforced = variant == "root" or os.geteuid() != 0
            probe = "pass" if variant == "basic" else _PROBE_FULL
            try:
                result = self._run_script(probe, Limits(timeout_s=10), None)
            except SandboxError as exc:
                errors.append(f"{variant} (proc={layers['proc']}): {str(exc).strip().splitlines()[-1]}")
                continue
            if result.ok:
                self.layers = {"variant": variant, "nproc": self.nproc_enforced, **result.layers}
                self._report(errors)
                return
            errors.append(f"{variant}: probe program failed: {result.status} {result.stderr[-300:]}")
        self.variant = ""
        raise SandboxError("no isolation level works on this machine:\n  " + "\n  ".join(errors))

    def _report(self, errors: list[str]) -> None:
        lost = lost_layers(self.variant, self.layers)
        key = f"{self.variant}:{sorted(lost)}"
        with _warn_lock:
            if not lost or key in _warned:
                return
            _warned.add(key)
        log.warning(
            "\n%s\nSANDBOX DEGRADED: running untrusted code at the %r level (%s).\nLost protections:\n  - %s%s\n%s",
            "!" * 78, self.level_name(), self.variant, "\n  - ".join(lost),
            ("\nWhy:\n  " + "\n  ".join(errors)) if errors else "", "!" * 78,
        )

    def level_name(self) -> str:
        return "basic" if self.variant == "basic" else "full"

    # ---- uids and scratch dirs (used by Run) ------------------------------------------
    def acquire_uid(self) -> int:
        return self._slots.acquire() if self._slots else os.geteuid()

    def release_uid(self, uid: int) -> None:
        if self._slots:
            self._slots.release(uid)

    def kill_uid(self, uid: int) -> None:
        """Basic level as root: kill every process of the run's private uid."""
        if self._slots and self._zygote is not None:
            import socket

            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._zygote.request({"op": "killuid", "uid": uid}, [b.fileno()])
                b.close()
                a.settimeout(10)
                a.recv(1024)  # the zygote answers once the killer has finished
            except OSError as exc:
                log.warning("could not sweep the processes of uid %d: %s", uid, exc)
            finally:
                a.close()
                b.close()

    def make_workdir(self, uid: int) -> str:
        path = launcher.make_dir("prm-sandbox-run-", 0o700)
        if os.geteuid() == 0:
            os.chown(path, uid, uid)
        return path

    def remove_workdir(self, path: str) -> None:
        launcher.remove_dir(path)

    # ---- running ----------------------------------------------------------------------
    def run_python(self, code: str, *, stdin: str | bytes | None = None, limits: Limits | None = None,
                   **overrides: Any) -> ExecResult:
        """Run ``code`` as a script (``python main.py``); see :func:`prm_plugin.sandbox.run_python`."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str of Python source, got {type(code).__name__}")
        limits = make_limits(limits, overrides)
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        if data is not None and not isinstance(data, bytes):
            raise TypeError(f"stdin must be str, bytes or None, got {type(stdin).__name__}")
        self.start()
        return self._run_script(code, limits, data)

    def _run_script(self, code: str, limits: Limits, stdin: bytes | None) -> ExecResult:
        run = Run(self, limits, stdin=stdin, cpu_total_s=limits.timeout_s)
        try:
            run.send({"mode": "script", "code": code})
            run.begin_phase(limits.timeout_s, limits.wall_s)
            while True:
                event = run.next_event()
                if isinstance(event, Frame):
                    if isinstance(event.data, dict) and isinstance(event.data.get("exc"), str):
                        run.exc = event.data["exc"][:100]
                    continue
                break
            if isinstance(event, Exited):
                cpu, _ = run.phase_usage()
                if cpu > limits.timeout_s:  # finished, but only after its CPU budget ran out
                    run.kill_status, run.kill_reason = "timeout", f"CPU time limit of {limits.timeout_s:g} s exceeded"
            run.finish()
        finally:
            run.close()
        return exec_result(run)


def _release(zygote: launcher.ZygoteProcess, root_dir: str) -> None:
    zygote.close()
    launcher.remove_dir(root_dir)


def make_limits(limits: Limits | None, overrides: dict[str, Any]) -> Limits:
    """``limits`` (or the defaults) with keyword overrides; unknown names are an error."""
    import dataclasses

    base = limits or Limits()
    names = {f.name for f in dataclasses.fields(Limits)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown limit(s) {unknown}; known: {sorted(names)}")
    return dataclasses.replace(base, **overrides) if overrides else base


def lost_layers(variant: str, layers: dict[str, Any]) -> list[str]:
    """Human-readable protections missing at this level (empty at full strength)."""
    lost = []
    if variant == "basic":
        lost += [
            "pid namespace: the program can see host processes; escaped daemons are chased by tree tracking only",
            "network namespace: only seccomp (socket) and landlock (TCP) keep it off the network",
            "mount namespace: host files are hidden by landlock and file permissions only; no size cap on the scratch dir",
        ]
    if not layers.get("landlock"):
        lost.append("landlock: no kernel file-system allow-list" + (" (the only file guard at this level)" if variant == "basic" else ""))
    if not layers.get("seccomp"):
        lost.append("seccomp: dangerous syscalls (ptrace, mount, unshare, socket, ...) are not filtered")
    if variant != "basic" and not layers.get("proc"):
        lost.append("/proc inside the sandbox (programs that read /proc/self may behave differently)")
    if layers.get("keep_dac_read"):
        lost.append("file permissions: the interpreter is unreadable for an unprivileged uid, so the "
                    "program keeps CAP_DAC_READ_SEARCH; only landlock limits what it can read")
    if not layers.get("nproc"):
        lost.append("kernel process limit (RLIMIT_NPROC): fork bombs are stopped by the watchdog only")
    return lost
