"""Ground truth for any solution a model writes in the synthetic world.

A step's true label is *prefix correctness*: true while every step so far is exactly
right (right operands, right operation, right result, in the right place), false from
the first mistake on. That is what a PRM's score means (the chance the solution is
still on track) and what Monte-Carlo labels estimate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from prm_plugin.answers import last_boxed
from prm_plugin.world.generator import VARS, Problem

_ARITH = re.compile(r"^\s*(-?\d+) ([+-]) (\d+) = (-?\d+)\s*$")
_CODE_START = re.compile(r"^\s*([a-z]) = (-?\d+)\s*$")
_CODE = re.compile(r"^\s*([a-z]) = ([a-z]) ([+-]) (\d+)  # (-?\d+) ([+-]) (\d+) = (-?\d+)\s*$")
_PRINT = re.compile(r"^\s*print\(([a-z])\)  # \\boxed\{(-?\d+)\}\s*$")
_FINAL = re.compile(r"^\s*The answer is \\boxed\{(-?\d+)\}\.\s*$")


def final_answer(text: str) -> str | None:
    """The last ``\\boxed{}`` content of a solution, stripped."""
    return last_boxed(text)


def is_correct(problem: Problem, text: str) -> bool:
    """Outcome correctness: the final boxed answer equals the true answer."""
    ans = final_answer(text)
    return ans is not None and ans.strip() == str(problem.answer)


def true_step_labels(problem: Problem, steps: Sequence[str]) -> list[bool]:
    """Prefix-correctness label of every step of a solution (any text, any length)."""
    labels: list[bool] = []
    ok = True
    for i, step in enumerate(steps):
        ok = ok and _step_ok(problem, i, step)
        labels.append(ok)
    return labels


def _step_ok(problem: Problem, i: int, step: str) -> bool:
    vals, n = problem.values, len(problem.ops)
    if problem.domain == "arith":
        if i < n:
            m = _ARITH.match(step)
            op, b = problem.ops[i]
            return m is not None and _ints(m, 1, 3, 4) == (vals[i], b, vals[i + 1]) and m.group(2) == op
        m = _FINAL.match(step)
        return i == n and m is not None and int(m.group(1)) == problem.answer
    if i == 0:
        m = _CODE_START.match(step)
        return m is not None and m.group(1) == VARS[0] and int(m.group(2)) == problem.start
    if i <= n:
        m = _CODE.match(step)
        if not m:
            return False
        op, b = problem.ops[i - 1]
        names_ok = (m.group(1), m.group(2)) == (VARS[i], VARS[i - 1])
        code_ok = m.group(3) == op and int(m.group(4)) == b
        comment_ok = _ints(m, 5, 7, 8) == (vals[i - 1], b, vals[i]) and m.group(6) == op
        return names_ok and code_ok and comment_ok
    m = _PRINT.match(step)
    return i == n + 1 and m is not None and m.group(1) == VARS[n] and int(m.group(2)) == problem.answer


def _ints(m: re.Match[str], *groups: int) -> tuple[int, ...]:
    return tuple(int(m.group(g)) for g in groups)
