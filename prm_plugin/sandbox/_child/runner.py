"""The last stage in the sandbox: run the untrusted program.

Protocol (4-byte big-endian length + UTF-8 JSON per frame). Parent -> child on the
control fd: first ``{"mode": "script"|"functional", "code": ..., "entry_point": ...}``,
then in functional mode ``{"call": i, "args": [...]}`` per test and ``{"exit": 0}``.
Child -> parent on the result fd: ``{"load": "ok"}`` or ``{"load": "error", ...}``, one
``{"i": i, "out": ...}`` / ``{"i": i, "error": ..., "kind": ...}`` per call, and in script
mode ``{"exc": "MemoryError"}`` for an uncaught exception. Everything the child says is
untrusted: the parent only ever uses it as data (outputs to compare, error text to show).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import traceback
import types
from typing import Any

from . import codec

CONTROL_FD = 3
RESULT_FD = 4
_HEADER = 4


def write_frame(fd: int, obj: Any) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode()
    view = memoryview(len(data).to_bytes(_HEADER, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int) -> Any:
    """Next frame from ``fd``; None at end of file."""
    header = _read_exact(fd, _HEADER)
    if header is None:
        return None
    body = _read_exact(fd, int.from_bytes(header, "big"))
    return None if body is None else json.loads(body)


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[-2000:]


def _kind(exc: BaseException) -> str:
    return "memory" if isinstance(exc, MemoryError) else "exception"


def _finish(code: int) -> None:
    """Leave like a normal interpreter exit: join threads, run atexit, flush, exit."""
    try:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: S110 - the exit code already says what happened
        code = code or 1
    os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def run(workdir: str) -> None:
    """Read the program from the control fd and run it; never returns."""
    request = read_frame(CONTROL_FD)
    if not isinstance(request, dict) or not isinstance(request.get("code"), str):
        os._exit(125)
    path = os.path.join(workdir, "main.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(request["code"])
    for name in [m for m in sys.modules if m == "_child" or m.startswith("_child.")]:
        del sys.modules[name]  # the harness stays out of the program's way (and namespace)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    if request.get("mode") == "functional":
        _functional(request, main, path)
    sys.modules["__main__"] = main
    try:
        exec(compile(request["code"], path, "exec"), main.__dict__)
    except SystemExit as exc:
        _finish(_exit_code(exc))
    except BaseException as exc:
        # Drop the runner's own frame, so the traceback reads like `python main.py`'s.
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        with contextlib.suppress(OSError):
            write_frame(RESULT_FD, {"exc": type(exc).__name__})
        _finish(1)
    _finish(0)


def _functional(request: dict[str, Any], module: types.ModuleType, path: str) -> None:
    # Like EvalPlus: the module is not __main__ (guarded demo code stays off) and prints
    # are swallowed, so a chatty but correct solution is not failed for its output.
    module.__name__ = "__sandbox__"
    sys.modules["__sandbox__"] = module
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    try:
        exec(compile(request["code"], path, "exec"), module.__dict__)
        fn = _resolve(module, str(request.get("entry_point") or ""))
    except BaseException as exc:
        write_frame(RESULT_FD, {"load": "error", "error": _describe(exc), "kind": _kind(exc)})
        os._exit(1)
    write_frame(RESULT_FD, {"load": "ok"})
    while True:
        cmd = read_frame(CONTROL_FD)
        if not isinstance(cmd, dict) or "call" not in cmd:
            _finish(0)
        reply: dict[str, Any] = {"i": cmd["call"]}
        try:
            args = codec.decode(cmd["args"])
            out = fn(*args)
            reply["out"] = codec.encode(out)
        except codec.CodecError as exc:
            reply.update(error=str(exc), kind="invalid_output")
        except BaseException as exc:
            reply.update(error=_describe(exc), kind=_kind(exc))
        try:
            write_frame(RESULT_FD, reply)
        except (ValueError, TypeError) as exc:  # a tampered encoder produced junk
            write_frame(RESULT_FD, {"i": cmd["call"], "error": str(exc)[:200], "kind": "invalid_output"})


def _resolve(module: types.ModuleType, entry_point: str) -> Any:
    """``name`` or ``Class.method`` (the class is instantiated, as LiveCodeBench does)."""
    head, _, method = entry_point.partition(".")
    if head not in module.__dict__:
        raise NameError(f"entry point {head!r} is not defined by the program")
    obj = module.__dict__[head]
    if method:
        obj = getattr(obj(), method)
    if not callable(obj):
        raise TypeError(f"entry point {entry_point!r} is not callable")
    return obj
