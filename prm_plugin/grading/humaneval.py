"""HumanEval+ grading as EvalPlus does it: base and plus inputs must all pass, float
tolerance ``atol``, ``find_zero`` judged by its polynomial oracle. The ``test`` field of
``evalplus/humanevalplus`` is parsed, never executed here; solutions run in the sandbox."""

from __future__ import annotations

import ast
import contextlib
from dataclasses import dataclass
from typing import Any

from prm_plugin.grading.code import last_fenced_block, sandbox, sanitize

HUMANEVAL_TIMEOUT_S = 4.0  # EvalPlus: max(1 s, 4 x ground-truth time); GT times are not in the HF data


def humaneval_program(completion: str, prompt: str, entry_point: str) -> str:
    """The program to grade: a fenced block if the model wrote one, the prompt prepended
    when the completion only continues the function body."""
    code = completion
    if "```" in completion:
        block = last_fenced_block(completion) or completion.split("```")[0]
        code = block if block.strip() else completion
    if f"def {entry_point}" not in code:
        code = prompt + code
    return sanitize(code, entry_point)


@dataclass
class HumanEvalTests:
    """The inputs, expected outputs and tolerance in an EvalPlus ``check(candidate)``."""

    inputs: list[list[Any]]
    expected: list[Any]
    atol: float
    poly_oracle: bool  # find_zero: judged by |poly(xs, out)| <= atol, not by equality


def humaneval_tests(test_code: str) -> HumanEvalTests:
    """Parse the ``test`` field of ``evalplus/humanevalplus`` (never executed here)."""
    tree = ast.parse(test_code)
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None:
        raise ValueError("HumanEval+ test code has no check(candidate) function")
    literals: dict[str, Any] = {}
    for node in check.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                literals[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    inputs = literals.get("inputs")
    expected = next((literals[k] for k in ("exp_out", "results", "expected", "outputs") if k in literals), None)
    if not isinstance(inputs, list) or not isinstance(expected, list) or len(inputs) != len(expected):
        raise ValueError("HumanEval+ test code: expected literal `inputs` and `exp_out` lists of equal length")
    atol, poly = 0.0, "_poly(" in test_code
    for sub in ast.walk(check):
        if isinstance(sub, ast.Call) and getattr(sub.func, "id", "") == "assertion" and len(sub.args) == 3:
            atol = float(ast.literal_eval(sub.args[2]))
        if isinstance(sub, ast.Compare) and poly and sub.comparators:
            with contextlib.suppress(ValueError):
                atol = float(ast.literal_eval(sub.comparators[0]))
    return HumanEvalTests([list(i) for i in inputs], expected, atol, poly)


def grade_humaneval(program: str, entry_point: str, tests: HumanEvalTests) -> bool:
    """EvalPlus pass: every (base + plus) input passes."""
    sb = sandbox()
    cases = [{"input": args, "output": None if tests.poly_oracle else exp, "atol": tests.atol}
             for args, exp in zip(tests.inputs, tests.expected, strict=True)]
    if not tests.poly_oracle:
        verdict = sb.check_solution(program, cases, kind="functional", entry_point=entry_point,
                                    timeout_per_test_s=HUMANEVAL_TIMEOUT_S, compare="evalplus")
        return bool(verdict.passed)
    verdict = sb.check_solution(program, cases, kind="functional", entry_point=entry_point,
                                timeout_per_test_s=HUMANEVAL_TIMEOUT_S, compare="exact", fail_fast=False)
    return all(
        r.status in ("passed", "wrong_answer") and _poly_root_ok(args[0], r.output, tests.atol)
        for args, r in zip(tests.inputs, verdict.per_test, strict=True)
    )


def _poly_root_ok(xs: Any, x: Any, atol: float) -> bool:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    value = sum(c * x**i for i, c in enumerate(xs))
    return bool(abs(value) <= max(atol, 1e-6))
