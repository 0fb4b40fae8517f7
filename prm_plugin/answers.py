"""Answer keys for majority voting, registered as a built-in plugin.

An answer key turns a candidate's text into a canonical answer string and decides
whether two answers are the same. Math uses math-verify equivalence (``1/2`` and
``\\frac{1}{2}`` and ``0.5`` vote together); code uses behaviour on the problem's
example inputs, run in the sandbox.
"""

from __future__ import annotations

import ast
import re
import threading
from functools import lru_cache
from typing import Any, Literal

from prm_plugin.hookspecs import hookimpl
from prm_plugin.search import Problem

_FALLBACK_CHARS = 300
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (balanced braces), or None.

    >>> last_boxed(r"so \boxed{\frac{1}{2}} and \boxed{3}")
    '3'
    >>> last_boxed(r"\boxed{\frac{a}{b}}")
    '\\frac{a}{b}'
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    start, depth = starts[-1], 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
    return None


def _timeout() -> int | None:
    # math-verify's timeouts use SIGALRM, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parse_math(answer: str) -> tuple[Any, ...]:
    from math_verify import parse

    return tuple(parse(f"${answer}$", parsing_timeout=_timeout()))


class MathAnswerKey:
    """``\\boxed{}`` answer, else the last expression math-verify extracts."""

    domain = "math"

    @staticmethod
    def extract(text: str, problem: Problem | None = None) -> str | None:
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
        from math_verify import parse

        # The answer sits at the end; parsing a long unstructured text is slow (seconds).
        parsed = parse(text[-_FALLBACK_CHARS:], parsing_timeout=_timeout())
        return str(parsed[1]) if len(parsed) > 1 else None

    @staticmethod
    def equivalent(a: str | None, b: str | None) -> bool:
        if a is None or b is None:
            return False
        if a == b:
            return True
        from math_verify import verify

        pa, pb = _parse_math(a), _parse_math(b)
        if not pa or not pb:
            return False
        return bool(verify(list(pa), list(pb), timeout_seconds=_timeout()))


def extract_code(text: str) -> str:
    """The last fenced Python block of a chat answer, or the text itself."""
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def normalise_source(code: str) -> str:
    """Source with comments, docstrings and formatting removed (``ast`` round trip);
    the stripped lines when the code does not parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        lines = (ln.split("#", 1)[0].rstrip() for ln in code.splitlines())
        return "\n".join(ln for ln in lines if ln.strip())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list) and body and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.unparse(tree)


class CodeAnswerKey:
    """Behaviour: programs that give the same outputs on the problem's example inputs
    vote together (run in ``prm_plugin.sandbox``). Example inputs come from the
    problem's record: the docstring examples of its ``entry_point`` (HumanEval style)
    or its public test inputs (LiveCodeBench style). A problem without examples falls
    back to normalised source (comments and layout ignored)."""

    domain = "code"

    @staticmethod
    def extract(text: str, problem: Problem | None = None) -> str | None:
        code = extract_code(text)
        if not code.strip():
            return None
        examples = example_inputs(problem) if problem is not None else None
        if examples is None:
            return "source:" + normalise_source(code)
        kind, inputs, entry_point = examples
        prompt = (problem.doc or {}).get("prompt") if problem is not None else None
        if kind == "functional" and prompt and entry_point and f"def {entry_point.split('.')[-1]}" not in code:
            code = prompt + code  # a completion of the prompt's function
        from prm_plugin.sandbox import behaviour_signature

        signature = behaviour_signature(code, inputs, kind=kind, entry_point=entry_point)
        return None if signature is None else "behaviour:" + signature

    @staticmethod
    def equivalent(a: str | None, b: str | None) -> bool:
        return a is not None and a == b


def example_inputs(problem: Problem) -> tuple[Literal["functional", "stdio"], list[Any], str | None] | None:
    """``(kind, inputs, entry_point)`` of a problem's examples, or None if it has none."""
    import json

    doc = problem.doc or {}
    entry_point = doc.get("entry_point")
    if entry_point:
        from prm_plugin.sandbox import doctest_inputs

        inputs = doctest_inputs(doc.get("prompt") or problem.question, entry_point)
        return ("functional", [list(a) for a in inputs], entry_point) if inputs else None
    public = doc.get("public_test_cases")
    if public:
        tests = json.loads(public) if isinstance(public, str) else public
        if not tests:
            return None
        if tests[0].get("testtype") == "functional":
            meta = doc.get("metadata") or {}
            func = (json.loads(meta) if isinstance(meta, str) else meta).get("func_name")
            args = [[json.loads(line) for line in t["input"].split("\n") if line.strip()] for t in tests]
            return "functional", args, f"Solution.{func}" if func else None
        return "stdio", [t["input"] for t in tests], None
    return None


@hookimpl
def register_answer_keys(register: Any) -> None:
    register(MathAnswerKey)
    register(CodeAnswerKey)
