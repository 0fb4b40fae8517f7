"""``SearchRun``: the strategy author's API, one batch search over many problems.

A strategy's ``search`` starts a run (``run = self.start(problems, policy, prm,
budget)``) and speaks only to it:

- ``run.sample(n)``: ``n`` whole solutions per problem, filed in the problem's tree;
- ``run.expand(nodes, n, round_index=r)``: ``n`` one-step continuations of each node;
- ``run.complete(nodes, round_index=r)``: each node continued to the end of its solution;
- ``run.score(nodes)``: the PRM's step scores for each node's path, stored on the tree;
- ``run.live(indices)``: which problems the budget caps still let run;
- ``run.finish(i, nodes, chosen, trace)``: problem ``i``'s ``SearchResult``.

A node is a ``(problem index, node id)`` pair; ``run.trees[i]`` is problem ``i``'s
``SearchTree`` (read it to navigate: ``children``, ``nodes[k].finished``, scores,
visits). Every call carries all the problems it is given in one batched policy or PRM
call, and the run books what each call costs on each problem. Requests, token caps,
``extended`` marks and cost accounting are the run's business, never a strategy's:

- a step is capped at ``max_step_tokens`` and at what is left of ``Problem.max_tokens``;
  a completion at what is left;
- every node the policy continues is marked ``extended``, which is what
  ``Cost.unique_prompt_tokens`` counts;
- ``finish`` fills ``Cost.unique_tokens`` from the tree (PRM tokens when anything was
  scored, policy tokens otherwise) and the wall time.

Seeds: a call's seed is ``params.seed * SEED_STRIDE + round_index``, so rounds differ and
a problem's samples do not depend on which other problems share its batch.

Inputs longer than a model's context (the backends' ``on_overflow``) are the run's
business too: truncations are counted in each problem's ``Cost``; a prefix the policy
skipped stops its problem (``stopped_by = "context"``) and gets no children or
continuations; a path the PRM skipped is marked unscorable on its tree (its
``aggregate`` is None, so ``best_index`` never picks it; ``SearchTree.children`` hides it).

Faults: an exception raised inside ``Policy.propose`` or ``RewardModel.score`` is
re-raised as ``BackendError`` naming the problems of that call (the harness session
isolates such faults per problem); anything raised by strategy code passes unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prm_plugin.params import StrategyParams
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Cost, PrefixProposals, Problem, SearchResult
from prm_plugin.steps import default_delimiter, split_steps
from prm_plugin.tree import SearchTree

#: Seed offset between runs of consecutive base seeds (and between a harness's repeats).
SEED_STRIDE = 1_000_003

#: ``(problem index, node id)``: a node of one problem's tree.
NodeRef = tuple[int, int]


class BackendError(RuntimeError):
    """An exception raised inside ``Policy.propose`` or ``RewardModel.score`` during a search.

    Attributes:
        backend: ``"policy"`` or ``"prm"``.
        problems: indices (in the run) of the problems that call served.
        costs: every problem's ``Cost`` so far (what the run had measured when it failed).
    The original exception is ``__cause__``.
    """

    def __init__(self, backend: str, problems: Sequence[int], costs: Sequence[Cost], cause: BaseException) -> None:
        super().__init__(f"{backend} failed on problem(s) {sorted(set(problems))}: {type(cause).__name__}: {cause}")
        self.backend = backend
        self.problems = sorted(set(problems))
        self.costs = list(costs)


@dataclass(frozen=True)
class _Request:
    problem: int
    prefix: str
    max_tokens: int


class SearchRun:
    """One batch search: batched calls, per-problem cost, budget caps and results.

    Caps are checked by ``live`` (call it between rounds): a problem whose generated
    policy tokens reached ``budget.max_policy_tokens`` stops with ``stopped_by =
    "max_policy_tokens"``; once ``budget.max_seconds`` have passed every problem still
    running stops with ``"max_seconds"``. A round that has started finishes, so a cap is
    overshot by at most one round. ``Cost.seconds`` is the wall time of the whole batch
    search, the same for every problem of the batch.

    Problems with different final stop strings cannot share a policy call, so a batch
    that mixes them makes one call per distinct setting. Nor can requests with different
    token caps, unless the policy takes one cap per prefix (``per_prefix_max_tokens``,
    as the HF and vLLM policies do).
    """

    def __init__(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget,
        params: StrategyParams, *, strategy: str = "", clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.problems = list(problems)
        self.policy, self.prm, self.budget, self.params = policy, prm, budget, params
        self.strategy = strategy
        self.trees = [SearchTree(p, params.step_delimiter or default_delimiter(p.domain)) for p in self.problems]
        self.costs = [Cost() for _ in self.problems]
        self.clock = clock
        self.start = clock()

    # -- budget ------------------------------------------------------------------
    def live(self, indices: Sequence[int] | None = None) -> list[int]:
        """Apply the caps to ``indices`` (default: every problem); return those that may go on."""
        cap, out = self.budget.max_policy_tokens, []
        timed_out = self.budget.max_seconds is not None and self.elapsed() >= self.budget.max_seconds
        for i in range(len(self.problems)) if indices is None else indices:
            cost = self.costs[i]
            if cost.stopped_by is None and cap is not None and cost.policy_generated_tokens >= cap:
                cost.stopped_by = "max_policy_tokens"
            if cost.stopped_by is None and timed_out:
                cost.stopped_by = "max_seconds"
            if cost.stopped_by is None:
                out.append(i)
        return out

    def elapsed(self) -> float:
        return self.clock() - self.start

    # -- policy ------------------------------------------------------------------
    def sample(self, n: int, *, temperature: float | None = None, per_call: int | None = None) -> list[list[int]]:
        """``n`` whole solutions per problem from its prompt, split into steps and filed as
        paths of its tree. Returns, per problem, the node id each sample ended on, in
        sample order (identical solutions share a node but stay separate samples).

        ``per_call`` samples go into each policy call (all ``n`` by default); the caps are
        checked before each call, so with ``per_call < n`` a cap can stop sampling early.
        """
        out: list[list[int]] = [[] for _ in self.problems]
        per_call = per_call or n
        wave = 0
        while live := self.live([i for i in range(len(self.problems)) if len(out[i]) < n]):
            # live problems advance in lockstep, so they all still need the same number
            k = min(per_call, n - len(out[live[0]]))
            for i, ends in zip(live, self.complete([(i, 0) for i in live], n=k, temperature=temperature,
                                                   role="step", round_index=wave), strict=True):
                out[i].extend(ends)
            wave += 1
        return out

    def expand(
        self, nodes: Sequence[NodeRef], n: int, *, round_index: int, temperature: float | None = None,
        role: str = "step",
    ) -> list[list[int]]:
        """Continue each node by one step, ``n`` times, in one batched policy call.

        Returns, per node, the distinct children the ``n`` proposals landed on, in the order
        first proposed (a repeated step is one child; none when the policy skipped the node's
        prefix as too long). ``role="lookahead"`` files steps generated only to score a node;
        ``temperature`` defaults to ``params.temperature``.
        """
        cap = self.params.max_step_tokens
        groups = self._propose(nodes, n=n, step=True, temperature=temperature, round_index=round_index,
                               cap=lambda tree, k: min(cap, tree.remaining_tokens(k)))
        out = []
        for (i, k), group in zip(nodes, groups, strict=True):
            kids: dict[int, None] = {}
            for prop in group:
                node, _ = self.trees[i].add(k, prop.text, role=role, n_tokens=prop.n_tokens,
                                            stop_reason=prop.stop_reason)
                kids[node.id] = None
            out.append(list(kids))
        return out

    def complete(
        self, nodes: Sequence[NodeRef], *, round_index: int, n: int = 1, temperature: float | None = None,
        role: str = "rollout",
    ) -> list[list[int]]:
        """Continue each node to the end of its solution, ``n`` times, in one policy call;
        each continuation is split into steps and filed as a chain. Returns, per node, the
        end node of each continuation (``role="rollout"`` marks steps made only to value a node;
        none when the policy skipped the node's prefix as too long)."""
        groups = self._propose(nodes, n=n, step=False, temperature=temperature, round_index=round_index,
                               cap=lambda tree, k: tree.remaining_tokens(k))
        out = []
        for (i, k), group in zip(nodes, groups, strict=True):
            tree = self.trees[i]
            out.append([
                tree.add_path(k, split_steps(p.text, tree.problem.domain, tree.delimiter), role=role,
                              n_tokens=p.n_tokens, stop_reason=p.stop_reason).id
                for p in group
            ])
        return out

    def _propose(
        self, nodes: Sequence[NodeRef], *, n: int, step: bool, temperature: float | None, round_index: int,
        cap: Callable[[SearchTree, int], int],
    ) -> list[PrefixProposals]:
        requests = []
        for i, k in nodes:
            tree = self.trees[i]
            if tree.nodes[k].finished:
                raise ValueError(
                    f"Node {k} of problem {i} is finished (stop reason {tree.nodes[k].stop_reason!r}); "
                    "a finished solution cannot be continued. Check tree.nodes[k].finished first."
                )
            tree.nodes[k].extended = True
            requests.append(_Request(i, tree.prefix(k), cap(tree, k)))
        if temperature is None:
            temperature = self.params.temperature
        return self._call_policy(requests, n=n, step=step, temperature=temperature, round_index=round_index)

    def _call_policy(
        self, requests: Sequence[_Request], *, n: int, step: bool, temperature: float, round_index: int,
    ) -> list[PrefixProposals]:
        """One policy call per (stop setting, token cap) group; every request keeps its own
        cap, so a continuation is the same whatever else shares the batch."""
        per_prefix = bool(getattr(self.policy, "per_prefix_max_tokens", False))
        groups: dict[tuple[tuple[str, ...], tuple[str, ...], int], list[int]] = {}
        for k, r in enumerate(requests):
            stop: tuple[str, ...] = (self.trees[r.problem].delimiter,) if step else ()
            groups.setdefault((stop, tuple(self.problems[r.problem].stop), 0 if per_prefix else r.max_tokens),
                              []).append(k)
        out: list[PrefixProposals | None] = [None] * len(requests)
        for (stop, final_stop, _), ks in groups.items():
            caps = [requests[k].max_tokens for k in ks]
            # a list only reaches policies that declared per_prefix_max_tokens
            max_tokens: Any = caps[0] if len(set(caps)) == 1 else caps
            try:
                got = self.policy.propose(
                    [requests[k].prefix for k in ks], n=n, stop=list(stop), final_stop=list(final_stop),
                    max_tokens=max_tokens, temperature=temperature, top_p=self.params.top_p,
                    seed=self.params.seed * SEED_STRIDE + round_index,
                )
            except Exception as exc:
                raise BackendError("policy", [requests[k].problem for k in ks], self.costs, exc) from exc
            if len(got) != len(ks) or any(len(g) != (0 if _skipped(g) else n) for g in got):
                raise RuntimeError(
                    f"{type(self.policy).__name__}.propose returned {[len(g) for g in got]} proposals "
                    f"for {len(ks)} prefixes with n={n}; the Policy contract asks for n per prefix "
                    "(none for a prefix it skipped)."
                )
            for k, group in zip(ks, got, strict=True):
                out[k] = group
                cost = self.costs[requests[k].problem]
                cost.add_proposals(group)
                if _skipped(group) and cost.stopped_by is None:
                    cost.stopped_by = "context"
            for i in {requests[k].problem for k in ks}:
                self.costs[i].policy_calls += 1
        return [g for g in out if g is not None]

    # -- PRM ---------------------------------------------------------------------
    def score(self, nodes: Sequence[NodeRef]) -> None:
        """Score the path to each node in one PRM call and store the step scores on the
        trees (repeats in ``nodes`` are scored once)."""
        unique = list(dict.fromkeys(nodes))
        if not unique:
            return
        if self.prm is None:
            raise ValueError(
                f"Strategy {self.strategy or '?'!r} asked the PRM for scores, but this run has none: "
                "set needs_prm = True (or make requires_prm() return True for these settings)."
            )
        queries = [self.trees[i].query(k) for i, k in unique]
        try:
            got = self.prm.score(queries)
        except Exception as exc:
            raise BackendError("prm", [i for i, _ in unique], self.costs, exc) from exc
        if len(got) != len(queries) or any(s.scores is not None and len(s.scores) != len(q.steps)
                                           for s, q in zip(got, queries, strict=False)):
            raise RuntimeError(
                f"{type(self.prm).__name__}.score returned results that do not match its queries "
                "(one StepScores per query, one score per step, or scores=None for a skipped query)."
            )
        for (i, k), result in zip(unique, got, strict=True):
            if result.scores is None:
                self.trees[i].set_unscorable(k)
            else:
                self.trees[i].set_scores(k, result.scores)
            self.costs[i].add_scores(result)
        for i in {i for i, _ in unique}:
            self.costs[i].prm_calls += 1

    def aggregate(self, i: int, node: int) -> float | None:
        """The aggregated PRM score (``params.aggregation``) of the path to ``node``; None
        when the PRM could not score it (its input did not fit, ``on_overflow="skip"``)."""
        return self.trees[i].aggregate(node, self.params.aggregation)

    # -- results -----------------------------------------------------------------
    def finish(
        self, i: int, nodes: Sequence[int], chosen: int | None, trace: dict[str, Any], *,
        scored: bool = True, answers: Sequence[str | None] | None = None,
    ) -> SearchResult:
        """Problem ``i``'s result: ``nodes`` become its candidates (with their step scores
        and aggregated score when ``scored``, and their extracted ``answers`` if given),
        ``chosen`` indexes the final one (None: no answer); the tree's accounting and the
        wall time go into its ``Cost``."""
        tree, cost = self.trees[i], self.costs[i]
        candidates = [tree.candidate(k, self.params.aggregation if scored else None) for k in nodes]
        if answers is not None:
            for candidate, answer in zip(candidates, answers, strict=True):
                candidate.answer = answer
        cost.seconds = self.elapsed()
        if self.prm is not None and any(n.score is not None for n in tree.nodes[1:]):
            cost.unique_tokens = tree.unique_prm_tokens(self.prm)
        else:
            cost.unique_tokens = tree.unique_policy_tokens(self.policy)
        cost.unique_prompt_tokens = tree.extended_prompt_tokens(self.policy)
        text = candidates[chosen].text(tree.delimiter) if chosen is not None else ""
        return SearchResult(text=text, candidates=candidates, chosen=chosen, cost=cost, trace=trace,
                            strategy=self.strategy)


def _skipped(group: Any) -> bool:
    """Whether the policy skipped this prefix (it did not fit its context)."""
    return getattr(group, "overflow", None) == "skipped"
