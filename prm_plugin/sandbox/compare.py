"""Output comparison, done in the parent on plain decoded values.

Functional tests follow EvalPlus (``evalplus/eval/__init__.py``, ``unsafe_execute``):
exact ``==`` first; when that fails and the tolerance is non-zero (float expectations
always get ``atol >= 1e-6``), the output must have the expected type and length and be
element-wise within ``atol + rtol * |expected|`` with ``rtol = 1e-7`` (numpy's
``allclose``; NaN never matches). LiveCodeBench call-based tests turn a tuple output
into a list and compare with ``==``. Stdio tests follow LiveCodeBench's ``grade_stdio``:
strip the whole output, split into lines, strip each line; the line counts must match,
and each line must match exactly or, token by token, as equal ``Decimal`` numbers.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Compare = Literal["evalplus", "lcb", "exact"]
RTOL = 1e-7


def is_floats(x: Any) -> bool:
    """EvalPlus's test for float expectations: a float, or a non-empty list/tuple of floats."""
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(i, float) for i in x)


def _close(out: Any, exp: Any, atol: float) -> bool:
    if isinstance(exp, (list, tuple)):
        if not isinstance(out, (list, tuple)) or len(out) != len(exp):
            return False
        return all(_close(o, e, atol) for o, e in zip(out, exp, strict=True))
    if not isinstance(out, (int, float)) or not isinstance(exp, (int, float)):
        return False
    if math.isinf(exp) or math.isinf(out):
        return out == exp
    return abs(out - exp) <= atol + RTOL * abs(exp)  # False for NaN, like numpy


def functional_equal(out: Any, exp: Any, atol: float = 0.0, mode: Compare = "evalplus") -> bool:
    """Whether a decoded output matches the expectation.

    >>> functional_equal(0.1 + 0.2, 0.3)
    True
    >>> functional_equal([1, 2], (1, 2)), functional_equal((1, 2), [1, 2], mode="lcb")
    (False, True)
    """
    if mode == "lcb":
        return (list(out) if isinstance(out, tuple) else out) == exp
    if mode == "exact":
        return type(out) is type(exp) and out == exp
    try:
        if out == exp:
            return True
    except Exception:  # comparing plain values should not raise; be safe anyway
        return False
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if atol == 0 or type(out) is not type(exp):
        return False
    return _close(out, exp, atol)


def stdio_lines(text: str) -> list[str]:
    """LiveCodeBench's normal form of a program's output."""
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None


def stdio_equal(output: str, expected: str) -> bool:
    """LiveCodeBench stdio rules.

    >>> stdio_equal("1 2\\r\\n3  \\n\\n", "1 2\\n3")
    True
    >>> stdio_equal("0.50", "0.5"), stdio_equal("1", "2")
    (True, False)
    """
    got, want = stdio_lines(output), stdio_lines(expected)
    if len(got) != len(want):
        return False
    for a, b in zip(got, want, strict=True):
        if a == b:
            continue
        da, db = _decimals(a), _decimals(b)
        try:
            if da is None or db is None or da != db:
                return False
        except InvalidOperation:  # signalling NaN
            return False
    return True
