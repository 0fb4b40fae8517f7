"""Greedy decoding: one temperature-0 solution per problem, no PRM (the baseline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import prm_plugin
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.strategy import Strategy, StrategyParams


@dataclass
class GreedyParams(StrategyParams):
    """Greedy settings: the shared ones, with ``temperature`` fixed at 0."""

    temperature: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature != 0:
            raise ValueError(
                f"greedy decodes at temperature 0, got temperature={self.temperature}. "
                "Drop the setting, or use 'bon' or 'majority' to sample."
            )


class Greedy(Strategy):
    """One greedy solution per problem (``greedy``), the no-search baseline.

    Budget mapping: ``n`` is ignored (greedy samples are all equal); the PRM, if
    given, is not called.
    """

    name = "greedy"
    Params = GreedyParams
    needs_prm = False
    needs_steps = False  # whole solutions only (run.sample)

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        run = self.start(problems, policy, prm, budget)
        return [
            run.finish(i, ends, 0 if ends else None,
                       {"stop_reasons": [run.trees[i].nodes[k].stop_reason for k in ends]}, scored=False)
            for i, ends in enumerate(run.sample(1, temperature=0.0))
        ]


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(Greedy)
