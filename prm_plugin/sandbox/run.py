"""One sandboxed process tree, supervised from the parent.

A :class:`Run` asks the zygote for a sandbox, then pumps its pipes and watches its tree
in one select loop: stdin and control frames go in, stdout/stderr are capped while they
stream (a flood is cut off, never buffered), result frames come out, and every tick the
watchdog reads the tree's task count, resident memory and CPU time from /proc. Any limit
crossed kills the whole tree: at the full level killing the namespace's pid 1 makes the
kernel kill every other process in it (double-forked daemons included).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import proctree
from .model import MIB, ExecResult, Limits, SandboxError, Status

if TYPE_CHECKING:
    from .box import Sandbox

TICK_S = 0.01
_SPAWN_TIMEOUT_S = 60.0
_DRAIN_S = 1.0


@dataclass
class Frame:
    data: Any


@dataclass
class Exited:
    pass


@dataclass
class Limit:
    status: Status
    reason: str


Event = Frame | Exited | Limit


class Run:
    """A sandboxed process: ``send`` frames, ``next_event``, then ``result`` or ``close``."""

    def __init__(self, box: Sandbox, limits: Limits, *, stdin: bytes | None, cpu_total_s: float) -> None:
        self.box, self.limits = box, limits
        box.start()
        self.variant = box.variant
        self.uid = box.acquire_uid()
        self.stdout, self.stderr = bytearray(), bytearray()
        self.frames: deque[Any] = deque()
        self._res_buf = bytearray()
        self._stdin_buf = memoryview(stdin or b"")
        self._ctl_buf = bytearray()
        self.exit_status: int | None = None
        self._exit_seen = False
        self.kill_status: Status | None = None
        self.kill_reason = ""
        self.cpu_s = 0.0
        self.seen: dict[int, int] = {}
        self.exc: str | None = None  # the exception type a script died of, as the child says
        self._closed = False
        self.t0 = time.monotonic()
        self._phase: tuple[float, float, float | None, float | None] = (0.0, self.t0, None, None)
        self._exit_t: float | None = None
        self.workdir = box.make_workdir(self.uid) if self.variant == "basic" else None
        try:
            self._spawn(cpu_total_s)
        except BaseException:
            self.close()
            raise
        self.layers = self._await_setup()

    # ---- start-up -------------------------------------------------------------------
    def _spawn(self, cpu_total_s: float) -> None:
        lim = self.limits
        stdin_r, self._stdin_w = os.pipe()
        self._out_r, out_w = os.pipe()
        self._err_r, err_w = os.pipe()
        ctl_r, self._ctl_w = os.pipe()
        self._res_r, res_w = os.pipe()
        self._reply, reply_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child_fds = [stdin_r, out_w, err_w, ctl_r, res_w, reply_child.fileno()]
        request = {
            "op": "spawn", "variant": self.variant, "uid": self.uid, "tmp_mb": lim.tmp_mb,
            "workdir": self.workdir, "layers": self.box.layers_plan,
            "limits": {
                "as_bytes": lim.memory_mb * MIB, "fsize_bytes": lim.file_size_mb * MIB,
                "nofile": lim.open_files, "core": 0, "cpu_s": int(cpu_total_s) + 2,
                "nproc": lim.max_processes if self.box.nproc_enforced else None,
            },
        }
        try:
            self.box.zygote.request(request, child_fds)
        finally:
            for fd in child_fds[:-1]:
                os.close(fd)
            reply_child.close()
        for fd in (self._stdin_w, self._out_r, self._err_r, self._ctl_w, self._res_r):
            os.set_blocking(fd, False)
        if not self._stdin_buf:
            os.close(self._stdin_w)
            self._stdin_w = -1
        self._reply.settimeout(_SPAWN_TIMEOUT_S)
        try:
            msg, fds, _, _ = socket.recv_fds(self._reply, 1 << 16, 1)
        except (TimeoutError, OSError) as exc:
            raise SandboxError(f"the sandbox did not start: {exc}") from exc
        report = json.loads(msg) if msg else {"error": "the zygote closed the connection"}
        if "pid" not in report or not fds:
            raise SandboxError(f"the sandbox did not start:\n{report.get('error', report)}")
        self.pid: int = int(report["pid"])
        self.pidfd: int = fds[0]
        self.root_start = proctree.start_time(self.pid)
        self.seen[self.pid] = self.root_start or 0
        self._reply.setblocking(False)

    def _await_setup(self) -> dict[str, Any]:
        self.begin_phase(None, _SPAWN_TIMEOUT_S)
        event = self.next_event()
        if isinstance(event, Frame) and isinstance(event.data, dict) and "setup" in event.data:
            return dict(event.data["setup"])
        detail = event.data.get("setup_error") if isinstance(event, Frame) and isinstance(event.data, dict) else event
        self.close()
        raise SandboxError(f"sandbox set-up failed ({self.variant} level):\n{detail}")

    # ---- I/O ------------------------------------------------------------------------
    def send(self, obj: Any) -> None:
        """Queue a control frame (written as the child reads)."""
        data = json.dumps(obj, separators=(",", ":")).encode()
        self._ctl_buf += len(data).to_bytes(4, "big") + data

    def begin_phase(self, cpu_budget: float | None, wall_budget: float | None) -> None:
        """Start counting a new budget: CPU seconds of the whole tree, and wall seconds."""
        self.refresh_cpu()
        self._phase = (self.cpu_s, time.monotonic(), cpu_budget, wall_budget)

    def phase_usage(self) -> tuple[float, float]:
        """(CPU, wall) seconds spent since :meth:`begin_phase`, CPU read afresh."""
        self.refresh_cpu()
        return self.cpu_s - self._phase[0], time.monotonic() - self._phase[1]

    def refresh_cpu(self) -> None:
        if self._exit_t is None:
            stats = proctree.tree_stats(self.pid)
            if stats.starts.get(self.pid) == self.root_start:
                self.cpu_s = max(self.cpu_s, stats.cpu_s)

    def next_event(self) -> Event:
        """Pump until a frame arrives, the tree is gone, or a limit of the phase is crossed."""
        next_tick = 0.0
        while True:
            if self.frames and self.kill_status is None:
                return Frame(self.frames.popleft())
            if self._finished():
                return Limit(self.kill_status, self.kill_reason) if self.kill_status else Exited()
            now = time.monotonic()
            if now >= next_tick and self.kill_status is None:
                next_tick = now + TICK_S
                self._watch()
                continue
            self._pump(max(0.0, next_tick - now))

    def _pump(self, timeout: float) -> None:
        readers = [fd for fd in (self._out_r, self._err_r, self._res_r) if fd >= 0]
        readers += [self._reply.fileno()] if not self._exit_seen else []
        readers += [self.pidfd] if self.pidfd >= 0 and self._exit_t is None else []
        writers = [self._stdin_w] if self._stdin_w >= 0 and self._stdin_buf else []
        writers += [self._ctl_w] if self._ctl_w >= 0 and self._ctl_buf else []
        r, w, _ = select.select(readers, writers, [], timeout)
        for fd in r:
            if fd == self.pidfd:
                self._exit_t = time.monotonic()
            elif fd == self._reply.fileno():
                self._read_reply()
            else:
                self._read(fd)
        for fd in w:
            self._write(fd)

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self._close_fd(fd)
            return
        cap = self.limits.max_output_bytes
        if fd == self._res_r:
            self._res_buf += chunk
            self._parse_frames(cap)
            return
        buf, name = (self.stdout, "stdout") if fd == self._out_r else (self.stderr, "stderr")
        room = cap - len(buf)
        buf += chunk[: max(room, 0)]
        if len(chunk) > room:
            self.kill("output_limit", f"{name} exceeded {cap} bytes")

    def _parse_frames(self, cap: int) -> None:
        while len(self._res_buf) >= 4:
            size = int.from_bytes(self._res_buf[:4], "big")
            if size > cap:
                self.kill("output_limit", f"a result frame of {size} bytes exceeded {cap} bytes")
                self._res_buf.clear()
                return
            if len(self._res_buf) < 4 + size:
                return
            body = bytes(self._res_buf[4 : 4 + size])
            del self._res_buf[: 4 + size]
            try:
                self.frames.append(json.loads(body))
            except (ValueError, RecursionError):
                self.frames.append({"malformed": body[:200].decode("utf-8", "replace")})

    def _write(self, fd: int) -> None:
        buf = self._stdin_buf if fd == self._stdin_w else self._ctl_buf
        try:
            n = os.write(fd, buf[: 1 << 16])
        except BlockingIOError:
            return
        except OSError:  # the child closed its end: the rest is dropped, as a pipe would
            n = len(buf)
        if fd == self._stdin_w:
            self._stdin_buf = self._stdin_buf[n:]
            if not self._stdin_buf:
                self._close_fd(fd)
        else:
            del self._ctl_buf[:n]

    def _read_reply(self) -> None:
        try:
            msg = self._reply.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            msg = b""
        self._exit_seen = True
        self._exit_t = self._exit_t or time.monotonic()
        if msg:
            report = json.loads(msg)
            self.exit_status = report.get("status")
            if isinstance(report.get("cpu"), (int, float)):
                self.cpu_s = max(self.cpu_s, float(report["cpu"]))

    def _close_fd(self, fd: int) -> None:
        os.close(fd)
        for name in ("_out_r", "_err_r", "_res_r", "_stdin_w", "_ctl_w"):
            if getattr(self, name) == fd:
                setattr(self, name, -1)

    def _finished(self) -> bool:
        if not self._exit_seen:
            return False
        if self.variant == "basic" and self._exit_t is not None and not getattr(self, "_swept", False):
            self._swept = True
            self._sweep()
        pipes_done = self._out_r < 0 and self._err_r < 0 and self._res_r < 0
        return pipes_done or time.monotonic() - (self._exit_t or 0) > _DRAIN_S

    # ---- watchdog -------------------------------------------------------------------
    def _watch(self) -> None:
        cpu0, wall0, cpu_budget, wall_budget = self._phase
        if self._exit_t is not None:
            return
        stats = proctree.tree_stats(self.pid)
        if stats.starts.get(self.pid) != self.root_start:
            return  # exited (the zygote will tell us how)
        self.cpu_s = max(self.cpu_s, stats.cpu_s)
        if self.variant == "basic":
            self.seen.update(stats.starts)
        lim = self.limits
        mem = lim.memory_mb * MIB
        if stats.tasks > lim.max_processes + 1:
            self.kill("killed", f"process limit exceeded: {stats.tasks} tasks > {lim.max_processes}")
        elif stats.rss_bytes > mem and proctree.pss_bytes(stats.pids) > mem:
            self.kill("memory", f"resident memory of the process tree exceeded {lim.memory_mb} MB")
        elif cpu_budget is not None and self.cpu_s - cpu0 > cpu_budget:
            self.kill("timeout", f"CPU time limit of {cpu_budget:g} s exceeded")
        elif wall_budget is not None and time.monotonic() - wall0 > wall_budget:
            self.kill("timeout", f"wall-clock backstop of {wall_budget:g} s exceeded")

    def kill(self, status: Status, reason: str) -> None:
        """Kill the whole tree, recording why (the first reason wins)."""
        if self.kill_status is None and not self._exit_seen:
            self.kill_status, self.kill_reason = status, reason
        if self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        if self.variant == "basic":
            self._sweep()

    def _sweep(self) -> None:
        proctree.kill_tree(self.seen)
        self.box.kill_uid(self.uid)

    # ---- end ------------------------------------------------------------------------
    def finish(self) -> None:
        """Kill whatever is left and wait until the tree is gone and the pipes drained."""
        if not self._finished():
            self.kill(self.kill_status or "killed", self.kill_reason or "stopped by the harness")
            deadline = time.monotonic() + 10
            while not self._finished() and time.monotonic() < deadline:
                self._pump(TICK_S)
        self.frames.clear()
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for name in ("_out_r", "_err_r", "_res_r", "_stdin_w", "_ctl_w"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
        if getattr(self, "pidfd", -1) >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        if hasattr(self, "_reply"):
            self._reply.close()
        if self.workdir:
            self.box.remove_workdir(self.workdir)
        self.box.release_uid(self.uid)

    def result(self) -> ExecResult:
        """The :class:`ExecResult` of a script-mode run that has finished."""
        return exec_result(self)


def exec_result(run: Run) -> ExecResult:
    status, reason = classify(run)
    st = run.exit_status
    code = None if st is None else (-os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st))
    return ExecResult(
        status=status, stdout=run.stdout.decode("utf-8", "replace"),
        stderr=run.stderr.decode("utf-8", "replace"), returncode=code,
        seconds=(run._exit_t or time.monotonic()) - run.t0, cpu_seconds=run.cpu_s, reason=reason,
        isolation="basic" if run.variant == "basic" else "full",
        layers={"variant": run.variant, "nproc": run.box.nproc_enforced, **run.layers},
    )


def classify(run: Run) -> tuple[Status, str]:
    """Map how a run ended onto a status (the sandbox's own kills take precedence)."""
    if run.kill_status is not None:
        return run.kill_status, run.kill_reason
    st = run.exit_status
    if st is None:
        return "killed", "exit status unknown (the zygote went away)"
    exc = run.exc
    if os.WIFSIGNALED(st):
        sig = os.WTERMSIG(st)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and run.cpu_s >= run.limits.timeout_s):
            return "timeout", f"killed by {name} (CPU rlimit)"
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT,
                   signal.SIGSYS, signal.SIGXFSZ):
            return "runtime_error", f"crashed with {name}"
        return "killed", f"killed by {name}"
    code = os.WEXITSTATUS(st)
    if code == 0:
        return "ok", ""
    if exc == "MemoryError":
        return "memory", "MemoryError"
    return "runtime_error", f"exit status {code}" + (f" ({exc})" if exc else "")
