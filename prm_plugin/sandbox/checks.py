"""Executing a program on many inputs, with per-test CPU limits and one retry on timeout.

Functional tests run in one sandboxed process per program (as EvalPlus does): the parent
sends one call at a time and times it on the tree's CPU clock, so the child cannot lie
about timing and a slow machine does not turn correct programs into timeouts. A test that
times out is retried once in a fresh sandbox (fresh, so a warmed cache cannot help) before
it counts. Stdio tests run one fresh sandbox per input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._child import codec
from .run import Exited, Frame, Limit, Run

if TYPE_CHECKING:
    from .box import Sandbox
    from .model import Limits, TestStatus


@dataclass
class Outcome:
    """What one input produced: ``status`` is ``ok`` or a failure status."""

    status: str
    output: Any = None
    error: str = ""
    cpu: float = 0.0
    wall: float = 0.0
    attempts: int = 1


Stop = Callable[[int, Outcome], bool]


def per_test_limits(limits: Limits, timeouts: Sequence[float] | None, n: int) -> list[Limits]:
    if timeouts is None:
        return [limits] * n
    if len(timeouts) != n:
        raise ValueError(f"timeout_per_test_s has {len(timeouts)} entries for {n} tests; give one per test or a number")
    return [dataclasses.replace(limits, timeout_s=float(t)) for t in timeouts]


def run_functional(box: Sandbox, program: str, entry_point: str, args: list[Any], limits: list[Limits],
                   load_limits: Limits, *, stop: Stop | None = None, retries: int = 1) -> tuple[list[Outcome], str]:
    """Call ``entry_point(*args[i])`` for each i; returns the outcomes and a load error (or "")."""
    n = len(args)
    outcomes: list[Outcome | None] = [None] * n
    tries = [0] * n
    load_tries, i = 0, 0
    while i < n:
        run = Run(box, load_limits, stdin=None, cpu_total_s=load_limits.timeout_s + sum(x.timeout_s for x in limits[i:]))
        try:
            run.send({"mode": "functional", "code": program, "entry_point": entry_point})
            load = _load(run, load_limits)
            if load is not None:
                if load.status == "timeout" and load_tries < retries:
                    load_tries += 1
                    continue
                load.attempts = load_tries + 1
                for k in range(i, n):
                    outcomes[k] = dataclasses.replace(load)
                return _fill(outcomes), load.error
            while i < n:
                tries[i] += 1
                out, dead = _call(run, i, args[i], limits[i])
                out.attempts = tries[i]
                if out.status == "timeout" and tries[i] <= retries:
                    break  # retry this test in a fresh sandbox
                outcomes[i] = out
                i += 1
                if stop is not None and stop(i - 1, out):
                    return _fill(outcomes), ""
                if dead:
                    break
        finally:
            run.finish()
    return _fill(outcomes), ""


def _fill(outcomes: list[Outcome | None]) -> list[Outcome]:
    return [o if o is not None else Outcome("not_run", attempts=0) for o in outcomes]


def _load(run: Run, limits: Limits) -> Outcome | None:
    """None when the program loaded; else the failure every test inherits."""
    run.begin_phase(limits.timeout_s, limits.wall_s)
    event = run.next_event()
    cpu, wall = run.phase_usage()
    if isinstance(event, Frame) and event.data == {"load": "ok"}:
        return None
    if isinstance(event, Frame) and isinstance(event.data, dict) and event.data.get("load") == "error":
        kind = "memory" if event.data.get("kind") == "memory" else "runtime_error"
        return Outcome(kind, error=f"program failed to load: {str(event.data.get('error'))[:2000]}", cpu=cpu, wall=wall)
    if isinstance(event, Limit):
        return Outcome(event.status, error=f"while loading the program: {event.reason}", cpu=cpu, wall=wall)
    return Outcome("runtime_error", error=f"the program exited while loading (exit status {run.exit_status})", cpu=cpu, wall=wall)


def _call(run: Run, i: int, encoded_args: Any, limits: Limits) -> tuple[Outcome, bool]:
    """Run test ``i`` in ``run``; the flag says whether the sandbox is gone afterwards."""
    run.send({"call": i, "args": encoded_args})
    run.begin_phase(limits.timeout_s, limits.wall_s)
    event = run.next_event()
    cpu, wall = run.phase_usage()
    if isinstance(event, Limit):
        return Outcome(event.status, error=event.reason, cpu=cpu, wall=wall), True
    if isinstance(event, Exited):
        return Outcome("runtime_error", error=f"the program exited before answering (exit status {run.exit_status})",
                       cpu=cpu, wall=wall), True
    data = event.data
    if not isinstance(data, dict) or data.get("i") != i:
        run.kill("killed", "protocol violation")
        return Outcome("runtime_error", error=f"unexpected result frame: {str(data)[:200]}", cpu=cpu, wall=wall), True
    if cpu > limits.timeout_s:  # answered, but only after its CPU budget ran out
        return Outcome("timeout", error=f"CPU time limit of {limits.timeout_s:g} s exceeded", cpu=cpu, wall=wall), False
    if "out" in data:
        try:
            return Outcome("ok", output=codec.decode(data["out"]), cpu=cpu, wall=wall), False
        except codec.CodecError as exc:
            return Outcome("invalid_output", error=str(exc), cpu=cpu, wall=wall), False
    kind = {"memory": "memory", "invalid_output": "invalid_output"}.get(str(data.get("kind")), "runtime_error")
    return Outcome(kind, error=str(data.get("error"))[:2000], cpu=cpu, wall=wall), False


def run_stdio(box: Sandbox, program: str, inputs: list[str], limits: list[Limits], *,
              stop: Stop | None = None, retries: int = 1) -> list[Outcome]:
    """Run ``program`` once per input, each in a fresh sandbox."""
    outcomes: list[Outcome | None] = [None] * len(inputs)
    for i, text in enumerate(inputs):
        attempt = 0
        while True:
            attempt += 1
            res = box._run_script(program, limits[i], text.encode("utf-8"))
            if res.status != "timeout" or attempt > retries:
                break
        status = "ok" if res.status == "ok" else res.status
        error = "" if res.ok else (res.reason + ("\n" + res.stderr[-1500:] if res.stderr else ""))
        outcomes[i] = out = Outcome(status, output=res.stdout, error=error, cpu=res.cpu_seconds,
                                    wall=res.seconds, attempts=attempt)
        if stop is not None and stop(i, out):
            break
    return _fill(outcomes)


def status_of(outcome: Outcome, passed: bool) -> TestStatus:
    if outcome.status == "ok":
        return "passed" if passed else "wrong_answer"
    return outcome.status  # type: ignore[return-value]
