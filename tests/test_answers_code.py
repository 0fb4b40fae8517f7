"""Code answer keys: programs vote by behaviour on the problem's example inputs."""

from __future__ import annotations

import json

from prm_plugin.answers import CodeAnswerKey, example_inputs
from prm_plugin.search import Problem

HE_PROMPT = 'def add_one(x):\n    """Add one.\n    >>> add_one(1)\n    2\n    >>> add_one(-3)\n    -2\n    """\n'


def _humaneval() -> Problem:
    return Problem(prompt=HE_PROMPT, question=HE_PROMPT, domain="code",
                   doc={"prompt": HE_PROMPT, "entry_point": "add_one"})


def test_humaneval_programs_with_the_same_behaviour_vote_together() -> None:
    p = _humaneval()
    assert example_inputs(p) == ("functional", [[1], [-3]], "add_one")
    plain = CodeAnswerKey.extract("    return x + 1\n", p)  # completion of the prompt
    chat = CodeAnswerKey.extract("```python\ndef add_one(x):\n    y = 1\n    return y + x\n```", p)
    wrong = CodeAnswerKey.extract("    return x * 2\n", p)
    assert plain is not None and plain.startswith("behaviour:")
    assert CodeAnswerKey.equivalent(plain, chat)
    assert not CodeAnswerKey.equivalent(plain, wrong)


def test_livecodebench_stdio_and_functional_examples() -> None:
    stdio = Problem(prompt="", question="sum", domain="code", doc={
        "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"},
                                         {"input": "5 5\n", "output": "10\n", "testtype": "stdin"}])})
    a = CodeAnswerKey.extract("print(sum(map(int, input().split())))", stdio)
    b = CodeAnswerKey.extract("x, y = map(int, input().split())\nprint(x + y)", stdio)
    c = CodeAnswerKey.extract("print(0)", stdio)
    assert CodeAnswerKey.equivalent(a, b) and not CodeAnswerKey.equivalent(a, c)
    func = Problem(prompt="", question="twice", domain="code", doc={
        "public_test_cases": json.dumps([{"input": "[1, 2]\n3", "output": "[2, 4]", "testtype": "functional"}]),
        "metadata": json.dumps({"func_name": "go"})})
    assert example_inputs(func) == ("functional", [[[1, 2], 3]], "Solution.go")
    good = "class Solution:\n    def go(self, xs, k):\n        return [2 * v for v in xs]\n"
    same = "class Solution:\n    def go(self, xs, k):\n        return [v + v for v in xs]\n"
    other = "class Solution:\n    def go(self, xs, k):\n        return xs\n"
    ka, kb, kc = (CodeAnswerKey.extract(t, func) for t in (good, same, other))
    assert CodeAnswerKey.equivalent(ka, kb) and not CodeAnswerKey.equivalent(ka, kc)


def test_without_examples_source_is_normalised() -> None:
    a = CodeAnswerKey.extract("def f(x):\n    # add\n    return x+1\n")
    b = CodeAnswerKey.extract('```python\ndef f(x):\n    """Doc."""\n    return x + 1\n```')
    c = CodeAnswerKey.extract("def f(x):\n    return x + 2\n")
    assert a is not None and a.startswith("source:")
    assert CodeAnswerKey.equivalent(a, b) and not CodeAnswerKey.equivalent(a, c)
    assert CodeAnswerKey.extract("   \n") is None
