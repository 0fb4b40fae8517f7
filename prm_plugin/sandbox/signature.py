"""Behaviour signatures: an answer key for code, for majority voting.

Two programs vote together when they behave the same on the problem's example inputs
(doctest calls in a HumanEval prompt, LiveCodeBench public test inputs), measured by
running them in the sandbox, not by comparing their text.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from . import checks
from ._child import codec
from .api import as_functional, default_sandbox
from .box import Sandbox, make_limits
from .compare import stdio_lines


def behaviour_signature(
    program: str,
    inputs: Sequence[Any],
    *,
    kind: Literal["functional", "stdio"] = "functional",
    entry_point: str | None = None,
    timeout_per_test_s: float = 2.0,
    memory_mb: int = 512,
    float_digits: int = 6,
    sandbox: Sandbox | None = None,
) -> str | None:
    """A short hash of what ``program`` does on ``inputs``; equal hashes mean equal behaviour.

    Outputs are normalised the way the graders compare them: floats to ``float_digits``
    significant digits, set and dict order ignored; stdio text as LiveCodeBench's stripped
    lines, with numeric tokens as normalised decimals. A crash counts as its exception
    type, so two programs failing the same way on an input still agree there.

    Args:
        program: Python source.
        inputs: functional: one list of positional arguments per call; stdio: one str each.
        kind: ``"functional"`` (needs ``entry_point``) or ``"stdio"``.
        entry_point: the function to call.
        timeout_per_test_s: CPU seconds per input.
        memory_mb: memory limit, see :func:`prm_plugin.sandbox.run_python`.
        float_digits: significant digits kept of float outputs.
        sandbox: the :class:`Sandbox` to use.

    Returns:
        ``"sha256:<32 hex digits>"``, or None when the program produced no output on any
        input (it does not load, or every input failed), so it never wins a vote.
    """
    if not inputs:
        raise ValueError("behaviour_signature needs at least one input")
    box = sandbox or default_sandbox()
    limits = make_limits(None, {"timeout_s": timeout_per_test_s, "memory_mb": memory_mb})
    per = [limits] * len(inputs)
    if kind == "functional":
        if not entry_point:
            raise ValueError("functional signatures need entry_point=")
        args = [codec.encode(list(as_functional((x, None), i).args)) for i, x in enumerate(inputs)]
        outcomes, error = checks.run_functional(box, program, entry_point, args, per, limits, retries=0)
        if error:
            return None
        keys = [_functional_key(o, float_digits) for o in outcomes]
    elif kind == "stdio":
        if not all(isinstance(x, str) for x in inputs):
            raise ValueError("stdio inputs must all be str")
        keys = [_stdio_key(o) for o in checks.run_stdio(box, program, list(inputs), per, retries=0)]
    else:
        raise ValueError(f"kind must be 'functional' or 'stdio', got {kind!r}")
    if all(k[0] != "ok" for k in keys):
        return None
    blob = json.dumps(keys, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def behaviour_signatures(programs: Sequence[str], inputs: Sequence[Any], *, workers: int | None = None,
                         sandbox: Sandbox | None = None, **kwargs: Any) -> list[str | None]:
    """:func:`behaviour_signature` of many candidate programs on the same inputs, in parallel.

    ``workers`` bounds the sandboxes running at once (default: the CPU count); other
    keywords go to :func:`behaviour_signature`. Signatures come back in order.
    """
    if not programs:
        return []
    box = sandbox or default_sandbox()
    n = max(1, min(len(programs), workers or os.cpu_count() or 1))
    with ThreadPoolExecutor(n, thread_name_prefix="signature") as pool:
        futures = [pool.submit(behaviour_signature, p, inputs, sandbox=box, **kwargs) for p in programs]
        return [f.result() for f in futures]


def _error_key(outcome: checks.Outcome) -> list[Any]:
    if outcome.status == "runtime_error":
        return ["error", re.split(r"[:\s]", outcome.error.strip(), maxsplit=1)[0]]
    return [outcome.status]


def _functional_key(outcome: checks.Outcome, digits: int) -> list[Any]:
    if outcome.status != "ok":
        return _error_key(outcome)
    return ["ok", canonical(outcome.output, digits)]


def _stdio_key(outcome: checks.Outcome) -> list[Any]:
    if outcome.status != "ok":
        return [outcome.status]
    return ["ok", [" ".join(_token(t) for t in line.split()) for line in stdio_lines(outcome.output)]]


def _token(tok: str) -> str:
    try:
        value = Decimal(tok)
    except (InvalidOperation, ValueError):
        return tok
    return str(value.normalize()) if value.is_finite() else tok


def canonical(value: Any, digits: int = 6) -> Any:
    """An order-independent, float-rounded, JSON-ready form of a decoded output.

    >>> canonical({2: {0.1 + 0.2, 1}, 1: (None, "x")})
    ['dict', [[1, ['tuple', [None, 'x']]], [2, ['set', [1, ['float', '0.3']]]]]]
    """
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return ["float", f"{value:.{digits}g}"]
    if isinstance(value, complex):
        return ["complex", canonical(value.real, digits), canonical(value.imag, digits)]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, list):
        return [canonical(v, digits) for v in value]
    if isinstance(value, tuple):
        return ["tuple", [canonical(v, digits) for v in value]]
    if isinstance(value, (set, frozenset)):
        return ["set", sorted((canonical(v, digits) for v in value), key=_order)]
    if isinstance(value, dict):
        items = [[canonical(k, digits), canonical(v, digits)] for k, v in value.items()]
        return ["dict", sorted(items, key=_order)]
    raise TypeError(f"not a plain value: {type(value).__name__}")


def _order(x: Any) -> str:
    return json.dumps(x, sort_keys=True)


def doctest_inputs(prompt: str, entry_point: str) -> list[tuple[Any, ...]]:
    """Argument tuples of the example calls of ``entry_point`` in a prompt.

    Finds ``entry_point(...)`` calls (doctest ``>>>`` lines and "for example" lines alike)
    whose arguments are all literals; definitions and non-literal calls are skipped.

    >>> doctest_inputs('def f(a, b):\\n    \"\"\"\\n    >>> f([1, 2], 3)\\n    5\\n    f(x, 1) ==> 2\\n    \"\"\"', "f")
    [([1, 2], 3)]
    """
    found: list[tuple[Any, ...]] = []
    for match in re.finditer(rf"(?<![\w.]){re.escape(entry_point)}\s*\(", prompt):
        if re.search(r"def\s+$", prompt[: match.start()]):
            continue
        call = _balanced(prompt, match.end() - 1)
        if call is None:
            continue
        try:
            node = ast.parse(entry_point + call, mode="eval").body
            if not isinstance(node, ast.Call) or node.keywords:
                continue
            args = tuple(ast.literal_eval(a) for a in node.args)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            continue
        if args not in found:
            found.append(args)
    return found


def _balanced(text: str, start: int) -> str | None:
    depth, quote = 0, ""
    for j in range(start, min(len(text), start + 10_000)):
        ch = text[j]
        if quote:
            if ch == quote and text[j - 1] != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return text[start : j + 1]
    return None
