"""The budget experiment (paper Figs 4-5 on the world) end to end at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_tiny_budget_run_writes_rows_crossovers_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from prm_plugin.trainers.paper.budgets import BudgetSettings, run_budgets

    settings = BudgetSettings(budgets=(4,), strategies=("bon", "mcts"), mcts_extra=(8,), limit=2, batch=2)
    report = run_budgets(tmp_path, settings, log=lambda *_: None)
    doc = json.loads((tmp_path / "budgets.json").read_text())
    assert (tmp_path / "budgets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [(r["strategy"], r["budget"]) for r in doc["rows"]] == [("bon", 4), ("mcts", 4), ("mcts", 8)]
    assert all(r["generated_tokens"] > 0 and 0.0 <= r["accuracy"] <= 1.0 for r in doc["rows"])
    # MCTS at equal n spends fewer tokens than best-of-N: its tree is smaller
    assert doc["rows"][1]["generated_tokens"] < doc["rows"][0]["generated_tokens"]
    assert set(doc["mcts_vs_bon"]) == {"generated_tokens", "seconds_per_problem", "budget"}
    assert doc["mcts_vs_bon"]["budget"] == report["crossovers_vs_bon"]["mcts"]["budget"]["summary"]
