"""Compute-optimal strategy choice: for the request's budget, run the registered strategy
and parameters that a calibration table measured as most accurate within that budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import prm_plugin
from prm_plugin.calibration import CalibrationError, Choice, Entry, Table, choose, load_table
from prm_plugin.plugins import get_strategy
from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel
from prm_plugin.search import Budget, Problem, SearchResult
from prm_plugin.strategy import (
    Strategy,
    StrategyParams,
    check_policy,
    check_prm,
    requires_prm,
    requires_steps,
)

#: Shared settings every table entry carries itself (it was measured with them).
_FROM_TABLE = ("temperature", "top_p", "aggregation")


@dataclass
class AutoParams(StrategyParams):
    """``auto`` settings.

    Attributes:
        table: a calibration table (JSON written by ``prm-plugin calibrate``); None takes
            the one shipped for the synthetic world (``prm_plugin.calibration.DEFAULT_TABLE``).
        seed, step_delimiter, max_step_tokens: passed to the chosen strategy.

    ``temperature``, ``top_p`` and ``aggregation`` come from the chosen table entry (it was
    measured with them), so setting them here is an error rather than silently ignored.
    """

    table: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        base = StrategyParams()
        for name in _FROM_TABLE:
            if getattr(self, name) != getattr(base, name):
                raise ValueError(
                    f"auto takes {name} from its calibration table (each entry was measured with its own); "
                    f"drop {name}={getattr(self, name)!r}, or name the strategy you want instead of auto."
                )
        if self.table == "":
            raise ValueError("table must be a path to a calibration table, or None for the shipped one.")


class Auto(Strategy):
    """Compute-optimal choice per budget (``auto``).

    Budget mapping: ``auto`` spends at most the request's budget. Of the table entries
    with ``n <= Budget.n`` whose measured mean cost fits the caps (generated tokens
    within ``max_policy_tokens``; seconds per problem times the problems of the search
    within ``max_seconds``), it runs the most accurate (ties: fewer tokens, then fewer
    seconds, then the earlier entry) with its parameters and its own ``n``; the request's
    caps still apply to that run. If no eligible entry fits the caps, the one closest to
    fitting runs and the caps stop it (``within_caps: false`` in the trace). A budget
    below every entry's ``n`` is an error naming the smallest. See
    ``prm_plugin.calibration.choose``. With a policy that returns whole solutions only
    (``Policy.whole_solutions``), the choice is among the entries that sample whole
    solutions (``bon``, ``majority``, ``greedy``; ``whole_solutions_only: true`` in the
    trace); it is refused only when the table has none (``requires_steps``).

    Every result's trace holds ``auto``: the table, its sha256, the chosen entry (strategy,
    params, n, measured accuracy and cost) and whether it fit the caps; ``describe``
    gives the same for a harness's model info. The table is read (and every entry's
    strategy and params checked) on first use.
    """

    name = "auto"
    Params = AutoParams
    needs_prm = True
    params: AutoParams

    def __init__(self, params: StrategyParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._table: Table | None = None

    def table(self) -> Table:
        """The calibration table, loaded and checked once."""
        if self._table is None:
            table = load_table(self.params.table)
            for k, entry in enumerate(table.entries):
                try:
                    self._build(entry)
                except (ValueError, TypeError, LookupError) as exc:
                    raise CalibrationError(
                        f"Entry {k} ({entry.label}) of the calibration table {table.source} cannot be run: {exc}"
                    ) from exc
            self._table = table
        return self._table

    def requires_prm(self) -> bool:
        """Whether any entry the table may choose needs a PRM."""
        return any(requires_prm(self._build(e)) for e in self.table().entries)

    def requires_steps(self) -> bool:
        """Whether every entry of the table searches step by step (otherwise a policy that
        returns whole solutions only runs the best of the others)."""
        return all(requires_steps(self._build(e)) for e in self.table().entries)

    def choose(self, budget: Budget, problems: int | None = None, *, whole_solutions: bool = False) -> Choice:
        """The entry run for ``budget`` (``problems``: the size of the search, for
        ``max_seconds``; ``whole_solutions``: only entries that sample whole solutions)."""
        table = self.table()
        if not whole_solutions:
            return choose(table, budget, problems)
        keep = [k for k, e in enumerate(table.entries) if not requires_steps(self._build(e))]
        picked = choose(dataclasses.replace(table, entries=tuple(table.entries[k] for k in keep)), budget, problems)
        return dataclasses.replace(picked, index=keep[picked.index])

    def describe(self, budget: Budget) -> dict[str, Any]:
        """The choice for ``budget`` as JSON (for a harness's model info)."""
        table, choice = self.table(), self.choose(budget)
        note = "max_seconds is checked per search (seconds per problem x problems)" if budget.max_seconds else None
        return {"table": table.source, "table_sha256": table.sha256, **choice.to_json(),
                **({"note": note} if note else {})}

    def _build(self, entry: Entry) -> Strategy:
        cls: Any = get_strategy(entry.strategy)
        p = self.params
        own = {"seed": p.seed, "step_delimiter": p.step_delimiter, "max_step_tokens": p.max_step_tokens}
        fields = {f.name for f in dataclasses.fields(cls.Params)}
        strategy: Strategy = cls(**entry.params, **{k: v for k, v in own.items() if k in fields})
        if "clock" in vars(self):  # a test's fake clock reaches the strategy that runs
            strategy.clock = self.clock
        return strategy

    def search(
        self, problems: Sequence[Problem], policy: Policy, prm: RewardModel | None, budget: Budget
    ) -> list[SearchResult]:
        check_prm(self, prm is not None)
        check_policy(self, policy)
        table = self.table()
        whole = bool(getattr(policy, "whole_solutions", False))
        choice = self.choose(budget, len(problems), whole_solutions=whole)
        inner = self._build(choice.entry)
        run_budget = Budget(n=choice.entry.n, max_policy_tokens=budget.max_policy_tokens,
                            max_seconds=budget.max_seconds)
        results: list[SearchResult] = inner.search(problems, policy, prm, run_budget)
        record = {"table": table.source, "table_sha256": table.sha256, **choice.to_json(),
                  **({"whole_solutions_only": True} if whole else {})}
        for result in results:
            result.trace = {**result.trace, "auto": record}
            result.strategy = self.name
        return results


@prm_plugin.hookimpl
def register_strategies(register: Any) -> None:
    register(Auto)
