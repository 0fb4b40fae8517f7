"""What a search strategy is, and everything its author needs, from one import.

A strategy is a class with a ``name``, a typed ``Params`` dataclass and ``search``,
mapping ``(problems, policy, prm, budget)`` to one ``SearchResult`` per problem. Its
``search`` starts a ``SearchRun`` (``self.start(...)``) and speaks only to it; see
``prm_plugin.search_run`` for the author API. A complete strategy::

    @dataclass
    class ShortestParams(StrategyParams):
        temperature: float = 0.7

    class Shortest(Strategy):
        name, Params, needs_prm = "shortest", ShortestParams, False

        def search(self, problems, policy, prm, budget):
            run = self.start(problems, policy, prm, budget)
            results = []
            for i, ends in enumerate(run.sample(budget.n)):
                tree = run.trees[i]
                best = min(range(len(ends)), key=lambda k: tree.nodes[ends[k]].total_tokens)
                results.append(run.finish(i, ends, best, {}, scored=False))
            return results

Params come from Python (``BeamSearch.Params(beam_width=4)``) or from strings
(``model_args``, CLI flags) through ``params_from_kwargs``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from prm_plugin.params import StrategyParams, param_names, params_from_kwargs
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.search_run import SEED_STRIDE, NodeRef, SearchRun
from prm_plugin.tree import SearchTree, best_index


class Strategy:
    """Base class of search strategies (subclassing is optional; the contract is
    ``name``, ``Params`` and ``search``)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    #: Whether ``search`` calls the PRM. ``start`` refuses ``prm=None`` when it does, and
    #: hands the run no PRM when it does not. Override ``requires_prm`` when the need
    #: depends on the parameters (``majority`` needs one only with ``weighted=true``).
    needs_prm: ClassVar[bool] = True
    #: Whether ``search`` asks the policy for single steps (``run.expand``) or to continue
    #: a partial solution (``run.complete`` below the root). ``start`` refuses a policy that
    #: returns whole solutions only (``Policy.whole_solutions``) when it does. Strategies
    #: that only sample whole solutions (``run.sample``) set it False; override
    #: ``requires_steps`` when the need depends on the parameters.
    needs_steps: ClassVar[bool] = True
    #: The time source ``budget.max_seconds`` is measured with (tests swap in a fake clock).
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, params: StrategyParams | None = None, **kwargs: Any) -> None:
        if params is not None and kwargs:
            raise TypeError("Pass either a Params instance or keyword arguments, not both.")
        self.params = params if params is not None else params_from_kwargs(self.Params, kwargs)
        if not isinstance(self.params, self.Params):
            raise TypeError(
                f"{type(self).__name__} expects {self.Params.__name__}, got {type(self.params).__name__}."
            )

    def requires_prm(self) -> bool:
        """Whether this instance's search calls the PRM (default: the class's ``needs_prm``)."""
        return self.needs_prm

    def requires_steps(self) -> bool:
        """Whether this instance's search asks the policy for steps or continuations of
        partial solutions (default: the class's ``needs_steps``)."""
        return self.needs_steps

    def start(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> SearchRun:
        """A ``SearchRun`` over ``problems`` with this strategy's params and clock.

        Raises:
            ValueError: the strategy needs a PRM and ``prm`` is None, or it needs steps
                and ``policy`` returns whole solutions only.
        """
        needs = check_prm(self, prm is not None)
        check_policy(self, policy)
        return SearchRun(problems, policy, prm if needs else None, budget, self.params,
                         strategy=self.name, clock=self.clock)

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget,
    ) -> list[SearchResult]:
        raise NotImplementedError


def requires_prm(strategy: Any) -> bool:
    """Whether ``strategy`` (any object with the strategy contract) calls a PRM."""
    method = getattr(strategy, "requires_prm", None)
    return bool(method()) if callable(method) else bool(getattr(strategy, "needs_prm", True))


def check_prm(strategy: Any, has_prm: bool) -> bool:
    """Refuse a strategy that needs a PRM when none is given (the one place this is
    checked: ``Strategy.start`` and the harnesses, before any model loads); return
    whether the strategy needs one."""
    needs = requires_prm(strategy)
    if needs and not has_prm:
        name = getattr(strategy, "name", type(strategy).__name__)
        raise ValueError(
            f"Strategy {name!r}{_settings(getattr(strategy, 'params', None))} needs a PRM, but none was "
            "given (prm=None). Pass a PRM (prm=<path or Hub id> in model_args, --prm on the command line), "
            f"or choose settings or a strategy that need none (strategies without a PRM: {_prm_free()})."
        )
    return needs


def requires_steps(strategy: Any) -> bool:
    """Whether ``strategy`` asks the policy for steps or continuations of partial solutions
    (a strategy object that does not say is assumed to)."""
    method = getattr(strategy, "requires_steps", None)
    return bool(method()) if callable(method) else bool(getattr(strategy, "needs_steps", True))


def check_policy(strategy: Any, policy: Any, label: str | None = None) -> None:
    """Refuse a strategy that needs step-level proposals with a policy that returns whole
    solutions only (``Policy.whole_solutions``; the one place this is checked:
    ``Strategy.start`` and the harnesses, before the policy loads where they can).
    ``policy`` may be a policy or its class; ``label`` names it (default its ``label``)."""
    if not getattr(policy, "whole_solutions", False) or not requires_steps(strategy):
        return
    name = getattr(strategy, "name", type(strategy).__name__)
    if label is None:
        own = getattr(policy, "label", None)
        label = own if isinstance(own, str) else getattr(policy, "__name__", type(policy).__name__)
    raise ValueError(
        f"Strategy {name!r}{_settings(getattr(strategy, 'params', None))} searches step by step, but the "
        f"policy {label} returns whole solutions only: it has no step boundaries and cannot continue a "
        f"partial solution. Use a strategy that samples whole solutions ({_whole_solution_strategies()}; "
        "majority weighted=true adds the PRM's scores to the vote), or a policy that continues text "
        "(policy=hf, vllm, openai, or an lm-eval completion model) for step-level search."
    )


def _whole_solution_strategies() -> str:
    from prm_plugin.plugins import list_strategies

    names = sorted(n for n, reg in list_strategies().items() if not getattr(reg.obj, "needs_steps", True))
    return ", ".join(names) or "none registered"


def _settings(params: Any) -> str:
    """`` (weighted=True)``: the params that differ from their defaults, for messages."""
    if not dataclasses.is_dataclass(params):
        return ""
    changed = [f"{f.name}={getattr(params, f.name)!r}" for f in dataclasses.fields(params)
               if f.default is not dataclasses.MISSING and getattr(params, f.name) != f.default]
    return f" ({', '.join(changed)})" if changed else ""


def _prm_free() -> str:
    from prm_plugin.plugins import list_strategies

    names = sorted(n for n, reg in list_strategies().items() if not getattr(reg.obj, "needs_prm", True))
    return ", ".join(names) or "none registered"


__all__ = [
    "SEED_STRIDE", "NodeRef", "SearchRun", "SearchTree", "Strategy", "StrategyParams", "best_index",
    "check_policy", "check_prm", "param_names", "params_from_kwargs", "requires_prm", "requires_steps",
]
