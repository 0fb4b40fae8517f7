"""The world's figures: what the policy and the PRM can do on the shipped test sets.

Every figure comes from running the real components: ``HFPolicy`` sampling, the PRM
loaded by ``load_prm``, and the registered strategies (``greedy``, ``majority``,
``bon``) on ``Problem`` objects built exactly as the lm-eval task builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prm_plugin.search import Budget
from prm_plugin.search import Problem as SearchProblem
from prm_plugin.world.generator import Problem
from prm_plugin.world.grading import is_correct
from prm_plugin.world.labels import answer_checker, sample_solution_rows

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


def pass_at_k(policy: Any, tokenizer: Any, problems: Sequence[Problem], k: int, seed: int,
              temperature: float = 1.0) -> float:
    """Fraction of problems with at least one correct solution among k samples."""
    rows = sample_solution_rows(policy, tokenizer, problems, samples=k, temperature=temperature, seed=seed)
    solved = {r["prompt"] for r in rows if answer_checker("\n\n".join(r["completions"]), r["answer"])}
    return sum(p.question in solved for p in problems) / len(problems)


def prm_step_metrics(prm: Any, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The PRM's step metrics against the true labels (threshold 0.5)."""
    from prm_plugin.search import PRMQuery
    from trainers.metrics import step_metrics

    scored = prm.score([PRMQuery(r["prompt"], tuple(r["completions"])) for r in rows])
    return step_metrics([(s.scores, [float(x) for x in r["true_labels"]]) for s, r in zip(scored, rows)])


def world_figures(
    policy: Any, prm: Any, tokenizer: Any, arith: Sequence[Problem], codelike: Sequence[Problem],
    *, n: int = 16, seed: int = 0, temperature: float = SAMPLE_TEMPERATURE,
) -> dict[str, Any]:
    """Every figure the README's world section reports (samples at ``temperature``)."""
    sp = search_problems(tokenizer, arith)
    rows = sample_solution_rows(policy, tokenizer, arith, samples=n, temperature=temperature, seed=seed + 7)
    common: dict[str, Any] = {"seed": seed, "temperature": temperature}
    greedy = strategy_correct("greedy", arith, sp, policy, None, 1, seed=seed)
    figures: dict[str, Any] = {
        "arith_problems": len(arith),
        "temperature": temperature,
        "greedy": sum(greedy) / len(greedy),
        # what the shipped-checkpoint test reproduces: greedy on the first 50 test problems
        "greedy_first50": sum(greedy[:50]) / len(greedy[:50]),
        f"pass@{n}": pass_at_k(policy, tokenizer, arith, n, seed + 7, temperature),
        f"majority@{n}": strategy_accuracy("majority", arith, sp, policy, None, n, **common),
        f"weighted_majority@{n}": strategy_accuracy("majority", arith, sp, policy, prm, n, weighted=True, **common),
        f"bon@{n}": strategy_accuracy("bon", arith, sp, policy, prm, n, aggregation="min", **common),
        "prm_on_test_samples": prm_step_metrics(prm, rows),
    }
    if codelike:
        cp = search_problems(tokenizer, codelike)
        figures["codelike_problems"] = len(codelike)
        figures["codelike_greedy"] = strategy_accuracy("greedy", codelike, cp, policy, None, 1, seed=seed)
        figures[f"codelike_pass@{n}"] = pass_at_k(policy, tokenizer, codelike, n, seed + 7, temperature)
    return figures
