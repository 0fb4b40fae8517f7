"""Monte-Carlo tree search over reasoning steps, valued by the PRM, many trees per batch."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import prm_plugin
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.strategies._puct import backup, best_child, select, set_priors
from prm_plugin.strategy import SearchRun, SearchTree, Strategy, StrategyParams


@dataclass
class MCTSParams(StrategyParams):
    """MCTS settings.

    Attributes:
        c: exploration constant (>= 0).
        selection: ``"puct"`` (prior = a child's PRM step score normalised over its
            siblings) or ``"uct"``.
        expansion_width: children proposed per expanded node (k).
        simulations: selections per problem; None takes ``ceil(Budget.n / k)``.
        value: ``"prm"`` values a new node by its PRM step score; ``"rollout"`` by the
            aggregated PRM score of a rollout from it to the end of the solution.
        rollout: ``"greedy"`` (temperature 0) or ``"sampled"`` (``temperature``).
        dirichlet_alpha / dirichlet_epsilon: root prior noise (PUCT only; eps 0 = off).
        leaves_per_tree: leaves selected per tree per round, kept apart by virtual loss.
        virtual_loss: value subtracted per pending visit while a leaf is being expanded.
        max_depth: nodes at this depth are not expanded (valued by their aggregated score).
        final: ``"most_visited"`` or ``"best_terminal"`` (see ``MCTS``).
    """

    c: float = 1.0
    selection: Literal["puct", "uct"] = "puct"
    expansion_width: int = 4
    simulations: int | None = None
    value: Literal["prm", "rollout"] = "prm"
    rollout: Literal["greedy", "sampled"] = "greedy"
    dirichlet_alpha: float = 0.3
    dirichlet_epsilon: float = 0.0
    leaves_per_tree: int = 1
    virtual_loss: float = 1.0
    max_depth: int = 40
    final: Literal["most_visited", "best_terminal"] = "most_visited"

    def __post_init__(self) -> None:
        super().__post_init__()
        choices = {"selection": ("puct", "uct"), "value": ("prm", "rollout"),
                   "rollout": ("greedy", "sampled"), "final": ("most_visited", "best_terminal")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}.")
        for name in ("expansion_width", "leaves_per_tree", "max_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.simulations is not None and self.simulations < 1:
            raise ValueError(f"simulations must be >= 1, or None for ceil(n / expansion_width); got {self.simulations}.")
        if self.c < 0 or self.virtual_loss < 0:
            raise ValueError(f"c and virtual_loss must be >= 0; got c={self.c}, virtual_loss={self.virtual_loss}.")
        if not 0 <= self.dirichlet_epsilon <= 1 or self.dirichlet_alpha <= 0:
            raise ValueError(
                "dirichlet_epsilon must be in [0, 1] (0 = no noise) and dirichlet_alpha > 0; "
                f"got epsilon={self.dirichlet_epsilon}, alpha={self.dirichlet_alpha}."
            )
        if self.dirichlet_epsilon > 0 and self.selection != "puct":
            raise ValueError("Dirichlet noise perturbs PUCT priors: set selection=puct or dirichlet_epsilon=0.")


class MCTS(Strategy):
    """Monte-Carlo tree search (``mcts``).

    Budget mapping: ``simulations`` (default ``ceil(n / k)``) selections per problem;
    each expands a leaf into ``k`` children, so about ``n`` new leaves are valued
    (``n`` rollouts when ``value="rollout"``).

    A round selects leaves in every problem's tree (``leaves_per_tree`` per tree,
    virtual loss keeping them apart), expands all of them in one policy call, runs
    the rollouts in one more call when ``value="rollout"``, and scores every new
    path in one PRM call. Selection maximises PUCT ``Q + c P sqrt(N_parent) / (1 +
    N)`` or UCT ``Q + c sqrt(ln N_parent / N)``; ties go to the older child. Each new
    child starts with one visit holding its value, and that value is backed up to
    every ancestor (mean backup: a node's value is the mean of the evaluations in
    its subtree). Finished nodes and nodes at ``max_depth`` are terminal: selecting
    one backs up its aggregated score without expanding it.

    Final answer: ``"most_visited"`` follows the most visited child (then higher
    value, then older) from the root down to a node without children; if that node
    is unfinished it is completed by a greedy rollout (reusing one made during the
    search), unless a budget cap stopped the search, in which case the best
    finished candidate so far is taken, or the unfinished path if there is none.
    ``"best_terminal"`` takes the finished solution (tree node or rollout end) with
    the best aggregated score, falling back to ``"most_visited"`` if none exists.
    Candidates are every finished solution found, plus the final answer.
    """

    name = "mcts"
    Params = MCTSParams
    needs_prm = True
    params: MCTSParams

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        p = self.params
        run = self.start(problems, policy, prm, budget)
        target = p.simulations or math.ceil(budget.n / p.expansion_width)
        sims = [0] * len(problems)
        rollouts: list[dict[int, int]] = [{} for _ in problems]  # node id -> rollout end id
        rngs = [random.Random(f"{p.seed}|{q.prompt}") for q in problems]
        log: list[list[dict[str, Any]]] = [[] for _ in problems]  # every selection, in order
        rnd = 0
        while live := run.live([i for i in range(len(problems)) if sims[i] < target]):
            leaves = [(i, path) for i in live for path in self._select(run.trees[i], sims, i, target, log[i], rnd)]
            if leaves:
                self._expand(run, leaves, rollouts, rngs, rnd)
            rnd += 1
        finals = self._finals(run, rollouts, rnd)
        return [self._result(run, i, finals[i], sims[i], log[i]) for i in range(len(problems))]

    def _terminal(self, tree: SearchTree, node_id: int) -> bool:
        node = tree.nodes[node_id]
        return node.finished or node.depth >= self.params.max_depth

    def _select(
        self, tree: SearchTree, sims: list[int], i: int, target: int, log: list[dict[str, Any]], rnd: int
    ) -> list[list[int]]:
        """Up to ``leaves_per_tree`` leaves to expand; terminal picks are backed up at once."""
        p, virtual, paths = self.params, dict[int, int](), list[list[int]]()
        while len(paths) < p.leaves_per_tree and sims[i] < target:
            path = select(tree, virtual, p.selection, p.c, p.virtual_loss, lambda k: self._terminal(tree, k))
            leaf = path[-1]
            terminal = self._terminal(tree, leaf)
            if terminal:
                value = tree.aggregate(leaf, p.aggregation)
                if value is not None:  # None: the PRM could not score it (skipped as too long)
                    backup(tree, path, value)
            elif any(q[-1] == leaf for q in paths):
                break  # virtual loss did not steer away from a pending leaf: expand fewer
            else:
                for k in path:
                    virtual[k] = virtual.get(k, 0) + 1
                paths.append(path)
            log.append({"round": rnd, "leaf": leaf, "terminal": terminal})
            sims[i] += 1
        return paths

    def _expand(
        self, run: SearchRun, leaves: list[tuple[int, list[int]]], rollouts: list[dict[int, int]],
        rngs: list[random.Random], rnd: int,
    ) -> None:
        """Expand every selected leaf (one policy call), value the new children, back up."""
        p = self.params
        got = run.expand([(i, path[-1]) for i, path in leaves], p.expansion_width, round_index=rnd)
        born = [(i, child) for (i, _), kids in zip(leaves, got, strict=True) for child in kids]
        ends: dict[tuple[int, int], int] = {}
        if p.value == "rollout":
            todo = [(i, c) for i, c in born if not self._terminal(run.trees[i], c)]
            ends = self._rollout(run, todo, greedy=p.rollout == "greedy", rnd=rnd)
            if p.rollout == "greedy":
                for (i, c), end in ends.items():
                    rollouts[i][c] = end
        run.score([(i, ends.get((i, c), c)) for i, c in born])
        for i, path in leaves:
            tree = run.trees[i]
            noise = (rngs[i], p.dirichlet_alpha, p.dirichlet_epsilon) if path[-1] == 0 else None
            set_priors(tree, path[-1], noise)
            for child in tree.children(path[-1]):
                rolled = ends.get((i, child.id))
                if rolled is not None or self._terminal(tree, child.id):
                    value = tree.aggregate(child.id if rolled is None else rolled, p.aggregation)
                else:
                    value = child.score or 0.0
                if value is None:  # its rollout could not be scored: no evidence to back up
                    continue
                child.visits, child.value_sum = 1, value
                backup(tree, path, value)

    def _rollout(
        self, run: SearchRun, todo: list[tuple[int, int]], *, greedy: bool, rnd: int
    ) -> dict[tuple[int, int], int]:
        """Complete each ``(problem, node)`` to the end of the solution in one policy call."""
        if not todo:
            return {}
        got = run.complete(todo, round_index=rnd, temperature=0.0 if greedy else None)
        return {key: ends[0] for key, ends in zip(todo, got, strict=True) if ends}  # none: skipped as too long

    def _finals(self, run: SearchRun, rollouts: list[dict[int, int]], rnd: int) -> list[int]:
        """The final node per problem; unfinished most-visited paths are completed together."""
        finals, todo = [], []
        for i, tree in enumerate(run.trees):
            best = self._best_finished(tree)
            node = 0
            while kids := tree.children(node):
                node = best_child(kids).id
            if self.params.final == "best_terminal" and best is not None:
                node = best
            elif not tree.nodes[node].finished:
                if node in rollouts[i]:
                    node = rollouts[i][node]
                elif run.costs[i].stopped_by is not None:
                    node = node if best is None else best
                else:
                    todo.append((i, node))
            finals.append(node)
        ends = self._rollout(run, todo, greedy=True, rnd=rnd)
        run.score([(i, e) for (i, _), e in ends.items()])
        for (i, _), end in ends.items():
            finals[i] = end
        return finals

    def _best_finished(self, tree: SearchTree) -> int | None:
        done = [n.id for n in tree.nodes[1:] if n.finished and n.score is not None]
        if not done:
            return None
        return max(done, key=lambda k: (tree.aggregate(k, self.params.aggregation) or 0.0, -k))

    def _result(self, run: SearchRun, i: int, final: int, sims: int, log: list[dict[str, Any]]) -> SearchResult:
        tree = run.trees[i]
        ids = sorted({n.id for n in tree.nodes[1:] if n.finished and n.score is not None} | {final})
        trace = {"aggregation": self.params.aggregation, "selection": self.params.selection, "c": self.params.c,
                 "simulations": sims, "selections": log, "final_path": tree.path(final),
                 "nodes": tree.to_json(mcts=True)}
        return run.finish(i, ids, ids.index(final), trace)


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(MCTS)
