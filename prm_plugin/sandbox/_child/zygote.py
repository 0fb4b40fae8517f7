"""The zygote: a small, clean interpreter that forks one fresh sandbox per program.

Started once per :class:`~prm_plugin.sandbox.Sandbox` as ``python -s -S`` with an empty
environment; it never runs untrusted code itself, so every program starts from the same
pristine state and nothing passes from one program to the next. Forking skips the
interpreter start-up (~15 ms) that a fresh ``python`` would pay on every launch.

Requests arrive as SOCK_SEQPACKET messages with file descriptors attached
(stdin, stdout, stderr, control, result, reply). For each, the zygote forks ``C``, which
enters the namespaces and forks ``C2`` (pid 1 of its pid namespace), then exits. The
zygote is a child subreaper, so it inherits ``C2``, sends the parent a pidfd for it on
the reply socket, and later its wait status. When the parent goes away (the socket
closes), every live sandbox is killed and the zygote exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from . import isolate, libc, runner


class Zygote:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.sock = socket.socket(fileno=plan["sock_fd"])
        self.children: dict[int, socket.socket] = {}  # C2 pid -> reply socket
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [])
            if self.wake_r in ready:
                os.read(self.wake_r, 4096)
                self.reap()
            if self.sock.fileno() in ready:
                msg, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 8)
                if not msg:
                    self.shutdown()
                self.handle(json.loads(msg), fds)

    def handle(self, req: dict[str, Any], fds: list[int]) -> None:
        reply = socket.socket(fileno=fds[-1])
        try:
            if req["op"] == "spawn":
                self.spawn(req, fds[:-1], reply)
            elif req["op"] == "killuid":
                # Synchronous: the uid goes back to the pool only after its processes are gone.
                _, status = os.waitpid(_fork_killer(int(req["uid"])), 0)
                reply.send(json.dumps({"status": status}).encode())
                reply.close()
            else:
                reply.send(json.dumps({"error": f"unknown op {req['op']!r}"}).encode())
                reply.close()
        except Exception:
            reply.send(json.dumps({"error": traceback.format_exc()[-3000:]}).encode())
            reply.close()
        finally:
            for fd in fds[:-1]:
                os.close(fd)

    def spawn(self, req: dict[str, Any], fds: list[int], reply: socket.socket) -> None:
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()  # the zygote says "go" once C is reaped: C2 is then its child
        pid = os.fork()
        if pid == 0:  # C
            try:
                os.close(report_r)
                os.close(go_w)
                isolate.stage1(req["variant"], req["uid"])
                c2 = os.fork()
                if c2 == 0:
                    os.close(report_w)
                    _child_main(self.plan, req, fds, go_r)
                os.write(report_w, json.dumps({"pid": c2}).encode() + b"\n")
                os._exit(0)
            except BaseException:
                os.write(report_w, json.dumps({"error": traceback.format_exc()[-3000:]}).encode() + b"\n")
                os._exit(1)
        os.close(report_w)
        os.close(go_r)
        report = _read_report(report_r)
        if "pid" in report:
            pidfd = os.pidfd_open(report["pid"])  # before any reaping: the pid cannot be reused yet
            os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                os.write(go_w, b"g")
        os.close(go_w)
        if "pid" in report:
            socket.send_fds(reply, [json.dumps(report).encode()], [pidfd])
            os.close(pidfd)
            self.children[report["pid"]] = reply
        else:
            os.waitpid(pid, 0)
            reply.send(json.dumps(report).encode())
            reply.close()

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply = self.children.pop(pid, None)
            if reply is not None:
                # The kernel's CPU total for the sandbox (its waited-for children included):
                # exact even when the run ended between two watchdog ticks.
                cpu = usage.ru_utime + usage.ru_stime
                with contextlib.suppress(OSError):
                    reply.send(json.dumps({"status": status, "cpu": cpu}).encode())
                reply.close()

    def shutdown(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(0)


def _read_report(fd: int) -> dict[str, Any]:
    # One line; waiting for EOF would also wait for C2 to be scheduled and close its copy.
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 8192)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return json.loads(data) if data.strip() else {"error": "the set-up process died"}


def _fork_killer(uid: int) -> int:
    """Kill every process of ``uid`` (the basic level's way to catch escaped daemons)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            for _ in range(200):  # until nothing of this uid is left (fork races included);
                os.kill(-1, signal.SIGKILL)  # zombies still count, hence the bound
        except ProcessLookupError:
            os._exit(0)
        except BaseException:
            os._exit(1)
        os._exit(2)
    return pid


def _child_main(plan: dict[str, Any], req: dict[str, Any], fds: list[int], go_r: int) -> None:
    """C2: finish isolation, report the layers in force, hand over to the runner."""
    result_fd = fds[4]
    try:
        # Wait until C is reaped. EOF on a pipe C held is not enough: an exiting process closes
        # its files before it re-parents its children, and a parent-death signal set in
        # between would fire on C's exit.
        if os.read(go_r, 1) != b"g":
            os._exit(124)
        os.close(go_r)
        _setup_fds(fds)
        result_fd = runner.RESULT_FD
        layers = dict(req["layers"])
        variant, uid = req["variant"], req["uid"]
        workdir = req.get("workdir") or "/tmp"
        if variant == "basic":
            libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
            os.chdir(workdir)
        else:
            isolate.build_root(plan["root_dir"], plan["mounts"], uid, req["tmp_mb"], layers["proc"])
        isolate.set_limits(req["limits"])
        isolate.drop_privileges(variant, uid, bool(layers.get("keep_dac_read")))
        isolate.confine(variant, plan["read_only"], workdir, layers)
        _reset_interpreter(plan, workdir)
        layers["pid"] = os.getpid()
        layers["uid"] = os.getuid()
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        runner.write_frame(result_fd, {"setup": layers})
    except BaseException:
        try:
            runner.write_frame(result_fd, {"setup_error": traceback.format_exc()[-3000:]})
        finally:
            os._exit(125)
    runner.run(workdir)


def _setup_fds(fds: list[int]) -> None:
    # Move the five descriptors above any target number first, so dup2 never clobbers one.
    high = [os.dup(fd) for fd in fds]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(len(fds), 1 << 16)


def _reset_interpreter(plan: dict[str, Any], workdir: str) -> None:
    """Make the forked interpreter look like a fresh ``python main.py``."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(plan["env"])
    sys.argv = ["main.py"]
    sys.path[:] = [workdir, *plan["sys_path"]]  # like `python main.py`: the script's dir first
    sys.stdin = _text(0, "r", "surrogateescape")
    sys.stdout = _text(1, "w", "surrogateescape")
    sys.stderr = _text(2, "w", "backslashreplace")
    setattr(sys, "__stdin__", sys.stdin)  # noqa: B010 - typeshed marks these Final
    setattr(sys, "__stdout__", sys.stdout)  # noqa: B010
    setattr(sys, "__stderr__", sys.stderr)  # noqa: B010


def _text(fd: int, mode: str, errors: str) -> io.TextIOWrapper:
    raw = io.FileIO(fd, mode, closefd=False)
    buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(buffered, encoding="utf-8", errors=errors, line_buffering=fd == 2)


def main() -> None:
    plan = json.loads(sys.stdin.buffer.read())
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    # glibc gives each thread a 64 MB malloc arena; under RLIMIT_AS that starves threaded
    # programs long before they use real memory.
    ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.path[:] = [p for p in sys.path if p]
    plan["sys_path"] = [*sys.path, *plan.get("site_dirs", [])]
    Zygote(plan).serve()
