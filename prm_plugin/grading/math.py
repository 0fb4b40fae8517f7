"""Math answer grading: math-verify equivalence and Minerva-normalised exact match, and the
math ``Checker`` of the trainer's Monte-Carlo labelling.

Minerva normalisation follows the rules of Lewkowycz et al. (2022), appendix D: keep
what follows the last ``=``, apply a fixed list of substitutions, drop unit words and
a fixed list of LaTeX fragments, unwrap ``$..$``, ``\\text{}``, ``\\textbf{}``,
``\\overline{}`` and ``\\boxed{}``, expand ``\\fracab``/``\\sqrta`` shorthand, drop
``$`` and the thousands commas of plain numbers. Two answers match when their
normalised strings are equal.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from prm_plugin.answers import last_boxed

# Appendix D's substitution and removal lists (the published rules, applied in order).
_SUBSTITUTIONS = (
    ("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("\\ ", ""), (" ", ""),
    ("mbox", "text"), (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
)
_UNIT_WORDS = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units",
    "sue", "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds",
    "meters", "meals", "edges", "students", "childrentickets", "multiples",
)
_FRAGMENTS = (
    "\\ldots", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}",
    "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"', "\\dots",
)
_UNWRAP = (r"\\text\{(.*?)\}", r"\\textbf\{(.*?)\}", r"\\overline\{(.*?)\}")


def minerva_normalize(answer: str) -> str:
    r"""Normalise a final answer the Minerva way.

    >>> minerva_normalize("x = \\frac12")
    '\\frac{1}{2}'
    >>> minerva_normalize("1,000 \\text{ dollars}")
    '1000'
    >>> minerva_normalize("$90^\\circ$")
    '90'
    """
    text = answer.split("=")[-1]
    for old, new in _SUBSTITUTIONS:
        text = text.replace(old, new)
    for fragment in _FRAGMENTS:
        text = text.replace(fragment, "")
    text = _drop_unit_words(text)
    math = re.search(r"\$(.*?)\$", text)
    if math:
        text = math.group(1)
    for pattern in _UNWRAP:
        text = re.sub(pattern, r"\1", text)
    boxed = last_boxed(text)
    if boxed is not None:
        text = boxed
    text = re.sub(r"(frac)([^{])(.)", r"frac{\2}{\3}", text)
    text = re.sub(r"(sqrt)([^{\[])", r"sqrt{\2}", text)
    text = text.replace("$", "")
    if text.replace(",", "").isdigit():
        text = text.replace(",", "")
    return text


def _drop_unit_words(text: str) -> str:
    # Unit words are removed outside LaTeX command names only, so "\left" keeps its "ft".
    parts = re.split(r"(\\[A-Za-z]+)", text)
    for i in range(0, len(parts), 2):
        for word in _UNIT_WORDS:
            parts[i] = parts[i].replace(word, "")
    return "".join(parts)


def _timeout() -> int | None:
    # math-verify's timeouts use SIGALRM, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


def math_verify_correct(completion: str, gold_answer: str) -> bool:
    """Whether math-verify finds the completion's answer equivalent to the gold one."""
    from math_verify import parse, verify

    gold = parse(f"\\boxed{{{gold_answer}}}", parsing_timeout=_timeout())
    pred = parse(completion, parsing_timeout=_timeout())
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=_timeout()))


def minerva_exact_match(completion: str, gold_answer: str) -> bool:
    """Whether the completion's last ``\\boxed{}`` equals the gold after normalisation."""
    boxed = last_boxed(completion)
    return boxed is not None and minerva_normalize(boxed) == minerva_normalize(gold_answer)


def score(completion: str, gold_answer: str) -> dict[str, Any]:
    """Both metrics for one completion (math_verify is the primary one)."""
    return {
        "math_verify": float(math_verify_correct(completion, gold_answer)),
        "exact_match": float(minerva_exact_match(completion, gold_answer)),
    }


def math_checker(solution: str, reference: Any) -> bool:
    """A ``Checker`` (``prm_plugin.grading.code.Checker``): the solution's final answer
    (``\\boxed{}`` or last expression) is equivalent to ``reference`` under math-verify
    (``prm_plugin.answers.MathAnswerKey``)."""
    from prm_plugin.answers import MathAnswerKey

    return MathAnswerKey.equivalent(MathAnswerKey.extract(solution), str(reference))
