"""Calibration tables: measured accuracy and cost per strategy setting and budget, and the
compute-optimal choice for a budget (Snell et al., arXiv 2408.03314: pick the strategy
per budget rather than one for all).

``prm-plugin calibrate`` writes a table; the ``auto`` strategy reads one and runs the
entry ``choose`` picks. A table is JSON::

    {"format": "prm-plugin-calibration", "version": 1,
     "dev_set": {...}, "command": "prm-plugin calibrate ...",
     "entries": [{"strategy": "bon", "params": {"temperature": 0.5}, "n": 16,
                  "accuracy": 0.85, "generated_tokens": 1271.0,
                  "seconds_per_problem": 0.41, "problems": 200}, ...]}

``generated_tokens`` and ``seconds_per_problem`` are means per problem on the dev set
(further measured fields, e.g. ``prm_tokens``, are kept and ignored). This module does no
search and imports no strategy: it is plain data and one pure choice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prm_plugin.search import Budget

FORMAT, VERSION = "prm-plugin-calibration", 1
#: The table shipped for the synthetic world (``prm-plugin calibrate`` rewrites it).
DEFAULT_TABLE = Path(__file__).resolve().parent / "tables" / "auto_world.json"
#: Settings an entry may not fix: ``auto`` passes its own (seed) or the domain's.
RESERVED_PARAMS = ("seed", "step_delimiter", "max_step_tokens")
_FIX = "Regenerate it with `prm-plugin calibrate --tasks ... --budgets ... --out PATH`."


class CalibrationError(ValueError):
    """A calibration table that cannot be used (missing, empty or malformed)."""


@dataclass(frozen=True)
class Entry:
    """One measured setting: a strategy, its params and budget ``n``, and what it did."""

    strategy: str
    params: dict[str, Any]
    n: int
    accuracy: float
    generated_tokens: float
    seconds_per_problem: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        settings = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.strategy}@{self.n}" + (f"({settings})" if settings else "")

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "params": self.params, "n": self.n, "accuracy": self.accuracy,
                "generated_tokens": self.generated_tokens, "seconds_per_problem": self.seconds_per_problem,
                **self.extra}


@dataclass(frozen=True)
class Table:
    """A loaded calibration table."""

    entries: tuple[Entry, ...]
    source: str
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    """The entry picked for a budget, and why."""

    index: int
    entry: Entry
    within_caps: bool
    candidates: int  # entries with n <= budget.n

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.index, "strategy": self.entry.strategy, "params": self.entry.params,
                "n": self.entry.n, "within_caps": self.within_caps,
                "measured": {"accuracy": self.entry.accuracy, "generated_tokens": self.entry.generated_tokens,
                             "seconds_per_problem": self.entry.seconds_per_problem}}


def table_json(entries: Sequence[Entry], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document of a table (what ``prm-plugin calibrate`` writes)."""
    return {"format": FORMAT, "version": VERSION, **meta, "entries": [e.to_json() for e in entries]}


def load_table(path: str | Path | None = None) -> Table:
    """Read and check a table (``None``: the shipped ``DEFAULT_TABLE``).

    Raises:
        CalibrationError: the file is missing, not JSON, not a table, or has no valid entries.
    """
    where = Path(path) if path is not None else DEFAULT_TABLE
    try:
        raw = where.read_bytes()
    except OSError as exc:
        raise CalibrationError(f"Cannot read the calibration table {where}: {exc.strerror or exc}. {_FIX}") from exc
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"The calibration table {where} is not valid JSON ({exc}). {_FIX}") from exc
    return parse_table(doc, str(where), hashlib.sha256(raw).hexdigest())


def parse_table(doc: Any, source: str = "<table>", sha256: str = "") -> Table:
    """Check a table document; every problem is reported with the entry it is in."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CalibrationError(
            f"{source} is not a calibration table: expected a JSON object with \"format\": \"{FORMAT}\". {_FIX}"
        )
    if doc.get("version") != VERSION:
        raise CalibrationError(f"{source} has table version {doc.get('version')!r}; this prm-plugin reads "
                               f"version {VERSION}. {_FIX}")
    raw = doc.get("entries")
    if not isinstance(raw, list) or not raw:
        raise CalibrationError(f"The calibration table {source} has no entries (\"entries\" must be a non-empty "
                               f"list), so there is nothing to choose from. {_FIX}")
    entries = tuple(_entry(item, k, source) for k, item in enumerate(raw))
    meta = {k: v for k, v in doc.items() if k not in ("format", "version", "entries")}
    return Table(entries, source, sha256, meta)


def _entry(item: Any, k: int, source: str) -> Entry:
    where = f"entry {k} of the calibration table {source}"
    if not isinstance(item, dict):
        raise CalibrationError(f"{where} is {type(item).__name__}, not an object. {_FIX}")
    missing = [key for key in ("strategy", "n", "accuracy", "generated_tokens", "seconds_per_problem")
               if key not in item]
    if missing:
        raise CalibrationError(f"{where} lacks {', '.join(missing)}. {_FIX}")
    strategy, n, params = item["strategy"], item["n"], item.get("params", {})
    if not isinstance(strategy, str) or not strategy or strategy == "auto":
        raise CalibrationError(f"{where}: strategy must name a registered strategy other than auto, "
                               f"got {strategy!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CalibrationError(f"{where}: n must be an integer >= 1, got {n!r}.")
    if not isinstance(params, dict):
        raise CalibrationError(f"{where}: params must be an object of strategy parameters, got {params!r}.")
    reserved = sorted(set(params) & set(RESERVED_PARAMS))
    if reserved:
        raise CalibrationError(f"{where}: params may not set {', '.join(reserved)} (auto passes its own); "
                               "drop them from the entry.")
    numbers = {key: item[key] for key in ("accuracy", "generated_tokens", "seconds_per_problem")}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise CalibrationError(f"{where}: {key} must be a finite number >= 0, got {value!r}.")
    if numbers["accuracy"] > 1:
        raise CalibrationError(f"{where}: accuracy is a fraction in [0, 1], got {numbers['accuracy']!r}.")
    extra = {key: v for key, v in item.items() if key not in ("strategy", "params", "n", *numbers)}
    return Entry(strategy, dict(params), n, float(numbers["accuracy"]), float(numbers["generated_tokens"]),
                 float(numbers["seconds_per_problem"]), extra)


def choose(table: Table, budget: Budget, problems: int | None = None) -> Choice:
    """The compute-optimal entry for ``budget``.

    Eligible entries have ``n <= budget.n``. Among those whose measured cost fits the
    caps (``generated_tokens <= max_policy_tokens``; ``seconds_per_problem * problems
    <= max_seconds``, checked only when ``problems`` is given, since a cap holds for a
    whole batch search) the most accurate wins; ties go to fewer generated tokens, then
    fewer seconds, then the earlier entry. If none fits the caps, the eligible entry
    closest to fitting (smallest cost / cap ratio) is taken, and the run's caps stop it.

    Raises:
        CalibrationError: no entry has ``n <= budget.n``.
    """
    eligible = [k for k, e in enumerate(table.entries) if e.n <= budget.n]
    if not eligible:
        smallest = min(e.n for e in table.entries)
        raise CalibrationError(
            f"No entry of the calibration table {table.source} fits Budget.n={budget.n}: the smallest "
            f"measured n is {smallest}. Raise n to {smallest} or more, or calibrate a smaller budget "
            f"(prm-plugin calibrate --budgets {budget.n},...)."
        )
    overs = {k: _over(table.entries[k], budget, problems) for k in eligible}
    fitting = [k for k in eligible if overs[k] <= 1.0]
    if fitting:
        best = min(fitting, key=lambda k: (-table.entries[k].accuracy, table.entries[k].generated_tokens,
                                           table.entries[k].seconds_per_problem, k))
    else:
        best = min(eligible, key=lambda k: (overs[k], k))
    return Choice(best, table.entries[best], bool(fitting), len(eligible))


def _over(entry: Entry, budget: Budget, problems: int | None) -> float:
    """The largest measured-cost / cap ratio (0 without caps; > 1 means over a cap)."""
    ratios = [0.0]
    if budget.max_policy_tokens is not None:
        ratios.append(entry.generated_tokens / budget.max_policy_tokens)
    if budget.max_seconds is not None and problems is not None:
        ratios.append(entry.seconds_per_problem * problems / budget.max_seconds)
    return max(ratios)
