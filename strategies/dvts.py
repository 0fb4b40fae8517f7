"""Diverse verifier tree search (DVTS, after Beeching et al.'s search-and-learn): ``n / m``
independent subtrees, each a greedy walk that keeps its best of ``m`` children per step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import prm_plugin
from prm_plugin.plugins import get_answer_key
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.strategies.majority import elect, group_answers
from prm_plugin.strategy import SearchRun, Strategy, StrategyParams


@dataclass
class DVTSParams(StrategyParams):
    """DVTS settings.

    Attributes:
        aggregation: ranks a subtree's children and the final leaves (default ``last``:
            siblings share their parent's steps, so ``last``, ``prod`` and ``mean`` rank
            them by the new step's score, while ``min`` ties whenever the parent's path
            already holds the minimum).
        subtree_width: children per step in each subtree (m); ``Budget.n`` must be a
            multiple of it.
        max_steps: steps per subtree; subtrees unfinished then are returned as such.
        final: ``"best_score"`` (the leaf with the best aggregated score) or
            ``"weighted_vote"`` (answers grouped by the domain's answer key, each subtree
            voting with its leaf's aggregated score).
    """

    aggregation: str = "last"
    subtree_width: int = 4
    max_steps: int = 40
    final: Literal["best_score", "weighted_vote"] = "best_score"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.subtree_width < 1:
            raise ValueError(f"subtree_width must be >= 1 (children per step), got {self.subtree_width}.")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}.")
        if self.final not in ("best_score", "weighted_vote"):
            raise ValueError(f"final must be one of best_score, weighted_vote; got {self.final!r}.")


class DVTS(Strategy):
    """Diverse verifier tree search (``dvts``).

    Budget mapping: ``n`` new leaves per step: ``n / m`` subtrees (``m =
    subtree_width``), each expanding its current node into ``m`` children per step and
    keeping the one with the best aggregated score (lowest node id on ties). A subtree
    only ever compares its own children, so subtrees are independent: two subtrees at
    the same node draw different children (a repeated prefix draws new samples), and
    no subtree's scores change another's path. A subtree stops when its kept child
    finished, after ``max_steps`` steps, or at a budget cap. Every step makes one policy
    call and one PRM call for all subtrees of all problems; generated tokens are about
    ``m`` times those of ``n / m`` whole solutions.

    Final answer, among the subtrees' leaves that finished (all of them if none did):
    ``"best_score"`` takes the best aggregated score (lowest node id on ties);
    ``"weighted_vote"`` groups the subtrees' answers with the domain's answer key and
    takes the best-scored leaf of the group with the largest summed score. Candidates
    are the distinct leaves; the trace holds each subtree's steps (children and the
    one kept) and the search tree.
    """

    name = "dvts"
    Params = DVTSParams
    needs_prm = True
    params: DVTSParams

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        p = self.params
        n, m = budget.n, p.subtree_width
        if n % m:
            lo, hi = n - n % m, n - n % m + m
            raise ValueError(
                f"dvts needs Budget.n to be a multiple of subtree_width: n={n}, subtree_width={m}. "
                f"Use n={hi}{f' or n={lo}' if lo else ''}, or a subtree_width that divides {n}."
            )
        run = self.start(problems, policy, prm, budget)
        heads = [[0] * (n // m) for _ in problems]  # each subtree's current node
        walks: list[list[list[dict[str, Any]]]] = [[[] for _ in range(n // m)] for _ in problems]
        for step in range(p.max_steps):
            live = run.live([i for i in range(len(problems)) if self._open(run, i, heads[i])])
            if not live:
                break
            movers = [(i, b) for i in live for b in self._open(run, i, heads[i])]
            kids = run.expand([(i, heads[i][b]) for i, b in movers], m, round_index=step)
            run.score([(i, c) for (i, _), cs in zip(movers, kids, strict=True) for c in cs])
            for (i, b), cs in zip(movers, kids, strict=True):
                if not cs:  # the prefix did not fit the policy's context: its problem stopped there
                    continue
                scores = [run.aggregate(i, c) for c in cs]
                heads[i][b] = cs[min(range(len(cs)), key=lambda j: _rank(scores[j], cs[j]))]
                walks[i][b].append({"step": step, "children": cs, "scores": scores, "kept": heads[i][b]})
        return [self._result(run, i, heads[i], walks[i]) for i in range(len(problems))]

    def _open(self, run: SearchRun, i: int, heads: list[int]) -> list[int]:
        """The subtrees of problem ``i`` still to step."""
        return [b for b, k in enumerate(heads) if not run.trees[i].nodes[k].finished]

    def _result(self, run: SearchRun, i: int, heads: list[int], walks: list[list[dict[str, Any]]]) -> SearchResult:
        tree = run.trees[i]
        trace: dict[str, Any] = {"aggregation": self.params.aggregation,
                                 "subtree_width": self.params.subtree_width, "subtrees": walks}
        nodes = list(dict.fromkeys(k for k in heads if k))
        if not nodes:  # a budget cap stopped the search before the first step
            return run.finish(i, [], None, {**trace, "nodes": tree.to_json()})
        scores = {k: run.aggregate(i, k) for k in nodes}
        pool = [k for k in nodes if tree.nodes[k].finished] or nodes
        best = min(pool, key=lambda k: _rank(scores[k], k))
        answers: list[str | None] | None = None
        if self.params.final == "weighted_vote":
            key = get_answer_key(tree.problem.domain)
            answers = [key.extract(tree.text(k), tree.problem) for k in nodes]
            voters = [k for k in heads if k in pool]  # one vote per subtree
            groups = group_answers([answers[nodes.index(k)] for k in voters], key.equivalent)
            winner = elect(groups, [scores[k] for k in voters])
            if winner is not None:
                best = min((voters[g] for g in groups[winner]), key=lambda k: _rank(scores[k], k))
        trace.update(leaves=heads, nodes=tree.to_json())
        return run.finish(i, nodes, nodes.index(best), trace, answers=answers)


def _rank(score: float | None, node: int) -> tuple[bool, float, int]:
    """Sort key: best score first, an unscorable node (None, ``on_overflow=skip``) after
    every scored one, lowest node id on ties."""
    return (score is None, -(score or 0.0), node)


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(DVTS)
