"""Majority voting: n solutions, answers grouped by the domain's answer key, the
largest group (or, weighted, the group with the largest summed PRM score) wins."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import prm_plugin
from prm_plugin.plugins import get_answer_key
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.strategy import Strategy, StrategyParams, best_index


@dataclass
class MajorityParams(StrategyParams):
    """Majority-vote settings.

    Attributes:
        weighted: sum aggregated PRM scores per answer instead of counting votes
            (needs a PRM).
        samples_per_call: solutions per policy call; None samples all n in one call.
    """

    weighted: bool = False
    samples_per_call: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples_per_call is not None and self.samples_per_call < 1:
            raise ValueError(
                f"samples_per_call must be >= 1, or None to sample all n in one call; got {self.samples_per_call}."
            )


def group_answers(answers: Sequence[str | None], equivalent: Callable[[str, str], bool]) -> list[list[int]]:
    """Group candidate indices whose answers are equivalent; None answers do not vote.

    A candidate joins the first group (by first member) whose first answer is
    equivalent to its own, so groups are ordered by their first member.

    >>> group_answers(["1/2", None, "0.5", "3"], lambda a, b: float(eval(a)) == float(eval(b)))
    [[0, 2], [3]]
    """
    groups: list[list[int]] = []
    for k, answer in enumerate(answers):
        if answer is None:
            continue
        for group in groups:
            first = answers[group[0]]
            if first is not None and equivalent(first, answer):
                group.append(k)
                break
        else:
            groups.append([k])
    return groups


def elect(groups: list[list[int]], weights: Sequence[float | None]) -> int | None:
    """The winning group: the largest total weight (an unscorable member, weight None,
    adds nothing); on ties, the group whose first member came first (``groups`` are in
    that order)."""
    return best_index([sum(weights[k] or 0.0 for k in g) for g in groups])


class MajorityVote(Strategy):
    """Majority voting (``majority``), plain or PRM-weighted.

    Budget mapping: ``n`` whole solutions per problem (as in ``bon``). Answers come
    from ``prm_plugin.plugins.get_answer_key(problem.domain)`` and are grouped by the
    key's ``equivalent`` (math: math-verify, so ``1/2`` and ``0.5`` vote together).
    Plain: one vote per solution, the winner's first solution is chosen. Weighted
    (``weighted=true``): each solution votes with its aggregated PRM score and the
    winner's best-scored solution is chosen. Ties go to the group whose first
    member came first. Solutions without an extractable answer do not vote (the
    trace counts them); if none has one, the first (plain) or best-scored
    (weighted) solution is chosen. Weighted, a solution the PRM could not score
    (``on_overflow=skip``) votes with weight 0 and is never chosen within its group;
    when no solution of a problem could be scored, votes are counted.
    """

    name = "majority"
    Params = MajorityParams
    needs_prm = False
    needs_steps = False  # whole solutions only (run.sample)
    params: MajorityParams

    def requires_prm(self) -> bool:
        return self.params.weighted

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        p = self.params
        run = self.start(problems, policy, prm, budget)
        solutions = run.sample(budget.n, per_call=p.samples_per_call)
        if p.weighted:
            run.score([(i, k) for i, ends in enumerate(solutions) for k in ends])
        results = []
        for i, ends in enumerate(solutions):
            key = get_answer_key(run.problems[i].domain)
            answers = [key.extract(run.trees[i].text(k), run.problems[i]) for k in ends]
            weights: list[float | None] = [1.0] * len(ends)
            if p.weighted:
                weights = [run.aggregate(i, k) for k in ends]
            if weights and all(w is None for w in weights):  # none could be scored: count the votes
                weights = [1.0] * len(ends)
            chosen, trace = self._vote(answers, weights, key.equivalent)
            results.append(run.finish(i, ends, chosen, trace, scored=p.weighted, answers=answers))
        return results

    def _vote(
        self, answers: list[str | None], weights: list[float | None], equivalent: Callable[[str, str], bool]
    ) -> tuple[int | None, dict[str, Any]]:
        groups = group_answers(answers, equivalent)
        winner = elect(groups, weights)
        if winner is None:
            chosen = best_index(weights) if answers else None
        elif self.params.weighted:
            chosen = groups[winner][best_index([weights[k] for k in groups[winner]]) or 0]
        else:
            chosen = groups[winner][0]
        trace = {
            "weighted": self.params.weighted,
            "groups": [
                {"answer": answers[g[0]], "members": g, "votes": len(g),
                 "weight": sum(weights[k] or 0.0 for k in g)}
                for g in groups
            ],
            "winner": winner,
            "no_answer": sum(a is None for a in answers),
        }
        return chosen, trace


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(MajorityVote)
