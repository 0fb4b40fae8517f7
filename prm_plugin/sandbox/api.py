"""The module-level entry points: ``run_python`` and ``check_solution``."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from typing import Any, Literal

from . import checks
from ._child import codec
from .box import Sandbox, make_limits
from .compare import Compare, functional_equal, stdio_equal
from .model import ExecResult, FunctionalTest, Limits, StdioTest, TestResult, Verdict

_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide :class:`Sandbox` the module-level functions use (started lazily)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
            atexit.register(_default.close)
        return _default


def run_python(code: str, *, stdin: str | bytes | None = None, timeout_s: float = 10.0, memory_mb: int = 1024,
               limits: Limits | None = None, sandbox: Sandbox | None = None, **more: Any) -> ExecResult:
    """Run untrusted Python source as a script, isolated, and report how it ended.

    Args:
        code: the program's source (run as ``__main__`` from ``/tmp/main.py``).
        stdin: data for its standard input (None: empty).
        timeout_s: CPU seconds of the whole process tree; a wall-clock backstop of
            ``timeout_s * wall_factor + wall_slack_s`` also applies.
        memory_mb: address-space limit per process and resident-memory cap of the tree.
        limits: a full :class:`Limits`; ``timeout_s``/``memory_mb``/``more`` override it.
        sandbox: the :class:`Sandbox` to use (default: a shared one).
        **more: other :class:`Limits` fields, e.g. ``max_output_bytes``.

    Returns:
        An :class:`ExecResult` whose ``status`` is ok / timeout / memory / output_limit /
        runtime_error / killed, with the (capped) stdout and stderr.

    Example:
        >>> run_python("print(input()[::-1])", stdin="abc").stdout  # doctest: +SKIP
        'cba\\n'
    """
    merged = make_limits(limits, {"timeout_s": timeout_s, "memory_mb": memory_mb, **more})
    return (sandbox or default_sandbox()).run_python(code, stdin=stdin, limits=merged)


def check_solution(
    program: str,
    tests: Sequence[Any],
    *,
    kind: Literal["functional", "stdio"] = "functional",
    entry_point: str | None = None,
    timeout_per_test_s: float | Sequence[float] = 5.0,
    memory_mb: int = 1024,
    compare: Compare = "evalplus",
    fail_fast: bool = True,
    retries: int = 1,
    limits: Limits | None = None,
    sandbox: Sandbox | None = None,
) -> Verdict:
    """Grade a program on tests; the parent compares outputs, the child's word counts for nothing.

    Args:
        program: Python source.
        tests: for ``kind="functional"``, :class:`FunctionalTest` or ``{"input": [args...],
            "output": expected, "atol": 0}`` or ``(args, expected)``; for ``kind="stdio"``,
            :class:`StdioTest` or ``{"input": str, "output": str}`` or ``(input, output)``.
        kind: call ``entry_point(*args)`` in one process, or run the script per input.
        entry_point: the function to call (``"name"`` or ``"Class.method"``); functional only.
        timeout_per_test_s: CPU seconds per test (one number, or one per test); loading
            the program gets the largest of them.
        memory_mb: see :func:`run_python`.
        compare: functional comparison: ``"evalplus"`` (float tolerance), ``"lcb"``
            (tuple -> list, then ``==``) or ``"exact"`` (same type and ``==``).
        fail_fast: stop at the first failing test (the rest are ``not_run``).
        retries: how often a timed-out test is re-run in a fresh sandbox before it counts.
        limits: base :class:`Limits` (``timeout_s`` is replaced by the per-test limit).
        sandbox: the :class:`Sandbox` to use (default: a shared one).

    Returns:
        A :class:`Verdict`: ``passed`` only if every test passed.
    """
    if kind not in ("functional", "stdio"):
        raise ValueError(f"kind must be 'functional' or 'stdio', got {kind!r}")
    if not isinstance(program, str):
        raise TypeError(f"program must be a str of Python source, got {type(program).__name__}")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if isinstance(tests, (str, bytes)) or not isinstance(tests, Sequence) or not tests:
        raise ValueError("tests must be a non-empty list of test cases")
    box = sandbox or default_sandbox()
    single = isinstance(timeout_per_test_s, (int, float))
    base = make_limits(limits, {"timeout_s": float(timeout_per_test_s if single else max(timeout_per_test_s)),  # type: ignore[arg-type]
                                "memory_mb": memory_mb})
    per_test = checks.per_test_limits(base, None if single else list(timeout_per_test_s), len(tests))  # type: ignore[arg-type]
    if kind == "functional":
        outcomes, error, passed = _grade_functional(box, program, tests, entry_point, per_test, base,
                                                    compare, fail_fast, retries)
    else:
        outcomes, error, passed = _grade_stdio(box, program, tests, per_test, fail_fast, retries)
    results = [
        TestResult(index=i, status=checks.status_of(o, passed.get(i, False)), output=o.output, error=o.error,
                   cpu_seconds=o.cpu, wall_seconds=o.wall, attempts=o.attempts)
        for i, o in enumerate(outcomes)
    ]
    return Verdict(passed=all(r.passed for r in results), per_test=results, error=error,
                   isolation=box.level, layers=dict(box.layers))


Graded = tuple[list[checks.Outcome], str, dict[int, bool]]


def _grade_functional(box: Sandbox, program: str, tests: Sequence[Any], entry_point: str | None,
                      per_test: list[Limits], base: Limits, compare: Compare, fail_fast: bool,
                      retries: int) -> Graded:
    cases = [as_functional(t, i) for i, t in enumerate(tests)]
    if not entry_point:
        raise ValueError("functional tests need entry_point= (the function name, e.g. 'has_close_elements')")
    passed: dict[int, bool] = {}

    def judge(i: int, out: checks.Outcome) -> bool:  # compared here, in the parent, as results arrive
        passed[i] = out.status == "ok" and functional_equal(out.output, cases[i].expected, cases[i].atol, compare)
        return fail_fast and not passed[i]

    encoded = [_encode_args(c, i) for i, c in enumerate(cases)]
    outcomes, error = checks.run_functional(box, program, entry_point, encoded, per_test, base,
                                            stop=judge, retries=retries)
    return outcomes, error, passed


def _grade_stdio(box: Sandbox, program: str, tests: Sequence[Any], per_test: list[Limits],
                 fail_fast: bool, retries: int) -> Graded:
    cases = [as_stdio(t, i) for i, t in enumerate(tests)]
    passed: dict[int, bool] = {}

    def judge(i: int, out: checks.Outcome) -> bool:
        passed[i] = out.status == "ok" and stdio_equal(out.output, cases[i].output)
        return fail_fast and not passed[i]

    outcomes = checks.run_stdio(box, program, [c.input for c in cases], per_test, stop=judge, retries=retries)
    return outcomes, "", passed


def _encode_args(case: FunctionalTest, i: int) -> Any:
    try:
        return codec.encode(list(case.args))
    except codec.CodecError as exc:
        raise ValueError(f"test {i}: its input cannot be sent to the sandbox: {exc}") from None


def as_functional(test: Any, i: int) -> FunctionalTest:
    """Normalise one functional test case (see :func:`check_solution`)."""
    if isinstance(test, FunctionalTest):
        case = test
    elif isinstance(test, dict) and "input" in test and "output" in test:
        case = FunctionalTest(test["input"], test["output"], float(test.get("atol", 0.0)))
    elif isinstance(test, tuple) and len(test) == 2:
        case = FunctionalTest(test[0], test[1])
    else:
        raise ValueError(f"test {i}: expected FunctionalTest, {{'input': [args...], 'output': ...}} "
                         f"or (args, expected), got {str(test)[:100]}")
    if not isinstance(case.args, (list, tuple)):
        raise ValueError(f"test {i}: input must be the list of positional arguments, got {type(case.args).__name__}; "
                         "wrap a single argument as [arg]")
    return FunctionalTest(tuple(case.args), case.expected, case.atol)


def as_stdio(test: Any, i: int) -> StdioTest:
    """Normalise one stdio test case (see :func:`check_solution`)."""
    if isinstance(test, StdioTest):
        case = test
    elif isinstance(test, dict) and "input" in test and "output" in test:
        case = StdioTest(test["input"], test["output"])
    elif isinstance(test, tuple) and len(test) == 2:
        case = StdioTest(*test)
    else:
        raise ValueError(f"test {i}: expected StdioTest, {{'input': str, 'output': str}} or (input, output), "
                         f"got {str(test)[:100]}")
    if not isinstance(case.input, str) or not isinstance(case.output, str):
        raise ValueError(f"test {i}: stdio input and output must both be str")
    return case
