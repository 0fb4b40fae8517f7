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
from prm_plugin.tree import SearchRun
from strategies._solutions import sample_solutions, solution_trees


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

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        run = SearchRun(problems, policy, None, budget, self.params, clock=self.clock)
        trees, nodes = solution_trees(run, sample_solutions(run, 1, temperature=0.0))
        return [
            run.result(i, [tree.candidate(k, None) for k in nodes[i]], 0 if nodes[i] else None,
                       {"stop_reasons": [tree.nodes[k].stop_reason for k in nodes[i]]}, self.name, tree)
            for i, tree in enumerate(trees)
        ]


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(Greedy)
