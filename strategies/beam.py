"""Step-level beam search guided by the PRM, all problems of a batch advancing together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import prm_plugin
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.strategy import Strategy, StrategyParams
from prm_plugin.tree import Request, SearchRun, SearchTree, best_index


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
        if prm is None:
            raise ValueError("Strategy 'beam' ranks steps with a PRM, but prm=None was given. Pass a PRM.")
        n, m = budget.n, p.beam_width
        if n % m:
            lo, hi = n - n % m, n - n % m + m
            raise ValueError(
                f"beam needs Budget.n to be a multiple of beam_width: n={n}, beam_width={m}. "
                f"Use n={hi}{f' or n={lo}' if lo else ''}, or a beam_width that divides {n}."
            )
        run = SearchRun(problems, policy, prm, budget, p, clock=self.clock)
        trees = [run.tree(i) for i in range(len(problems))]
        beams: list[list[int]] = [[0] for _ in problems]
        completed: list[list[int]] = [[] for _ in problems]
        rounds: list[list[dict[str, Any]]] = [[] for _ in problems]
        for step in range(p.max_steps):
            live = run.live([i for i in range(len(problems)) if beams[i] and len(completed[i]) < n])
            if not live:
                break
            children = self._expand(run, trees, beams, live, n if step == 0 else m, step)
            ends = self._lookahead(run, trees, children, step)
            run.score_nodes(trees, [(i, ends[i, c]) for i in live for c in children[i]])
            for i in live:
                tree = trees[i]
                done = [c for c in children[i] if tree.nodes[c].finished]
                active = [c for c in children[i] if not tree.nodes[c].finished]
                rank = sorted(active, key=lambda c: (-tree.aggregate(ends[i, c], p.aggregation), c))
                completed[i] += done
                expanded, beams[i] = beams[i], rank[: n // m]
                rounds[i].append({"step": step, "expanded": expanded, "children": children[i],
                                  "kept": beams[i], "completed": done})
        return [self._result(run, i, trees[i], completed[i], beams[i], rounds[i]) for i in range(len(problems))]

    def _expand(
        self, run: SearchRun, trees: list[SearchTree], beams: list[list[int]], live: list[int],
        width: int, step: int,
    ) -> dict[int, list[int]]:
        """One policy call: ``width`` children for every beam of every live problem."""
        parents = [(i, b) for i in live for b in beams[i]]
        cap = self.params.max_step_tokens
        requests = [Request(i, trees[i].prefix(b), min(cap, trees[i].remaining_tokens(b))) for i, b in parents]
        got = run.propose(requests, n=width, step=True, temperature=self.params.temperature, round_index=step)
        children: dict[int, list[int]] = {i: [] for i in live}
        for (i, b), group in zip(parents, got, strict=True):
            trees[i].nodes[b].extended = True
            for prop in group:
                node, new = trees[i].add(b, prop.text, n_tokens=prop.n_tokens, stop_reason=prop.stop_reason)
                if new:
                    children[i].append(node.id)
        return children

    def _lookahead(
        self, run: SearchRun, trees: list[SearchTree], children: dict[int, list[int]], step: int
    ) -> dict[tuple[int, int], int]:
        """Roll each unfinished child out greedily ``lookahead`` steps (one call per step);
        returns the node whose path scores each child."""
        ends = {(i, c): c for i, cs in children.items() for c in cs}
        for _ in range(self.params.lookahead):
            todo = [(key, end) for key, end in ends.items() if not trees[key[0]].nodes[end].finished]
            if not todo:
                break
            cap = self.params.max_step_tokens
            requests = [Request(i, trees[i].prefix(e), min(cap, trees[i].remaining_tokens(e))) for (i, _), e in todo]
            got = run.propose(requests, n=1, step=True, temperature=0.0, round_index=step)
            for ((i, c), end), group in zip(todo, got, strict=True):
                trees[i].nodes[end].extended = True
                prop = group[0]
                node, _ = trees[i].add(end, prop.text, role="lookahead", n_tokens=prop.n_tokens,
                                       stop_reason=prop.stop_reason)
                ends[i, c] = node.id
        return ends

    def _result(
        self, run: SearchRun, i: int, tree: SearchTree, completed: list[int], beams: list[int],
        rounds: list[dict[str, Any]],
    ) -> SearchResult:
        agg = self.params.aggregation
        candidates = [tree.candidate(k, agg) for k in completed + beams]
        scores = [c.score for c in candidates]
        chosen = best_index(scores[: len(completed)]) if completed else best_index(scores)
        trace = {"aggregation": agg, "beam_width": self.params.beam_width, "rounds": rounds,
                 "nodes": tree.to_json()}
        return run.result(i, candidates, chosen, trace, self.name, tree)


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(BeamSearch)
