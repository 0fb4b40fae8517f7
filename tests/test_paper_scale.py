"""The scale experiment (paper Figs 1-2 on the world): take-off, gains, table, a tiny run, the CLI entry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from prm_plugin.trainers.paper.scale import ScaleSettings, gains, scale_table, take_off


def test_take_off_is_where_the_curve_stays_past_halfway() -> None:
    curve = [(0, 0.2), (4, 0.25), (8, 0.5), (12, 0.7), (16, 0.8)]
    assert take_off(curve) == 12  # halfway is 0.5; 0.5 itself does not exceed it
    assert take_off(curve, fraction=0.25) == 8
    assert take_off([(0, 0.0), (2, 1.0)]) == 2


def test_take_off_after_a_dip() -> None:
    # a fresh head can start above the bar by luck and fall to the floor before it learns
    assert take_off([(0, 0.6), (4, 0.1), (8, 0.9), (12, 0.95)]) == 8
    assert take_off([(0, 0.6), (4, 0.0), (8, 0.5), (12, 0.8)], start=0.0) == 8  # not 0
    assert take_off([(0, 0.1), (4, 0.9), (8, 0.3), (12, 0.8)]) == 12  # it fell back below


def test_take_off_from_a_given_start() -> None:
    # step F1 of a head that calls every step correct is high; learning starts above it
    curve = [(0, 0.2), (4, 0.87), (8, 0.87), (12, 0.91), (16, 0.93)]
    assert take_off(curve) == 4  # from the first point: just the collapse onto the majority class
    assert take_off(curve, start=0.87) == 12
    assert take_off(curve, start=0.92) is None  # ends less than min_rise above the start


def test_curves_that_never_take_off() -> None:
    assert take_off([(0, 0.5), (4, 0.5), (8, 0.5)]) is None  # flat
    assert take_off([(0, 0.8), (4, 0.9), (8, 0.6)]) is None  # ends below its start
    assert take_off([(0, 0.5), (4, 0.51)]) is None  # a rise smaller than min_rise
    assert take_off([(0, 0.5), (4, 0.51)], min_rise=0.0) == 4
    assert take_off([]) is None


def test_take_off_counts_nan_as_zero() -> None:
    assert take_off([(0, math.nan), (4, 0.2), (8, 0.9)]) == 8
    assert take_off([(0, 0.3), (4, 0.2), (8, 0.9)], start=math.nan) == 8  # an F1 with nothing to count


def test_gains_per_doubling_and_the_table() -> None:
    sizes = [{"name": "1 layer", "parameters": 1000, "bon": 0.5, "step_f1": 0.9, "error_step_f1": 0.4,
              "take_off": {"step_f1": 8, "error_step_f1": 12}, "final": {"step_f1": 0.95, "error_step_f1": 0.5}},
             {"name": "2 layers", "parameters": 4000, "bon": 0.7, "step_f1": 0.95, "error_step_f1": 0.6,
              "take_off": {"step_f1": None, "error_step_f1": 4}, "final": {"step_f1": 0.97, "error_step_f1": 0.7}}]
    assert gains(sizes, "bon") == [0.1]  # +0.2 over two doublings
    lines = scale_table(sizes, 8).splitlines()
    assert lines[0].startswith("| PRM backbone | parameters | arith bon@8 |")
    assert lines[3] == "| 2 layers | 4,000 | 70.0% | 0.950 / 0.600 | 0.970 / 0.700 | never / 4 |"


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="increasing"):
        ScaleSettings(layers=(2, 1))
    with pytest.raises(ValueError, match="at least 1"):
        ScaleSettings(eval_every=0)
    assert ScaleSettings().training.max_steps == 128  # 2048 rows, two epochs of batch 32


def test_tiny_scale_run_end_to_end(tmp_path: Path) -> None:
    """Three PRMs of three training steps each, one test problem: JSON and PNG written
    (about 35 s on 2 shared CPU cores)."""
    pytest.importorskip("matplotlib")
    from prm_plugin.trainers.paper.scale import run_scale

    settings = ScaleSettings(train_rows=12, batch=4, epochs=1.0, eval_every=2, eval_rows=8, n=2, limit=1,
                             metric_samples=1)
    report = run_scale(tmp_path, settings, log=lambda *_: None)
    doc = json.loads((tmp_path / "scale.json").read_text())
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["table"] == report["table"] and len(doc["table"].splitlines()) == 5
    assert [s["layers"] for s in doc["results"]] == [1, 2, 4]
    params = [s["parameters"] for s in doc["results"]]
    assert params == sorted(set(params))  # strictly increasing
    for size in doc["results"]:
        assert size["training"]["steps"] == 3 and size["training"]["rows"] == 12
        # before training, every eval_every steps, and the last step off the grid
        assert [p["step"] for p in size["curve"]] == [0, 2, 3]
        for point in size["curve"]:
            assert all(0.0 <= point[m] <= 1.0 for m in ("step_f1", "error_step_f1"))
        assert 0.0 <= size["bon"] <= 1.0 and size["metrics"]["n_rows"] >= 1
        assert set(size["take_off"]) == set(size["take_off_from_first_point"]) == {"step_f1", "error_step_f1"}
        assert (tmp_path / "prms" / str(size["layers"]) / "config.json").is_file()
    cut = json.loads((tmp_path / "backbones" / "1" / "config.json").read_text())
    assert cut["num_hidden_layers"] == 1
    assert set(doc["gains_per_doubling"]) == {"bon", "step_f1", "error_step_f1"}
    assert doc["problems"] == 1 and doc["eval_rows"] == 8
    assert set(doc["held_out_all_correct"]) == {"step_f1", "error_step_f1"}


def test_scale_is_registered() -> None:
    from prm_plugin.trainers.paper.cli import EXPERIMENTS

    assert EXPERIMENTS["scale"][0] == "scale"
