"""Step-level beam search guided by the PRM, all problems of a batch advancing together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import prm_plugin
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.strategy import SearchRun, Strategy, StrategyParams, best_index


@dataclass
class BeamParams(StrategyParams):
    """Beam-search settings.

    Attributes:
        beam_width: children per survivor (m); ``Budget.n`` must be a multiple of it.
        max_steps: rounds of expansion; unfinished beams left then are returned as such.
        lookahead: greedy steps rolled out below each child to score it (0 = none).
    """

    beam_width: int = 4
    max_steps: int = 40
    lookahead: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beam_width < 1:
            raise ValueError(f"beam_width must be >= 1 (children per survivor), got {self.beam_width}.")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}.")
        if self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 (0 turns it off), got {self.lookahead}.")


class BeamSearch(Strategy):
    """Step-level beam search (``beam``).

    Budget mapping: ``n`` candidates per round with beam width ``m``: the prompt is
    expanded into ``n`` first steps, then each round the ``n/m`` best unfinished
    children (by aggregated PRM score of their path, including the lookahead steps
    when ``lookahead > 0``) survive and each is expanded into ``m`` children.
    Duplicate children (same text under the same parent) are dropped; finished
    children are kept aside as completed candidates. A problem stops when ``n``
    candidates completed, no beam is left, or after ``max_steps`` rounds. The answer
    is the completed candidate with the best aggregated score (lowest node id on
    ties), or the best surviving beam if none completed. Every round makes one
    policy call (plus one per lookahead step) and one PRM call for the whole batch.
    """

    name = "beam"
    Params = BeamParams
    needs_prm = True
    params: BeamParams

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        p = self.params
        n, m = budget.n, p.beam_width
        if n % m:
            lo, hi = n - n % m, n - n % m + m
            raise ValueError(
                f"beam needs Budget.n to be a multiple of beam_width: n={n}, beam_width={m}. "
                f"Use n={hi}{f' or n={lo}' if lo else ''}, or a beam_width that divides {n}."
            )
        run = self.start(problems, policy, prm, budget)
        beams: list[list[int]] = [[0] for _ in problems]
        completed: list[list[int]] = [[] for _ in problems]
        rounds: list[list[dict[str, Any]]] = [[] for _ in problems]
        for step in range(p.max_steps):
            live = run.live([i for i in range(len(problems)) if beams[i] and len(completed[i]) < n])
            if not live:
                break
            parents = [(i, b) for i in live for b in beams[i]]
            children: dict[int, list[int]] = {i: [] for i in live}
            for (i, _), kids in zip(parents, run.expand(parents, n if step == 0 else m, round_index=step),
                                    strict=True):
                children[i] += kids
            ends = self._lookahead(run, children, step)
            run.score([(i, ends[i, c]) for i in live for c in children[i]])
            for i in live:
                if not children[i]:  # the policy skipped these beams as too long: they end as they are
                    beams[i] = [b for b in beams[i] if b]  # (the bare prompt is no answer)
                    continue
                tree = run.trees[i]
                done = [c for c in children[i] if tree.nodes[c].finished]
                active = [c for c in children[i] if not tree.nodes[c].finished]
                scores = {c: run.aggregate(i, ends[i, c]) for c in active}
                ranked = [c for c in active if scores[c] is not None]  # unscorable children drop out
                rank = sorted(ranked, key=lambda c: (-(scores[c] or 0.0), c))
                completed[i] += done
                expanded, beams[i] = beams[i], rank[: n // m]
                rounds[i].append({"step": step, "expanded": expanded, "children": children[i],
                                  "kept": beams[i], "completed": done})
        return [self._result(run, i, completed[i], beams[i], rounds[i]) for i in range(len(problems))]

    def _lookahead(self, run: SearchRun, children: dict[int, list[int]], step: int) -> dict[tuple[int, int], int]:
        """Roll each unfinished child out greedily ``lookahead`` steps (one call per step);
        returns the node whose path scores each child."""
        ends = {(i, c): c for i, cs in children.items() for c in cs}
        for _ in range(self.params.lookahead):
            todo = [(key, end) for key, end in ends.items() if not run.trees[key[0]].nodes[end].finished]
            if not todo:
                break
            got = run.expand([(key[0], end) for key, end in todo], 1, round_index=step, temperature=0.0,
                             role="lookahead")
            for (key, _), kids in zip(todo, got, strict=True):
                ends[key] = kids[0] if kids else ends[key]  # none: skipped as too long, stop there
        return ends

    def _result(
        self, run: SearchRun, i: int, completed: list[int], beams: list[int], rounds: list[dict[str, Any]],
    ) -> SearchResult:
        nodes = completed + beams
        scores = [run.aggregate(i, k) for k in nodes]
        chosen = best_index(scores[: len(completed)])
        if chosen is None:  # none completed, or none of them could be scored
            chosen = best_index(scores)
        trace = {"aggregation": self.params.aggregation, "beam_width": self.params.beam_width, "rounds": rounds,
                 "nodes": run.trees[i].to_json()}
        return run.finish(i, nodes, chosen, trace)


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(BeamSearch)
