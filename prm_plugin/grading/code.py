"""Code extraction and checking shared by the code tasks, the integrations and the trainer.

Verdicts are decided in this (parent) process from the program's outputs;
``prm_plugin.sandbox`` runs the untrusted code. Benchmark rules live beside this module:
``prm_plugin.grading.humaneval`` (EvalPlus) and ``prm_plugin.grading.livecodebench``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

#: ``checker(solution_text, reference) -> bool``: the contract of an answer checker (used by
#: ``prm_plugin.trainers.aslaf``); ``reference`` is a row's answer (a string, or the tests for code).
Checker = Callable[[str, Any], bool]


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




def code_checker(
    kind: str = "stdio", entry_point: str | None = None, timeout_per_test_s: float = 5.0
) -> Checker:
    """A ``Checker`` that runs the solution's last Python block on the row's tests in the
    sandbox (``prm_plugin.sandbox.check_solution``): ``stdio`` tests are
    ``(input, output)`` pairs, ``functional`` tests ``(args, expected)`` for
    ``entry_point``."""

    def check(solution: str, tests: Any) -> bool:
        from prm_plugin.answers import extract_code

        # JSON rows hold pairs as lists; the sandbox takes them as tuples
        cases = [tuple(t) if isinstance(t, list) else t for t in tests]
        verdict = sandbox().check_solution(extract_code(solution), cases, kind=kind,
                                           entry_point=entry_point, timeout_per_test_s=timeout_per_test_s)
        return bool(verdict.passed)

    return check
