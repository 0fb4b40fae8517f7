"""Code answer extraction and grading for the code tasks, through ``prm_plugin.sandbox``.

Verdicts are decided in this (parent) process from the program's outputs; the
sandbox runs the untrusted code. HumanEval+ follows EvalPlus (base and plus inputs
must all pass; float tolerance ``atol``; ``find_zero`` judged by its polynomial
oracle); LiveCodeBench follows its own grader (LeetCode ``class Solution`` methods
or stdin/stdout programs, its import prelude, 6 s per test, tuples count as lists).
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import pickle
import zlib
from dataclasses import dataclass
from typing import Any

HUMANEVAL_TIMEOUT_S = 4.0  # EvalPlus: max(1 s, 4 x ground-truth time); GT times are not in the HF data
LCB_TIMEOUT_S = 6.0  # LiveCodeBench's per-test timeout
_LCB_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                "statistics", "itertools", "functools", "operator", "io", "sys", "json")
#: The names LiveCodeBench makes available to every solution before running it.
LCB_PRELUDE = (
    "".join(f"from {m} import *\n" for m in (*_LCB_MODULES, "builtins", "typing"))
    + "".join(f"import {m}\n" for m in _LCB_MODULES)
    + "sys.setrecursionlimit(50000)\n"
)


def sandbox() -> Any:
    """``prm_plugin.sandbox``, or a clear error when this install lacks it."""
    try:
        from prm_plugin import sandbox as module
    except ImportError as exc:  # pragma: no cover - the sandbox ships with prm-plugin
        raise RuntimeError(
            "Grading code tasks needs prm_plugin.sandbox, which failed to import "
            f"({exc}). Reinstall prm-plugin."
        ) from exc
    return module


# -- extraction -----------------------------------------------------------------
def last_fenced_block(text: str) -> str:
    """LiveCodeBench's extraction: the lines between the last two lines holding ```."""
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1 : fences[-1]])


def sanitize(code: str, entry_point: str) -> str:
    """Keep what a solution needs (imports, functions, classes, assignments), drop
    top-level statements such as demo prints or ``if __name__ == "__main__":`` blocks,
    as EvalPlus's sanitizer does. Unparsable code is returned unchanged."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
            ast.AnnAssign)
    tree.body = [node for node in tree.body if isinstance(node, keep)]
    return ast.unparse(tree)


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


# -- HumanEval+ ----------------------------------------------------------------------
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


# -- LiveCodeBench ---------------------------------------------------------------------
def lcb_tests(doc: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None]:
    """(kind, tests, func_name) of a ``code_generation_lite`` row: public + private."""
    public = json.loads(doc["public_test_cases"] or "[]")
    private = decode_private_tests(doc.get("private_test_cases") or "")
    tests = public + private
    if not tests:
        raise ValueError(f"LiveCodeBench problem {doc.get('question_id')} has no test cases")
    func_name = json.loads(doc.get("metadata") or "{}").get("func_name")
    kind = "functional" if tests[0].get("testtype") == "functional" else "stdio"
    if kind == "functional":
        cases = [{"input": [json.loads(line) for line in t["input"].split("\n")], "output": json.loads(t["output"])}
                 for t in tests]
    else:
        cases = [{"input": t["input"], "output": t["output"]} for t in tests]
    return kind, cases, func_name


def decode_private_tests(blob: str) -> list[dict[str, Any]]:
    """Private tests are JSON, or base64(zlib(pickle(JSON string))). The pickle is
    read with an unpickler that refuses every global, so only plain data loads."""
    if not blob:
        return []
    try:
        return list(json.loads(blob))
    except ValueError:
        pass
    raw = zlib.decompress(base64.b64decode(blob.encode("utf-8")))
    data = _DataOnlyUnpickler(io.BytesIO(raw)).load()
    return list(json.loads(data) if isinstance(data, str) else data)


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"LiveCodeBench tests may hold plain data only, not {module}.{name}")


def grade_lcb(code: str, doc: dict[str, Any]) -> bool:
    """LiveCodeBench pass: every public and private test passes."""
    if not code.strip():
        return False
    kind, cases, func_name = lcb_tests(doc)
    program = LCB_PRELUDE + "\n" + code
    sb = sandbox()
    if kind == "functional":
        if not func_name:
            raise ValueError(f"functional LiveCodeBench problem {doc.get('question_id')} has no metadata.func_name")
        entry = f"Solution.{func_name}" if "class Solution" in code else func_name
        verdict = sb.check_solution(program, cases, kind="functional", entry_point=entry,
                                    timeout_per_test_s=LCB_TIMEOUT_S, compare="lcb")
    else:
        verdict = sb.check_solution(program, cases, kind="stdio", timeout_per_test_s=LCB_TIMEOUT_S)
    return bool(verdict.passed)
