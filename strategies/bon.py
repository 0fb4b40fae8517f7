"""Best-of-N: sample n whole solutions per problem, score every step with the PRM,
keep the solution with the best aggregated score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import prm_plugin
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.strategy import Strategy, StrategyParams, best_index


@dataclass
class BestOfNParams(StrategyParams):
    """Best-of-N settings.

    Attributes:
        samples_per_call: solutions per policy call; None samples all n in one call.
            Smaller values let ``Budget.max_policy_tokens``/``max_seconds`` stop
            sampling between calls.
    """

    samples_per_call: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples_per_call is not None and self.samples_per_call < 1:
            raise ValueError(
                f"samples_per_call must be >= 1, or None to sample all n in one call; got {self.samples_per_call}."
            )


class BestOfN(Strategy):
    """Best-of-N with a PRM (``bon``).

    Budget mapping: ``n`` whole solutions per problem, sampled to the end of the
    solution (final stops only) and split into steps with ``prm_plugin.steps``.
    Every solution's steps are scored in one PRM call for the whole batch; the
    solution with the highest aggregated score wins, the lowest index on ties.
    Identical solutions are scored once (they share a tree node).
    """

    name = "bon"
    Params = BestOfNParams
    needs_prm = True
    needs_steps = False  # whole solutions only (run.sample)
    params: BestOfNParams

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        p = self.params
        run = self.start(problems, policy, prm, budget)
        solutions = run.sample(budget.n, per_call=p.samples_per_call)
        run.score([(i, k) for i, ends in enumerate(solutions) for k in ends])
        results = []
        for i, ends in enumerate(solutions):
            scores = [run.aggregate(i, k) for k in ends]
            trace: dict[str, Any] = {
                "aggregation": p.aggregation,
                "scores": scores,
                "stop_reasons": [run.trees[i].nodes[k].stop_reason for k in ends],
            }
            results.append(run.finish(i, ends, best_index(scores), trace))
        return results


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(BestOfN)
