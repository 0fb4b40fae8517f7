"""A long harness run never dies on one bad problem: per-problem faults, the failure
summary and exit status, and clean interruption (Ctrl-C / SIGTERM).

Which errors are per-problem faults (``is_fault``):

* ``BackendError``: any exception raised inside ``Policy.propose`` or
  ``RewardModel.score`` while searching (a backend error on that input, an input longer
  than the model's context with ``on_overflow=error``, out of memory, a server error);
  ``SearchRun`` wraps them, naming the problems of the failing call;
* ``SandboxError``: the sandbox itself failed while a search ran code;
* in ``prm-plugin lcb``, any exception raised while grading one program.

A fault is recorded for its problem (the result's ``error`` with the traceback, the trace,
the ``failures`` column of the cost summary), the problem gets an empty answer, and the
run goes on. Anything else raised by a strategy (TypeError, AttributeError,
AssertionError, KeyError, ValueError from its own checks, ...) is a programming or
configuration error: it stops the run with its traceback, as before. ``strict=true``
(``--strict``) makes the first fault stop the run too.

A run with failures prints a summary naming every failed problem and ends with exit
status ``EXIT_FAILURES`` (the ``prm-plugin`` commands return it; under the stock
``lm_eval`` / ``evalplus.evaluate`` scripts an exit hook sets it after the harness has
written its results). Failed problems are never put in the resume store, so a rerun
with ``resume=true`` retries exactly them.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prm_plugin.sandbox import SandboxError
from prm_plugin.search_run import BackendError

logger = logging.getLogger(__name__)

#: The exit status of a run in which at least one problem failed.
EXIT_FAILURES = 3
FAULT_TYPES: tuple[type[BaseException], ...] = (BackendError, SandboxError)


def is_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a per-problem fault (see the module docstring)."""
    return isinstance(exc, FAULT_TYPES)


def describe(exc: BaseException, where: str | None = None) -> dict[str, Any]:
    """A JSON record of a fault: its type and message (of the original error, for a
    ``BackendError``), where it happened, and the full traceback."""
    cause = exc.__cause__ if isinstance(exc, BackendError) and exc.__cause__ is not None else exc
    if where is None:
        where = exc.backend if isinstance(exc, BackendError) else "sandbox" if isinstance(exc, SandboxError) else "?"
    return {"type": type(cause).__name__, "message": str(cause), "where": where,
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


class FailureLog:
    """The failed problems of this process's runs, and the exit status they call for."""

    def __init__(self) -> None:
        self.failures: list[dict[str, Any]] = []
        self._returned = 0  # failures already reported through a command's own exit status
        self._hooked = False

    def record(self, uid: str, error: dict[str, Any], harness: str) -> dict[str, Any]:
        """Note a failed problem and log it (one line; the traceback is in its trace)."""
        entry = {"uid": uid, "harness": harness, **{k: error[k] for k in ("type", "message", "where")}}
        self.failures.append(entry)
        logger.error("%s: problem %s failed (%s error, %s: %s); it gets an empty answer and the run goes on "
                     "(strict=true stops at the first failure). Its trace holds the traceback.",
                     harness, uid, error["where"], error["type"], error["message"])
        if not self._hooked and _stock_cli():
            self._hooked = True
            atexit.register(self._exit_hook)
        return entry

    @staticmethod
    def summary(failures: list[dict[str, Any]]) -> str:
        """Which problems failed and what to do about it ("" when none did)."""
        if not failures:
            return ""
        lines = [f"prm_guided: {len(failures)} problem(s) failed and got an empty answer:"]
        for f in failures[:20]:
            lines.append(f"  {f['uid']}: {f['where']} error, {f['type']}: {f['message'][:200]}")
        if len(failures) > 20:
            lines.append(f"  ... and {len(failures) - 20} more (see the traces: their 'error' field)")
        lines.append(f"The run exits with status {EXIT_FAILURES}. Tracebacks are in the traces; failed problems "
                     "are not in the resume store, so rerunning with resume=true retries only them.")
        return "\n".join(lines)

    def exit_status(self, since: int = 0) -> int:
        """For a command that returns its own status: print the summary of the failures
        recorded after index ``since`` and return ``EXIT_FAILURES`` if there are any."""
        new = self.failures[since:]
        self._returned = len(self.failures)
        if not new:
            return 0
        print("\n" + self.summary(new), file=sys.stderr)
        return EXIT_FAILURES

    def _exit_hook(self) -> None:
        """At interpreter exit, after the harness wrote its results: report and exit non-zero."""
        new = self.failures[self._returned:]
        if not new:
            return
        print("\n" + self.summary(new), file=sys.stderr)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FAILURES)  # atexit cannot change the status any other way


def _stock_cli() -> bool:
    """Whether this process is a stock harness command (``lm_eval``, ``evalplus.evaluate``,
    ``evalplus.codegen``, ``python -m lm_eval``): only then does the exit hook set the status
    (a program that embeds a harness keeps its own exit status and reads ``FAILURES``)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    main = sys.modules.get("__main__")
    spec = getattr(getattr(main, "__spec__", None), "name", "") or ""
    return name in ("lm_eval", "lm-eval", "evalplus.evaluate", "evalplus.codegen") or \
        spec.split(".")[0] in ("lm_eval",) or spec in ("evalplus.evaluate", "evalplus.codegen")


#: This process's failure log (shared by every harness run in it).
FAILURES = FailureLog()


class Interrupts:
    """Turns SIGTERM (and Ctrl-C) into ``KeyboardInterrupt``, deferred while ``critical``
    writes (result store, traces) are under way, so those files never hold half a batch."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.depth = 0

    def handler(self, signum: int, frame: Any) -> None:
        if self.depth:
            self.pending = signum
            return
        raise KeyboardInterrupt(f"interrupted by signal {signal.Signals(signum).name}")

    @contextmanager
    def critical(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                signum, self.pending = self.pending, None
                raise KeyboardInterrupt(f"interrupted by signal {signal.Signals(signum).name}")


@contextmanager
def interruptible() -> Iterator[Interrupts]:
    """While the block runs, SIGTERM and SIGINT raise ``KeyboardInterrupt`` (between
    critical writes). Only in the main thread, and only where the handlers are Python's
    defaults (a harness or user that installed its own keeps it)."""
    guard = Interrupts()
    saved: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        defaults = {signal.SIGTERM: (signal.SIG_DFL,), signal.SIGINT: (signal.default_int_handler,)}
        for sig, ok in defaults.items():
            if signal.getsignal(sig) in ok:
                saved[sig] = signal.signal(sig, guard.handler)
    try:
        yield guard
    finally:
        for signum, old in saved.items():
            signal.signal(signum, old)
