"""The reward-model contract and the step-score aggregation helper."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from prm_plugin.search import PRMQuery, StepScores

Aggregation = Literal["min", "last", "prod", "mean"]
AGGREGATIONS: tuple[str, ...] = ("min", "last", "prod", "mean")


@runtime_checkable
class RewardModel(Protocol):
    """A process reward model: one probability of correctness per step.

    ``score`` is batched over queries from any number of questions. A scorer may
    cache: scoring ``steps[:k+1]`` after ``steps[:k]`` may run only the new step's
    tokens; ``StepScores.tokens`` reports the tokens it actually ran.
    """

    step_separator: str

    def score(self, queries: Sequence[PRMQuery]) -> list[StepScores]:
        """Return one ``StepScores`` per query, with one score in [0, 1] per step."""
        ...

    def count_tokens(self, query: PRMQuery) -> int:
        """Tokens an uncached scoring of ``query`` would run. Additive over steps:
        ``count(q, s[:k+1]) - count(q, s[:k])`` is step k's share, so a search tree's
        unique PRM tokens can be computed from its nodes."""
        ...


def aggregate(scores: Sequence[float], how: str = "min") -> float:
    """Collapse per-step scores into one candidate score.

    >>> aggregate([0.9, 0.5, 0.8], "min"), aggregate([0.9, 0.5, 0.8], "last")
    (0.5, 0.8)
    >>> round(aggregate([0.9, 0.5], "prod"), 6), aggregate([0.9, 0.5], "mean")
    (0.45, 0.7)
    """
    if not scores:
        raise ValueError("aggregate() needs at least one step score; got an empty list.")
    if how == "min":
        return float(min(scores))
    if how == "last":
        return float(scores[-1])
    if how == "prod":
        return float(math.prod(scores))
    if how == "mean":
        return float(sum(scores) / len(scores))
    raise ValueError(f"Unknown aggregation {how!r}. Use one of: {', '.join(AGGREGATIONS)}.")
