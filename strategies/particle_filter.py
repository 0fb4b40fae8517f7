"""Particle filtering over reasoning steps, weighted by the PRM (after Puri et al., "Rollout
Roulette", arXiv 2502.01618): a population of partial solutions stepped in lockstep and
resampled in proportion to how promising the PRM finds them."""

from __future__ import annotations

import math
import random
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

#: PRM scores are clipped to [EPS, 1 - EPS] before the logit/log, so 0 and 1 stay finite.
EPS = 1e-6


@dataclass
class ParticleFilterParams(StrategyParams):
    """Particle-filter settings.

    Attributes:
        aggregation: how a particle's step scores become the score its weight is made
            from (default ``last``: the new step's score, as in the paper; ``prod`` gives
            the textbook multiplicative weight update).
        transform: ``"logit"`` (weight ∝ (s / (1 - s))^(1/T)) or ``"prob"`` (weight ∝ s^(1/T)).
        weight_temperature: T above; lower sharpens resampling towards the best particles.
        resampling: ``"systematic"`` (one uniform draw, low variance) or ``"multinomial"``.
        ess_threshold: resample only when the effective sample size falls below
            ``ess_threshold * n``; None resamples after every step.
        final: ``"best_weight"`` (the particle with the largest weight, summed over its
            copies) or ``"weighted_vote"`` (answers grouped by the domain's answer key,
            each particle voting with its weight).
        max_steps: rounds of stepping; particles unfinished then are returned as such.
    """

    aggregation: str = "last"
    transform: Literal["logit", "prob"] = "logit"
    weight_temperature: float = 1.0
    resampling: Literal["systematic", "multinomial"] = "systematic"
    ess_threshold: float | None = None
    final: Literal["best_weight", "weighted_vote"] = "best_weight"
    max_steps: int = 40

    def __post_init__(self) -> None:
        super().__post_init__()
        choices = {"transform": ("logit", "prob"), "resampling": ("systematic", "multinomial"),
                   "final": ("best_weight", "weighted_vote")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}.")
        if self.weight_temperature <= 0:
            raise ValueError(f"weight_temperature must be > 0 (1 = plain weights), got {self.weight_temperature}.")
        if self.ess_threshold is not None and not 0 < self.ess_threshold <= 1:
            raise ValueError(
                f"ess_threshold must be in (0, 1], or None to resample every step; got {self.ess_threshold}."
            )
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}.")


def normalised_weights(scores: Sequence[float | None], transform: str, temperature: float) -> list[float]:
    """Particle weights from their aggregated PRM scores: a softmax of the log-weights.
    A particle the PRM could not score (None: its input did not fit, ``on_overflow=skip``)
    gets weight 0; when none could be scored, the weights are uniform.

    >>> [round(w, 4) for w in normalised_weights([0.8, 0.5, 0.2], "logit", 1.0)]
    [0.7619, 0.1905, 0.0476]
    >>> normalised_weights([0.6, 0.2], "prob", 1.0)
    [0.75, 0.25]
    >>> normalised_weights([0.6, None], "prob", 1.0), normalised_weights([None, None], "prob", 1.0)
    ([1.0, 0.0], [0.5, 0.5])
    """
    if all(s is None for s in scores):
        return [1.0 / len(scores)] * len(scores)
    logs: list[float | None] = []
    for s in scores:
        if s is None:
            logs.append(None)
            continue
        c = min(max(s, EPS), 1 - EPS)
        logs.append((math.log(c / (1 - c)) if transform == "logit" else math.log(c)) / temperature)
    top = max(x for x in logs if x is not None)
    exps = [0.0 if x is None else math.exp(x - top) for x in logs]
    total = sum(exps)
    return [e / total for e in exps]


def effective_sample_size(weights: Sequence[float]) -> float:
    """``1 / sum(w^2)`` of normalised weights: n when uniform, 1 when one particle has all.

    >>> effective_sample_size([0.25] * 4), effective_sample_size([1.0, 0.0])
    (4.0, 1.0)
    """
    return 1.0 / sum(w * w for w in weights)


def _pick(cumulative: Sequence[float], x: float) -> int:
    k = 0
    while k < len(cumulative) - 1 and x >= cumulative[k]:
        k += 1
    return k


def _cumulative(weights: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def systematic_resample(weights: Sequence[float], u: float) -> list[int]:
    """Systematic resampling: particle ``k`` of the new population is the one whose
    cumulative weight interval holds ``(u + k) / n``; deterministic given ``u`` in [0, 1).

    >>> systematic_resample([0.1, 0.2, 0.3, 0.4], 0.5)  # positions .125 .375 .625 .875
    [1, 2, 3, 3]
    """
    cum, n = _cumulative(weights), len(weights)
    return [_pick(cum, (u + k) / n) for k in range(n)]


def multinomial_resample(weights: Sequence[float], draws: Sequence[float]) -> list[int]:
    """Multinomial resampling: one independent uniform draw per new particle, mapped
    through the cumulative weights (the new population keeps the draws' order).

    >>> multinomial_resample([0.1, 0.2, 0.3, 0.4], [0.05, 0.95, 0.31])
    [0, 3, 2]
    """
    cum = _cumulative(weights)
    return [_pick(cum, x) for x in draws]


class ParticleFilter(Strategy):
    """Particle filtering (``particle_filter``).

    Budget mapping: ``n`` particles per problem. Every round each unfinished particle
    takes one step (one policy call for the batch; copies of a particle draw different
    steps), the new steps are scored (one PRM call), and every particle gets the weight
    ``softmax_j(t(aggregate(scores_j)) / T)`` with ``t = logit`` (or ``log`` for
    ``transform="prob"``) of its path's aggregated score (``aggregation``, default
    ``last``: the new step's score). Finished particles keep their path and therefore
    their weight; a particle the PRM could not score (``on_overflow=skip``) has weight 0. While any particle is unfinished, the population is then resampled
    (systematic or multinomial, with ``random.Random(f"{seed}|{prompt}")`` per problem;
    only when the effective sample size is below ``ess_threshold * n`` if set). A
    problem stops when every particle finished, after ``max_steps`` rounds, or at a
    budget cap. Generated tokens are about those of ``n`` whole solutions.

    Final answer, among the finished particles (all of them if none finished):
    ``"best_weight"`` takes the solution with the largest weight summed over its copies
    (lowest node id on ties); ``"weighted_vote"`` groups answers with the domain's answer
    key and takes the best-weighted solution of the heaviest group. Candidates are the
    distinct final particles. The trace holds every round's particles, weights,
    effective sample size, resampling draw and chosen indices, and the search tree.
    """

    name = "particle_filter"
    Params = ParticleFilterParams
    needs_prm = True
    params: ParticleFilterParams

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        p = self.params
        run = self.start(problems, policy, prm, budget)
        rngs = [random.Random(f"{p.seed}|{q.prompt}") for q in problems]
        particles = [[0] * budget.n for _ in problems]
        rounds: list[list[dict[str, Any]]] = [[] for _ in problems]
        for step in range(p.max_steps):
            live = run.live([i for i in range(len(problems)) if self._unfinished(run, i, particles[i])])
            if not live:
                break
            movers = [(i, j) for i in live for j in self._unfinished(run, i, particles[i])]
            kids = run.expand([(i, particles[i][j]) for i, j in movers], 1, round_index=step)
            moved = [(i, j) for (i, j), children in zip(movers, kids, strict=True) if children]
            for (i, j), children in zip(movers, kids, strict=True):
                if children:  # none: the prefix did not fit the policy's context and its problem stopped
                    particles[i][j] = children[0]
            run.score([(i, particles[i][j]) for i, j in moved])
            for i in live:
                particles[i], record = self._resample(run, i, particles[i], rngs[i])
                rounds[i].append({"step": step, **record})
        return [self._result(run, i, particles[i], rounds[i]) for i in range(len(problems))]

    def _unfinished(self, run: SearchRun, i: int, particles: list[int]) -> list[int]:
        return [j for j, k in enumerate(particles) if not run.trees[i].nodes[k].finished]

    def _weights(self, run: SearchRun, i: int, particles: list[int]) -> list[float]:
        p = self.params
        # a particle still at the root (its prefix was skipped) has no score, as an unscorable one
        scores = [run.aggregate(i, k) if k else None for k in particles]
        return normalised_weights(scores, p.transform, p.weight_temperature)

    def _resample(
        self, run: SearchRun, i: int, particles: list[int], rng: random.Random
    ) -> tuple[list[int], dict[str, Any]]:
        p, n = self.params, len(particles)
        weights = self._weights(run, i, particles)
        ess = effective_sample_size(weights)
        record: dict[str, Any] = {"particles": list(particles), "weights": weights, "ess": ess,
                                  "resampled": False, "draws": None, "indices": None}
        wanted = p.ess_threshold is None or ess < p.ess_threshold * n
        if not wanted or not self._unfinished(run, i, particles):
            return particles, record
        if p.resampling == "systematic":
            draws = [rng.random()]
            indices = systematic_resample(weights, draws[0])
        else:
            draws = [rng.random() for _ in range(n)]
            indices = multinomial_resample(weights, draws)
        record.update(resampled=True, draws=draws, indices=indices)
        return [particles[k] for k in indices], record

    def _result(self, run: SearchRun, i: int, particles: list[int], rounds: list[dict[str, Any]]) -> SearchResult:
        tree = run.trees[i]
        trace: dict[str, Any] = {"aggregation": self.params.aggregation, "rounds": rounds}
        if not any(particles):  # a budget cap stopped the search before the first step
            return run.finish(i, [], None, {**trace, "nodes": tree.to_json()})
        weights = self._weights(run, i, particles)
        mass: dict[int, float] = {}
        for k, w in zip(particles, weights, strict=True):
            if k:  # the root is no solution
                mass[k] = mass.get(k, 0.0) + w
        nodes = list(mass)
        pool = [k for k in nodes if tree.nodes[k].finished] or nodes
        answers: list[str | None] | None = None
        best = min(pool, key=lambda k: (-mass[k], k))
        if self.params.final == "weighted_vote":
            key = get_answer_key(tree.problem.domain)
            answers = [key.extract(tree.text(k), tree.problem) for k in nodes]
            voters = [nodes.index(k) for k in pool]
            groups = group_answers([answers[v] for v in voters], key.equivalent)
            winner = elect(groups, [mass[nodes[v]] for v in voters])
            if winner is not None:
                best = min((nodes[voters[g]] for g in groups[winner]), key=lambda k: (-mass[k], k))
        trace.update(final={"nodes": nodes, "mass": [mass[k] for k in nodes], "chosen": best},
                     nodes=tree.to_json())
        return run.finish(i, nodes, nodes.index(best), trace, answers=answers)


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(ParticleFilter)
