"""Per-request search settings: the allow-list, the server's bounds, and the session they select.

A request may change the search only through its ``search`` object (``extra_body`` in
the ``openai`` client) and OpenAI's own ``seed``:

* ``strategy``: a registered strategy name (never a module or object spec);
* ``n``: the budget, at most ``ServeConfig.max_n``;
* ``domain``: a registered answer-key domain (``math``, ``code``, ...);
* the chosen strategy's parameters whose values are numbers, booleans or a fixed set of
  choices (``temperature``, ``top_p``, ``seed``, ``aggregation``, ``beam_width``,
  ``simulations``, ``selection``, ...). Integers are bounded by ``max_n`` (``seed`` by
  2**32, ``max_step_tokens`` by ``max_tokens``); floats must be finite.

Everything else is refused with a message that says why: models, paths, devices,
``policy.<k>``/``prm.<k>`` keywords and free-text parameters (``step_delimiter``) are
fixed when the server starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prm_plugin.integrations.lm_eval_config import build_strategy_params, own_keys
from prm_plugin.integrations.search_session import SearchSession
from prm_plugin.params import StrategyParams
from prm_plugin.prm.base import AGGREGATIONS
from prm_plugin.search import Budget
from prm_plugin.serve.config import ServeConfig
from prm_plugin.serve.errors import bad_request
from prm_plugin.strategy import check_prm

#: Settings that are not strategy parameters but may still be chosen per request.
REQUEST_KEYS = ("strategy", "n", "domain")
MAX_SEED = 2**32
_SHARED = tuple(f.name for f in dataclasses.fields(StrategyParams))
_CACHE_SIZE = 32


@dataclass(frozen=True)
class Variant:
    """The search one request asked for: a session (strategy, budget, shared backends)."""

    key: tuple[Any, ...]
    session: SearchSession
    domain: str

    def describe(self) -> dict[str, Any]:
        params: Any = getattr(self.session.strategy, "params", None)
        is_params = dataclasses.is_dataclass(params) and not isinstance(params, type)
        return {"strategy": self.session.strategy_name, "n": self.session.budget.n,
                "params": dataclasses.asdict(params) if is_params else {}}


class Variants:
    """Turns a request's ``search`` object into a ``Variant``, checking the allow-list.

    Args:
        session: the server's session (its strategy, budget and backends are the defaults).
        config: the server's bounds.
    """

    def __init__(self, session: SearchSession, config: ServeConfig) -> None:
        self.session = session
        self.config = config
        self._cache: OrderedDict[tuple[Any, ...], SearchSession] = OrderedDict()

    def resolve(self, search: Mapping[str, Any] | None, *, seed: int | None = None,
                temperature: float | None = None, top_p: float | None = None) -> Variant:
        """The variant for a request's ``search`` settings and OpenAI ``seed``, ``temperature``
        and ``top_p``. The last two replace the search's own as a harness's sampling settings
        do (``SearchSession.strategy_for``): unless the server or ``search`` set them, with a
        temperature of 0 or None keeping the search's, and dropped for strategies that fix them
        (``greedy``). They are part of the variant, so a session's strategies stay few.

        Raises:
            APIError: 400 for a setting outside the allow-list, out of bounds, or invalid
                for the strategy (the message names it and the fix).
        """
        search = dict(search or {})
        name = search.pop("strategy", None)
        if name is not None and not isinstance(name, str):
            raise bad_request(f"search.strategy must be a strategy name (a string), got {name!r}.", "search.strategy")
        strategy_cls = self._strategy_cls(name)
        domain = self._domain(search.pop("domain", None))
        n = self._n(search.pop("n", None))
        overrides = self._params(strategy_cls, search)
        fields = _fields(strategy_cls)
        if seed is not None and "seed" not in overrides and "seed" in fields:
            overrides["seed"] = _int("seed", seed, 0, MAX_SEED - 1)
        same = strategy_cls is type(self.session.strategy)
        explicit = self._explicit(strategy_cls, same) | (set(overrides) & {"temperature", "top_p"})
        harness = {k: float(v) for k, v in (("temperature", temperature or None), ("top_p", top_p))
                   if v is not None and k not in explicit and k in fields}
        if same and not overrides and not harness and n == self.session.budget.n:
            return Variant(("default",), self.session, domain)
        key = (strategy_cls.name, tuple(sorted(overrides.items())), tuple(sorted(harness.items())), n)
        session = self._cache.get(key)
        if session is None:
            session = self._build(strategy_cls, overrides, harness, n, same, explicit)
            self._cache[key] = session
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return Variant(key, session, domain)

    def allowed(self, strategy_cls: Any) -> list[str]:
        """The per-request settings open for ``strategy_cls``."""
        return [*REQUEST_KEYS, *sorted(k for k, f in _fields(strategy_cls).items() if _kind(k, f) is not None)]

    # -- pieces --------------------------------------------------------------------------
    def _strategy_cls(self, name: str | None) -> Any:
        from prm_plugin.plugins import UnknownNameError, get_strategy

        if name is None:
            return type(self.session.strategy)
        try:
            return get_strategy(name)
        except UnknownNameError as exc:
            raise bad_request(str(exc), "search.strategy", "unknown_strategy") from None

    def _domain(self, domain: Any) -> str:
        default = str(self.session.settings.domain)
        if domain is None:
            return default
        from prm_plugin.plugins import get_registry

        known = sorted({"math", "code", default, *get_registry().registrations("answer_keys")})
        if domain not in known:
            raise bad_request(f"search.domain={domain!r} is not a known domain; choose one of {', '.join(known)}.",
                              "search.domain")
        return str(domain)

    def _n(self, n: Any) -> int:
        if n is None:
            return self.session.budget.n
        return _int("n", n, 1, self.config.max_n, hint="the server's --max-n")

    def _params(self, strategy_cls: Any, search: Mapping[str, Any]) -> dict[str, Any]:
        fields = _fields(strategy_cls)
        out: dict[str, Any] = {}
        for key, value in search.items():
            kind = _kind(key, fields[key]) if key in fields else None
            if kind is None:
                raise bad_request(self._refusal(key, strategy_cls, key in fields), f"search.{key}",
                                  "setting_not_allowed")
            out[key] = self._value(key, value, kind, fields[key])
        return out

    def _value(self, key: str, value: Any, kind: str, annotation: Any) -> Any:
        if value is None and _unwrap(annotation)[1]:
            return None
        if kind == "bool":
            if not isinstance(value, bool):
                raise bad_request(f"search.{key} must be true or false, got {value!r}.", f"search.{key}")
            return value
        if kind == "int":
            if key == "seed":
                return _int(key, value, 0, MAX_SEED - 1)
            if key == "max_step_tokens":
                return _int(key, value, 1, self.config.max_tokens, hint="the server's --max-tokens")
            return _int(key, value, 0, self.config.max_n, hint="the server's --max-n")
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad_request(f"search.{key} must be a finite number, got {value!r}.", f"search.{key}")
            return float(value)
        choices = _choices(key, annotation)
        if value not in choices:
            raise bad_request(f"search.{key} must be one of {', '.join(map(str, choices))}; got {value!r}.",
                              f"search.{key}")
        return value

    def _refusal(self, key: str, strategy_cls: Any, is_param: bool) -> str:
        allowed = ", ".join(self.allowed(strategy_cls))
        if key in own_keys() or "." in key or key in ("model", "tokenizer"):
            why = ("is fixed when the server starts: a request can never choose a model, a path, a Python "
                   "object or the resources the server uses (set it with `prm-plugin serve` flags)")
        elif is_param:
            why = f"is a free-text parameter of {strategy_cls.name}, fixed when the server starts"
        else:
            close = difflib.get_close_matches(key, self.allowed(strategy_cls), n=1)
            why = f"is not a setting of strategy {strategy_cls.name}" + (f" (did you mean {close[0]}?)" if close else "")
        return f"search.{key} {why}. Per-request settings for {strategy_cls.name}: {allowed}."

    def _explicit(self, strategy_cls: Any, same: bool) -> set[str]:
        """The sampling settings the server fixed for ``strategy_cls``."""
        if same:
            return set(self.session.explicit_sampling)
        return {k for k in ("temperature", "top_p") if k in _changed_shared(self.session.strategy)}

    def _build(self, strategy_cls: Any, overrides: dict[str, Any], harness: dict[str, Any], n: int, same: bool,
               explicit: set[str]) -> SearchSession:
        base = self.session
        fields = _fields(strategy_cls)
        if same:
            values = {**dataclasses.asdict(base.strategy.params), **overrides}
        else:
            values = {k: v for k, v in {**_changed_shared(base.strategy), **overrides}.items() if k in fields}
        try:
            try:
                params = build_strategy_params(strategy_cls.Params, {**values, **harness})
            except ValueError:
                if not harness:
                    raise
                params = build_strategy_params(strategy_cls.Params, values)  # e.g. greedy fixes temperature 0
            strategy = strategy_cls(params)
            check_prm(strategy, base.backends.prm is not None)
        except (TypeError, ValueError) as exc:
            raise bad_request(f"search settings rejected by strategy {strategy_cls.name}: {exc}", "search") from None
        budget = Budget(n=n, max_policy_tokens=base.budget.max_policy_tokens, max_seconds=base.budget.max_seconds)
        config = {**base.config, "strategy": strategy_cls.name, "params": dataclasses.asdict(strategy.params),
                  "budget": dataclasses.asdict(budget)}
        return SearchSession(strategy=strategy, budget=budget, backends=base.backends, config=config,
                             explicit_sampling=explicit | {"temperature", "top_p"})


def _fields(strategy_cls: Any) -> dict[str, Any]:
    """Parameter name -> resolved type annotation of the strategy's ``Params``."""
    hints = typing.get_type_hints(strategy_cls.Params)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(strategy_cls.Params)}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, ``(annotation, False)`` otherwise."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else None), True
    return annotation, False


def _kind(key: str, annotation: Any) -> str | None:
    """``int``, ``float``, ``bool`` or ``choice`` for a parameter a request may set, else None."""
    if key == "aggregation":
        return "choice"
    base, _ = _unwrap(annotation)
    if base is bool:
        return "bool"
    if base in (int, float):
        return str(base.__name__)
    if typing.get_origin(base) is typing.Literal and all(isinstance(a, (str, int, float)) for a in typing.get_args(base)):
        return "choice"
    return None


def _choices(key: str, annotation: Any) -> tuple[Any, ...]:
    if key == "aggregation":
        return tuple(AGGREGATIONS)
    return typing.get_args(_unwrap(annotation)[0])


def _int(key: str, value: Any, low: int, high: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"search.{key} must be an integer, got {value!r}.", f"search.{key}")
    if not low <= value <= high:
        where = f" ({hint})" if hint else ""
        raise bad_request(f"search.{key}={value} is out of bounds: allowed {low}..{high}{where}.", f"search.{key}",
                          "out_of_bounds")
    return value


def _changed_shared(strategy: Any) -> dict[str, Any]:
    """The shared parameters the server set away from its strategy's defaults."""
    params = getattr(strategy, "params", None)
    if not (dataclasses.is_dataclass(params) and not isinstance(params, type)):
        return {}
    defaults = type(params)()
    return {k: getattr(params, k) for k in _SHARED if getattr(params, k) != getattr(defaults, k)}
