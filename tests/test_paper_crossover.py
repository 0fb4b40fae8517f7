"""The crossover computation of the budget experiment, on hand-written curves."""

from __future__ import annotations

import math

import pytest

from prm_plugin.trainers.paper.budgets import crossover_report, curve, markdown
from prm_plugin.trainers.paper.crossover import crossings, interpolate


def test_interpolation_is_linear_in_log_x() -> None:
    assert interpolate([(10, 0.2), (1000, 0.6)], 100) == pytest.approx(0.4)
    assert interpolate([(1000, 0.6), (10, 0.2)], 10) == pytest.approx(0.2)  # unsorted input
    with pytest.raises(ValueError, match="outside"):
        interpolate([(10, 0.2), (1000, 0.6)], 5)


def test_a_crossing_is_found_between_measured_points() -> None:
    # challenger 0.2 -> 0.8, incumbent flat 0.5 from 10 to 1000 tokens: equal at log-midpoint 100
    res = crossings([(10, 0.2), (1000, 0.8)], [(10, 0.5), (1000, 0.5)])
    assert res["overtakes"] == [pytest.approx(100.0, rel=1e-4)]
    assert res["summary"].startswith("overtakes at x=100")
    assert res["overlap"] == [10, 1000]


def test_crossing_uses_the_breakpoints_of_both_curves() -> None:
    # incumbent has a kink at 100 (0.5 -> 0.9); challenger linear 0.3 -> 0.7 on [10, 1000]
    # diff at 10: -0.2; at 100: 0.5 - 0.9 = -0.4; at 1000: 0.7 - 0.9 = -0.2: never ahead
    res = crossings([(10, 0.3), (1000, 0.7)], [(10, 0.5), (100, 0.9), (1000, 0.9)])
    assert res["overtakes"] == [] and res["summary"] == "none in range (never ahead)"
    # the challenger's own kink: 0.3 at 10, 0.9 at 100 -> diff at 100 is 0.0, at 1000 +0.0 ... use 0.95
    res = crossings([(10, 0.3), (100, 0.6), (1000, 0.95)], [(10, 0.5), (1000, 0.9)])
    # diff: -0.2 at 10, 0.6 - 0.7 = -0.1 at 100, +0.05 at 1000: root 2/3 of the way from 100 to 1000 in log
    assert res["overtakes"] == [pytest.approx(10 ** (2 + 2 / 3), rel=1e-4)]


def test_no_crossing_in_range() -> None:
    res = crossings([(100, 0.9), (1000, 0.95)], [(100, 0.8), (1000, 0.85)])
    assert res["overtakes"] == [] and res["summary"] == "none in range (never behind)"
    res = crossings([(10, 0.9), (100, 0.95)], [(200, 0.5), (400, 0.6)])
    assert res == {"overlap": None, "overtakes": [], "falls_behind": [], "summary": "no overlap"}
    # ahead, then behind: the reverse crossing, no overtaking
    res = crossings([(10, 0.6), (1000, 0.6)], [(10, 0.4), (1000, 0.8)])
    assert res["overtakes"] == [] and res["falls_behind"] == [pytest.approx(100.0, rel=1e-4)]
    assert res["summary"].startswith("none in range (falls behind")


def test_ties() -> None:
    same = [(10, 0.5), (100, 0.6), (1000, 0.7)]
    assert crossings(same, same)["summary"] == "none in range (tied throughout)"
    # behind, tied over [100, 300], then ahead: overtakes where the tie began
    res = crossings([(10, 0.4), (100, 0.5), (300, 0.5), (1000, 0.7)], [(10, 0.5), (1000, 0.5)])
    assert res["overtakes"] == [100]
    # a touch (behind, tied at one point, behind) is no crossing
    res = crossings([(10, 0.4), (100, 0.5), (1000, 0.4)], [(10, 0.5), (1000, 0.5)])
    assert res["overtakes"] == [] and res["falls_behind"] == []


ROWS = [
    {"strategy": s, "budget": n, "accuracy": a, "generated_tokens": t, "seconds_per_problem": sec}
    for s, n, a, t, sec in [
        ("bon", 4, 0.60, 200, 0.02), ("bon", 16, 0.70, 800, 0.08), ("bon", 64, 0.75, 3200, 0.3),
        ("mcts", 4, 0.40, 80, 0.03), ("mcts", 16, 0.68, 300, 0.06), ("mcts", 64, 0.85, 1200, 0.2),
    ]
]


def test_crossover_report_on_every_axis() -> None:
    rep = crossover_report(ROWS)
    assert set(rep) == {"mcts"}
    tokens = rep["mcts"]["generated_tokens"]
    assert tokens["overlap"] == [200, 1200]
    # by hand, linear in log tokens: mcts at 200 is 0.40 + 0.28 * log(200/80)/log(300/80) = 0.594,
    # behind bon's 0.60; at 300 mcts 0.68 against bon 0.60 + 0.1 * log(300/200)/log(4) = 0.629
    d200 = 0.40 + 0.28 * math.log(200 / 80) / math.log(300 / 80) - 0.60
    d300 = 0.68 - (0.60 + 0.1 * math.log(1.5) / math.log(4))
    root = math.exp(math.log(200) + d200 / (d200 - d300) * math.log(1.5))
    assert tokens["overtakes"] == [pytest.approx(root, rel=1e-4)] and 200 < root < 300
    budget = rep["mcts"]["budget"]  # same n: -0.20, -0.02, +0.10 -> between 16 and 64
    assert budget["overtakes"] == [pytest.approx(16 * 4 ** (0.02 / 0.12), rel=1e-4)]
    assert curve(ROWS, "mcts", "budget") == [(4.0, 0.4), (16.0, 0.68), (64.0, 0.85)]
    assert "| mcts | 40.0% / 80 / 0.030 |" in markdown(ROWS)
