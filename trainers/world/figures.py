"""The world's figures: what the policy and the PRM can do on the shipped test sets.

Every figure comes from running the real components: ``HFPolicy`` sampling, the PRM
loaded by ``load_prm``, and the registered strategies (``greedy``, ``majority``,
``bon``) on ``Problem`` objects built exactly as the lm-eval task builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prm_plugin.trainers.world.labels import answer_checker, sample_solution_rows
from prm_plugin.world.evaluate import (
    SAMPLE_TEMPERATURE,
    search_problems,
    strategy_accuracy,
    strategy_correct,
)
from prm_plugin.world.generator import Problem


def pass_at_k(policy: Any, tokenizer: Any, problems: Sequence[Problem], k: int, seed: int,
              temperature: float = 1.0) -> float:
    """Fraction of problems with at least one correct solution among k samples."""
    rows = sample_solution_rows(policy, tokenizer, problems, samples=k, temperature=temperature, seed=seed)
    solved = {r["prompt"] for r in rows if answer_checker("\n\n".join(r["completions"]), r["answer"])}
    return sum(p.question in solved for p in problems) / len(problems)


def prm_step_metrics(prm: Any, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The PRM's step metrics against the true labels (threshold 0.5)."""
    from prm_plugin.search import PRMQuery
    from prm_plugin.trainers.metrics import step_metrics

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
