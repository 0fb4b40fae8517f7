"""One configured search (strategy, budget, policy, PRM), the one every harness uses.

``lm_eval --model prm_guided``, EvalPlus and LiveCodeBench runs all build one from the
same settings (see ``lm_eval_config.ModelSettings``): a
``key=value,key=value`` string whose keys are the model's settings, the strategy's
parameters, and ``policy.<k>=`` / ``prm.<k>=`` keywords. On top of lm-eval's choices,
``policy=`` and ``prm=`` also take a Python object spec ``package.module:attr`` (a
class or factory called with the ``policy.<k>`` / ``prm.<k>`` keywords), for backends
this package does not ship and for scripted test doubles.

Each final solution a harness asks for is one search whose strategy seed is offset by
the sample index (``SEED_STRIDE``), so repeated samples of a task are independent draws,
not copies; a harness's sampling settings replace the strategy's unless ``temperature=``
/ ``top_p=`` were given explicitly (``strategy_for``).

Faults are isolated per problem (``prm_plugin.integrations.faults``): when a batch
search fails with a per-problem fault, its problems are searched again in halves down
to single problems (a problem's search does not depend on what shares its batch, so
the others' answers are those of a clean run); a problem that still fails alone gets a
``SearchResult`` with an empty text and its ``error``.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prm_plugin.integrations.faults import FAILURES, describe, is_fault
from prm_plugin.integrations.lm_eval_backends import Backends, build_backends
from prm_plugin.integrations.lm_eval_config import (
    EVALPLUS_PREFIX,
    build_strategy_params,
    checkpoint_stamp,
    fingerprint,
    own_keys,
    split_model_args,
)
from prm_plugin.integrations.traces import CostSummary
from prm_plugin.search import Budget, Cost, Problem, SearchResult
from prm_plugin.search_run import BackendError
from prm_plugin.strategy import SEED_STRIDE, check_policy, check_prm, requires_prm

logger = logging.getLogger(__name__)

_OBJECT_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def parse_model_args(text: str) -> dict[str, str]:
    """Parse lm-eval's ``model_args`` syntax; a string without ``=`` names the policy model.

    >>> parse_model_args("pretrained=Qwen/Qwen2.5-Coder-1.5B,prm=my/prm,strategy=beam,n=8")["n"]
    '8'
    >>> parse_model_args("Qwen/Qwen2.5-Coder-1.5B")
    {'pretrained': 'Qwen/Qwen2.5-Coder-1.5B'}
    """
    text = text.strip()
    if not text:
        return {}
    if "=" not in text:
        return {"pretrained": text}
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"Bad model_args entry {part!r} in {text!r}: expected key=value pairs separated by commas "
                "(values cannot contain commas)."
            )
        if key in out:
            raise ValueError(f"model_args key {key!r} is given twice in {text!r}.")
        out[key] = value.strip()
    return out


def is_object_spec(value: Any) -> bool:
    """Whether ``value`` reads as ``package.module:attr`` (and is not an existing path, nor
    ``evalplus:<backend>``)."""
    return (isinstance(value, str) and bool(_OBJECT_SPEC.match(value)) and not os.path.exists(value)
            and not value.startswith(EVALPLUS_PREFIX))


def load_object(spec: str, kwargs: Mapping[str, Any]) -> Any:
    """Import ``package.module:attr`` and call it with ``kwargs`` (a class or factory)."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"Cannot import {module_name!r} for {spec!r}: {exc}. Is it on PYTHONPATH?") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr!r} (from {spec!r}).")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{spec!r} is not callable; give a class or a factory function.")
    return obj(**kwargs)


@dataclass
class SearchSession:
    """A strategy, budget, policy and PRM, ready to solve problems."""

    strategy: Any
    budget: Budget
    backends: Backends
    config: dict[str, Any]
    explicit_sampling: set[str] = field(default_factory=set)
    costs: CostSummary = field(default_factory=CostSummary)
    harness: str = "prm_guided"
    #: The problems whose search failed in this session (see ``faults.FailureLog.record``).
    failures: list[dict[str, Any]] = field(default_factory=list)
    _strategies: dict[tuple[int, float | None, float | None], Any] = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> Any:
        return self.backends.settings

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.config)

    @classmethod
    def build(cls, args: Mapping[str, Any], *, harness: str, unused: Iterable[str] = (),
              policy: Any = None, prm: Any = None, strategy: Any = None,
              placement: Callable[[str | None], str | None] | None = None) -> SearchSession:
        """Build from model_args (``parse_model_args`` output or a dict).

        Args:
            args: the settings; see the module docstring.
            harness: names the caller in error messages (``"EvalPlus"``, ...).
            unused: ``ModelSettings`` keys this harness has no use for; giving one is an error.
            policy / prm / strategy: objects that replace the named ones (Python use).
            placement: a callable ``device= setting -> device`` choosing where the native
                policy and PRM go (a data-parallel rank's own GPU); the configuration (and so
                the resume fingerprint) keeps ``device=`` as given.
        """
        from prm_plugin.plugins import get_strategy

        args = dict(args)
        ignored = sorted(k for k in args if k in set(unused))
        if ignored:
            raise ValueError(f"{harness} runs do not use model_args {', '.join(ignored)}; drop them.")
        name = args.get("strategy", "bon") if strategy is None else None
        strategy_cls: Any = get_strategy(str(name)) if name is not None else None
        split = split_model_args(args, strategy_cls.Params if strategy_cls else None)
        s = split.settings
        if strategy_cls is not None:
            strategy = strategy_cls(build_strategy_params(strategy_cls.Params, split.strategy_params))
        check_prm(strategy, prm is not None or bool(s.prm))  # before any model is loaded
        if policy is None and s.evalplus_backend is not None:
            from prm_plugin.policy.evalplus import EvalPlusPolicy

            check_policy(strategy, EvalPlusPolicy, label=s.policy)
        if policy is None and is_object_spec(s.policy):
            if split.passthrough:
                raise ValueError(_unknown_keys(split.passthrough, strategy_cls, harness))
            extra = {"pretrained": s.pretrained} if s.pretrained else {}
            policy = load_object(s.policy, {**extra, **split.policy_kwargs})
        if prm is None and is_object_spec(s.prm):
            prm = load_object(str(s.prm), split.prm_kwargs)
        placed = s if placement is None else dataclasses.replace(s, device=placement(s.device))
        backends = build_backends(
            placed, split, policy_obj=policy, prm_obj=prm, needs_prm=requires_prm(strategy),
            strategy_name=str(getattr(strategy, "name", type(strategy).__name__)),
            step_delimiter=getattr(getattr(strategy, "params", None), "step_delimiter", None),
        )
        check_policy(strategy, backends.policy)
        if s.max_policy_tokens is not None and not getattr(backends.policy, "counts_tokens", True):
            raise ValueError(f"max_policy_tokens needs the policy's token counts, and policy={backends.policy_name} "
                             "has no tokenizer to count with. Give tokenizer=<local path>, or drop max_policy_tokens.")
        budget = Budget(n=s.n, max_policy_tokens=s.max_policy_tokens, max_seconds=s.max_seconds)
        session = cls(strategy=strategy, budget=budget, backends=backends, config={}, harness=harness,
                      explicit_sampling={k for k in ("temperature", "top_p") if k in split.strategy_params})
        session.config = session._describe(split)
        return session

    # -- running ------------------------------------------------------------------
    @property
    def strategy_name(self) -> str:
        return str(getattr(self.strategy, "name", type(self.strategy).__name__))

    def tokenizer(self) -> Any | None:
        """The policy's tokenizer, or None when it exposes none."""
        return self.backends.tokenizer(required=False)

    def strategy_for(self, sample: int, temperature: float | None = None, top_p: float | None = None) -> Any:
        """The strategy for final sample ``sample`` (lm-eval's repeat index): its seed offset
        by ``SEED_STRIDE * sample``, and the harness's sampling ``temperature`` / ``top_p``
        unless ``temperature=`` / ``top_p=`` were set explicitly (a harness temperature of 0
        or None keeps the strategy's own)."""
        key = (sample, temperature, top_p)
        if key in self._strategies:
            return self._strategies[key]
        params: Any = getattr(self.strategy, "params", None)
        if not (dataclasses.is_dataclass(params) and not isinstance(params, type) and hasattr(params, "seed")):
            made = self.strategy  # a strategy object without seeded Params runs as given
        else:
            changes: dict[str, Any] = {"seed": getattr(params, "seed", 0) + SEED_STRIDE * sample}
            if temperature and "temperature" not in self.explicit_sampling:
                changes["temperature"] = float(temperature)
            if top_p is not None and "top_p" not in self.explicit_sampling:
                changes["top_p"] = float(top_p)
            try:
                new = dataclasses.replace(params, **changes)
            except ValueError:  # e.g. greedy, whose temperature is fixed at 0
                new = dataclasses.replace(params, seed=changes["seed"])
            made = self.strategy if new == params else type(self.strategy)(new)
        self._strategies[key] = made
        return made

    def search(self, problems: Sequence[Problem], *, sample: int = 0, temperature: float | None = None,
               top_p: float | None = None) -> list[SearchResult]:
        """Run one search per problem (one batched strategy call), isolating per-problem
        faults (see the module docstring): a problem that fails gets a result with an empty
        text and ``error`` set, unless ``strict=true``, which re-raises the first fault."""
        strategy = self.strategy_for(sample, temperature, top_p)
        return self._isolated(strategy, list(problems))

    def _isolated(self, strategy: Any, problems: list[Problem]) -> list[SearchResult]:
        try:
            return self._search(strategy, problems)
        except Exception as exc:
            if not is_fault(exc) or self.settings.strict:
                raise
            if len(problems) == 1:
                return [self._failed(problems[0], exc)]
            logger.warning("%s: a batch of %d problems failed (%s); searching it again in halves to isolate "
                           "the failing problem(s).", self.harness, len(problems), exc)
        half = len(problems) // 2
        return self._isolated(strategy, problems[:half]) + self._isolated(strategy, problems[half:])

    def _search(self, strategy: Any, problems: list[Problem]) -> list[SearchResult]:
        results: list[SearchResult] = strategy.search(problems, self.backends.policy, self.backends.prm,
                                                      self.budget)
        if len(results) != len(problems):
            raise RuntimeError(
                f"Strategy {self.strategy_name} returned {len(results)} results for {len(problems)} problems."
            )
        return results

    def _failed(self, problem: Problem, exc: BaseException) -> SearchResult:
        """The result of a problem whose search failed on its own: empty text, the error,
        and what its search had cost when it failed."""
        error = describe(exc)
        self.failures.append(FAILURES.record(problem.uid or problem.question[:60], error, self.harness))
        cost = exc.costs[0] if isinstance(exc, BackendError) and exc.costs else Cost()
        return SearchResult(text="", candidates=[], chosen=None, cost=cost, trace={}, strategy=self.strategy_name,
                            error=error)

    def _describe(self, split: Any) -> dict[str, Any]:
        from prm_plugin import __version__

        s = self.settings
        params: Any = getattr(self.strategy, "params", None)
        is_params = dataclasses.is_dataclass(params) and not isinstance(params, type)
        return {
            "plugin_version": __version__,
            "policy": self.backends.policy_name, "pretrained": s.pretrained,
            # a policy that cannot count its tokens reports 0: say they are unknown
            **({} if getattr(self.backends.policy, "counts_tokens", True) else {"policy_tokens": "unknown"}),
            "prm": self.backends.prm_name, "prm_family": s.prm_family,
            "prm_step_separator": s.prm_step_separator, "prm_backend": s.prm_backend,
            "strategy": self.strategy_name,
            # a strategy that decides per budget (auto) says what it chose
            **({"strategy_choice": self.strategy.describe(self.budget)} if hasattr(self.strategy, "describe") else {}),
            "params": dataclasses.asdict(params) if is_params else repr(params),
            "budget": dataclasses.asdict(self.budget), "seed": getattr(params, "seed", None),
            "question_field": s.question_field, "domain": s.domain, "max_gen_toks": s.max_gen_toks,
            "on_overflow": s.on_overflow,
            "device": split.settings.device, "dtype": s.dtype,  # as given, not a rank's own GPU
            "policy_kwargs": split.policy_kwargs, "prm_kwargs": split.prm_kwargs,
            "wrapped_model_args": split.passthrough,
            "tokenizer": s.tokenizer, "prm_tokenizer": s.prm_tokenizer,
            "checkpoints": {"pretrained": checkpoint_stamp(s.pretrained), "prm": checkpoint_stamp(s.prm),
                            "tokenizer": checkpoint_stamp(s.tokenizer),
                            "prm_tokenizer": checkpoint_stamp(s.prm_tokenizer)},
        }


def _unknown_keys(keys: Mapping[str, Any], strategy_cls: Any, harness: str) -> str:
    params = sorted(f.name for f in dataclasses.fields(strategy_cls.Params)) if strategy_cls else []
    return (
        f"Unknown model_args key(s) {', '.join(sorted(keys))} for the {harness} prm_guided backend.\n"
        f"  strategy parameters: {', '.join(params) or '(none)'}\n"
        f"  prm_guided settings: {', '.join(own_keys())}\n"
        "  policy.<key>=... and prm.<key>=... pass keyword arguments to the policy / PRM."
    )
