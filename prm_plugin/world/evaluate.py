"""Running registered strategies on world problems, as the lm-eval task builds them.

Used by the world's figures (``prm_plugin.trainers.world.figures``), the tests, the demo
and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prm_plugin.search import Budget
from prm_plugin.search import Problem as SearchProblem
from prm_plugin.world.generator import Problem
from prm_plugin.world.grading import is_correct

#: Sampling temperature of the world's figures. At 1.0 the policy also slips on plain
#: arithmetic now and then (a tail it learned nowhere), which the tiny PRM cannot check;
#: one such path among 16 outscores the right one in best-of-N (world build 5: bon@16
#: 41.7% at 1.0, 80.0% at 0.5, greedy 61.7%). At 0.5 the policy still transposes hard
#: values about a third of the time, so samples stay diverse.
SAMPLE_TEMPERATURE = 0.5


def search_problems(tokenizer: Any, problems: Sequence[Problem], max_tokens: int = 256) -> list[SearchProblem]:
    """World problems as the strategies see them (math domain: boxed answers)."""
    from prm_plugin.world.tokenizer import chat_prompt

    return [
        SearchProblem(prompt=chat_prompt(tokenizer, p.question), question=p.question,
                      max_tokens=max_tokens, domain="math", uid=p.uid)
        for p in problems
    ]


def strategy_correct(
    name: str, problems: Sequence[Problem], sproblems: Sequence[SearchProblem], policy: Any,
    prm: Any, n: int, batch: int = 64, **params: Any,
) -> list[bool]:
    """Per problem, whether a registered strategy's answer is right (``batch`` problems per search)."""
    from prm_plugin.plugins import get_strategy

    strategy = get_strategy(name)(**params)
    correct: list[bool] = []
    for start in range(0, len(sproblems), batch):
        results = strategy.search(sproblems[start:start + batch], policy, prm, Budget(n=n))
        correct += [is_correct(p, r.text) for p, r in zip(problems[start:], results)]
    return correct


def strategy_accuracy(
    name: str, problems: Sequence[Problem], sproblems: Sequence[SearchProblem], policy: Any,
    prm: Any, n: int, batch: int = 64, **params: Any,
) -> float:
    """Accuracy of a registered strategy on the problems."""
    correct = strategy_correct(name, problems, sproblems, policy, prm, n, batch, **params)
    return sum(correct) / len(correct)
