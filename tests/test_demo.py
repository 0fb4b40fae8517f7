"""The README's main command: `prm-plugin demo` on the shipped world."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prm_plugin import world

pytestmark = pytest.mark.skipif(
    not (world.paths()["prm"] / "config.json").exists(), reason="the world has not been built"
)


def test_demo_runs_every_strategy_through_lm_eval(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "prm_plugin.cli", "demo", "--out", str(out), "--limit", "12", "--n", "4"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads((out / "summary.json").read_text())
    assert [r["strategy"] for r in rows] == ["greedy", "majority", "bon", "beam", "mcts"]
    for r in rows:
        results = json.loads((out / f"results_{r['strategy']}.json").read_text())
        assert results["results"]["arith_prm"]["acc,none"] == r["accuracy"]
        assert 0.0 <= r["accuracy"] <= 1.0 and r["problems"] == 12 and r["policy_tokens"] > 0
        assert (r["prm_tokens"] > 0) == (r["strategy"] in ("bon", "beam", "mcts"))
        traces = out / "traces" / r["strategy"] / "arith_prm.traces.jsonl"
        assert len(traces.read_text().splitlines()) == 12
    assert (out / "accuracy_vs_tokens.png").stat().st_size > 1000
    assert "strategy" in proc.stdout and "mcts" in proc.stdout
