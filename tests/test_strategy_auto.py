"""``auto`` and calibration tables: the choice per budget from a hand-written table, clear
refusals of empty or malformed tables, and the chosen strategy in traces and model info."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeClock, FakePolicy, FakePRM
from lm_eval_fakes import NoCallPolicy

from prm_plugin.calibration import FORMAT, CalibrationError, choose, load_table, parse_table
from prm_plugin.search import Budget, Problem
from prm_plugin.strategies.auto import Auto
from prm_plugin.strategies.bon import BestOfN

T5 = {"temperature": 0.5}
ENTRIES: list[dict[str, Any]] = [
    {"strategy": "greedy", "params": {}, "n": 1, "accuracy": 0.60, "generated_tokens": 80, "seconds_per_problem": 0.1},
    {"strategy": "bon", "params": T5, "n": 4, "accuracy": 0.75, "generated_tokens": 320, "seconds_per_problem": 0.3},
    {"strategy": "beam", "params": {**T5, "beam_width": 2}, "n": 4, "accuracy": 0.78, "generated_tokens": 330,
     "seconds_per_problem": 0.5},
    {"strategy": "bon", "params": T5, "n": 16, "accuracy": 0.80, "generated_tokens": 1300, "seconds_per_problem": 1.0},
    {"strategy": "dvts", "params": T5, "n": 16, "accuracy": 0.85, "generated_tokens": 1400, "seconds_per_problem": 1.2},
    {"strategy": "particle_filter", "params": T5, "n": 16, "accuracy": 0.85, "generated_tokens": 1280,
     "seconds_per_problem": 1.5, "prm_tokens": 900},
    {"strategy": "majority", "params": T5, "n": 64, "accuracy": 0.70, "generated_tokens": 5000, "seconds_per_problem": 2},
]


def table_doc(entries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"format": FORMAT, "version": 1, "entries": ENTRIES if entries is None else entries}


def write(tmp_path: Path, doc: Any, name: str = "table.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


@pytest.mark.parametrize(("budget", "problems", "expected", "fits"), [
    (Budget(n=1), None, 0, True),
    (Budget(n=3), None, 0, True),                    # nothing else has n <= 3
    (Budget(n=4), None, 2, True),                    # beam 0.78 > bon 0.75
    (Budget(n=15), None, 2, True),
    (Budget(n=16), None, 5, True),                   # 0.85 tie: particle_filter has fewer tokens than dvts
    (Budget(n=64), None, 5, True),                   # majority@64 is eligible but worse
    (Budget(n=16, max_policy_tokens=500), None, 2, True),
    (Budget(n=16, max_policy_tokens=1350), None, 5, True),
    (Budget(n=16, max_policy_tokens=1279), None, 2, True),   # particle_filter@16 (1280) is just over
    (Budget(n=16, max_policy_tokens=50), None, 0, False),    # none fits: greedy is closest (80 / 50)
    (Budget(n=16, max_seconds=10), 10, 3, True),     # 10 problems: <= 1.0 s each leaves bon@16
    (Budget(n=16, max_seconds=10), None, 5, True),   # problems unknown: seconds are not compared
])
def test_choose_picks_the_best_entry_for_each_budget(budget: Budget, problems: int | None, expected: int,
                                                     fits: bool) -> None:
    choice = choose(parse_table(table_doc()), budget, problems)
    assert (choice.index, choice.within_caps) == (expected, fits)
    assert choice.entry.to_json() == ENTRIES[expected]


def test_a_budget_below_every_entry_is_refused_with_the_smallest_n() -> None:
    table = parse_table(table_doc(ENTRIES[1:]))
    with pytest.raises(CalibrationError, match=r"Budget.n=2: the smallest measured n is 4\. Raise n to 4"):
        choose(table, Budget(n=2))


@pytest.mark.parametrize(("doc", "message"), [
    (table_doc([]), "has no entries"),
    ({"format": FORMAT, "version": 1}, "has no entries"),
    ([], "is not a calibration table"),
    ({"entries": ENTRIES}, "is not a calibration table"),
    ({**table_doc(), "version": 2}, "reads version 1"),
    (table_doc([{"strategy": "bon", "n": 4}]), "entry 0 .* lacks accuracy, generated_tokens, seconds_per_problem"),
    (table_doc([{**ENTRIES[1], "accuracy": 85}]), r"accuracy is a fraction in \[0, 1\], got 85"),
    (table_doc([ENTRIES[0], {**ENTRIES[1], "n": 0}]), "entry 1 .* n must be an integer >= 1, got 0"),
    (table_doc([{**ENTRIES[1], "generated_tokens": "many"}]), "generated_tokens must be a finite number"),
    (table_doc([{**ENTRIES[1], "strategy": "auto"}]), "other than auto"),
    (table_doc([{**ENTRIES[1], "params": {**T5, "seed": 3}}]), "may not set seed"),
    (table_doc(["bon"]), "is str, not an object"),
])
def test_malformed_tables_are_refused_naming_the_problem(tmp_path: Path, doc: Any, message: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(CalibrationError, match=message) as info:
        load_table(path)
    assert path in str(info.value)


def test_unreadable_tables_and_unrunnable_entries_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="Cannot read the calibration table .*missing.json"):
        load_table(tmp_path / "missing.json")
    with pytest.raises(CalibrationError, match="is not valid JSON"):
        load_table(write(tmp_path, "{entries: "))
    typo = write(tmp_path, table_doc([{**ENTRIES[1], "strategy": "bets_of_n"}]))
    with pytest.raises(CalibrationError, match="Entry 0 .* cannot be run: Unknown strategy 'bets_of_n'. Did you mean"):
        Auto(table=typo).choose(Budget(n=4))
    bad = write(tmp_path, table_doc([{**ENTRIES[2], "params": {"beam_widht": 2}}]))
    with pytest.raises(CalibrationError, match="Unknown parameter 'beam_widht'.*Did you mean: beam_width"):
        Auto(table=bad).choose(Budget(n=4))
    with pytest.raises(ValueError, match="auto takes temperature from its calibration table"):
        Auto(temperature=0.5)


TREE = {"P:": [("a", 1, "step"), ("b", 1, "step")],
        "P:a\n\n": [("\\boxed{1}", 2, "eos")], "P:b\n\n": [("\\boxed{2}", 2, "eos")]}
SCORES = {"a": 0.3, "b": 0.8, "\\boxed{1}": 0.9, "\\boxed{2}": 0.7}


def problem() -> Problem:
    return Problem(prompt="P:", question="q", stop=["</s>"])


def test_auto_runs_the_chosen_entry_and_records_it_in_every_trace(tmp_path: Path) -> None:
    path = write(tmp_path, table_doc([ENTRIES[0], ENTRIES[1]]))
    auto, bon = Auto(table=path, seed=7), BestOfN(temperature=0.5, seed=7)
    auto.clock = bon.clock = FakeClock()  # reaches the strategy auto runs
    got = auto.search([problem(), problem()], FakePolicy(TREE, rotate_by_seed=True), FakePRM(SCORES),
                      Budget(n=8, max_policy_tokens=400))
    ref = bon.search([problem(), problem()], FakePolicy(TREE, rotate_by_seed=True),
                                                  FakePRM(SCORES), Budget(n=4, max_policy_tokens=400))
    for mine, theirs in zip(got, ref, strict=True):
        record = mine.trace.pop("auto")
        assert record["strategy"] == "bon" and record["n"] == 4 and record["params"] == T5
        assert record["entry"] == 1 and record["within_caps"] and record["table"] == path
        assert record["measured"] == {"accuracy": 0.75, "generated_tokens": 320, "seconds_per_problem": 0.3}
        assert mine.strategy == "auto" and mine.text == theirs.text and mine.trace == theirs.trace
        assert mine.cost == theirs.cost and len(mine.candidates) == 4  # entry's n, not the request's 8
    assert auto.describe(Budget(n=8))["strategy"] == "bon"
    assert len(auto.describe(Budget(n=8))["table_sha256"]) == 64


def test_auto_needs_a_prm_only_when_its_table_can_choose_a_strategy_that_does(tmp_path: Path) -> None:
    with_bon = Auto(table=write(tmp_path, table_doc(ENTRIES[:2]), "a.json"))
    assert with_bon.requires_prm()
    with pytest.raises(ValueError, match="needs a PRM"):
        with_bon.search([problem()], FakePolicy(TREE), None, Budget(n=1))
    free = Auto(table=write(tmp_path, table_doc([ENTRIES[0], {**ENTRIES[6], "n": 2}]), "b.json"))
    assert not free.requires_prm()
    [res] = free.search([problem()], FakePolicy(TREE), None, Budget(n=2))
    assert res.trace["auto"]["strategy"] == "majority" and res.text == "a\n\n\\boxed{1}"


def test_model_info_records_the_choice(tmp_path: Path) -> None:
    from prm_plugin.integrations.lm_eval import PRMGuidedLM

    path = write(tmp_path, table_doc([ENTRIES[0], {**ENTRIES[6], "n": 4}]))
    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy="auto", table=path, n=4)
    info = lm.get_model_info()["prm_guided"]
    assert info["strategy"] == "auto" and info["params"]["table"] == path
    assert info["strategy_choice"]["strategy"] == "majority" and info["strategy_choice"]["n"] == 4
    other = PRMGuidedLM(policy=NoCallPolicy(), strategy="auto", table=path, n=1)
    assert other.get_model_info()["prm_guided"]["strategy_choice"]["strategy"] == "greedy"
    assert other.config_fingerprint != lm.config_fingerprint


def test_the_shipped_table_is_complete_and_auto_picks_the_best_entry_per_budget() -> None:
    auto = Auto()
    table = auto.table()  # every entry's strategy and params are runnable
    command = table.meta["command"]
    assert table.meta["complete"] and command.startswith("prm-plugin calibrate --tasks arith_val")
    budgets = [int(b) for b in command.split("--budgets ")[1].split()[0].split(",")]
    assert {e.n for e in table.entries} == set(budgets)  # every budget measured
    for n in [*budgets, 4 * max(budgets)]:
        choice = auto.choose(Budget(n=n))
        eligible = [e for e in table.entries if e.n <= n]
        assert choice.entry.accuracy == max(e.accuracy for e in eligible) and choice.entry.n <= n
