"""The transfer experiment (paper Table 1 on the world): table, training rows, a tiny run, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prm_plugin.trainers.paper.transfer import TransferSettings, training_rows, transfer_table
from prm_plugin.world.generator import Problem


def test_table_assembly_on_fake_results() -> None:
    results = {
        "arith": {"trained_on": "arith", "arith": {"bon": 0.9, "beam": 0.85, "step_f1": 0.95},
                  "codelike": {"bon": 0.6, "beam": 0.55, "step_f1": 0.4, "error_step_f1": 0.125}},
        "shipped": {"trained_on": "arith (MC labels)", "arith": {"bon": 0.875, "beam": 0.8, "step_f1": 0.9671}},
    }
    lines = transfer_table(results, 16).splitlines()
    assert lines[0].startswith("| PRM | trained on | arith bon@16 | arith beam@16 | arith step F1 / error F1 |")
    assert lines[2] == "| arith | arith | 90.0% | 85.0% | 0.950 | 60.0% | 55.0% | 0.400 / 0.125 |"
    assert lines[3] == "| shipped | arith (MC labels) | 87.5% | 80.0% | 0.967 | — | — | — |"
    assert len(lines) == 4


def test_training_rows_split_equally_with_true_labels() -> None:
    both = training_rows(("arith", "codelike"), 11, seed=0, exclude=set())
    assert len(both) == 11
    domains = ["print(" in r["completions"][-1] for r in both]
    assert sum(domains) == 5 and domains[:4] == [False, True, False, True]  # interleaved, 6 + 5
    arith = training_rows(("arith",), 6, seed=0, exclude=set())
    assert all(r["completions"][-1].startswith("The answer is") for r in arith)
    # labels are prefix correctness: once false, false to the end; some rows carry an error
    for r in both:
        assert len(r["labels"]) == len(r["completions"])
        assert r["labels"] == sorted(r["labels"], reverse=True)
    assert any(0.0 in r["labels"] for r in training_rows(("arith",), 60, seed=0, exclude=set()))
    skip = {arith[0]["prompt"]}
    assert skip.isdisjoint(r["prompt"] for r in training_rows(("arith",), 6, seed=0, exclude=skip))


def test_equal_steps_for_every_prm() -> None:
    assert TransferSettings(train_rows=2000, batch=32, epochs=1.0).max_steps == 63
    assert TransferSettings().max_steps == 126  # the full run: 2000 rows, two epochs of batch 32
    assert TransferSettings(train_rows=8, batch=4, epochs=0.5).max_steps == 1


def test_tiny_transfer_run_end_to_end(tmp_path: Path) -> None:
    """Three PRMs of one training step each, one problem per domain: JSON and PNG written
    (about 5 s on 2 idle CPU cores)."""
    pytest.importorskip("matplotlib")
    from prm_plugin.trainers.paper.transfer import run_transfer

    settings = TransferSettings(train_rows=8, batch=4, epochs=0.5, n=4, limit=1, metric_samples=1,
                                include_shipped=False)
    report = run_transfer(tmp_path, settings, log=lambda *_: None)
    doc = json.loads((tmp_path / "transfer.json").read_text())
    assert (tmp_path / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["table"] == report["table"] and "true step labels" in doc["labels"]
    assert set(doc["results"]) == {"arith", "codelike", "both"}
    for name, res in doc["results"].items():
        assert res["training"]["steps"] == 1 and res["training"]["rows"] == 8
        assert (tmp_path / "prms" / name / "config.json").is_file()
        for domain in ("arith", "codelike"):
            assert 0.0 <= res[domain]["bon"] <= 1.0 and 0.0 <= res[domain]["beam"] <= 1.0
            assert res[domain]["metrics"]["n_rows"] >= 1
    assert doc["problems"] == {"arith": 1, "codelike": 1}


def test_unknown_experiment_lists_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    from prm_plugin.cli import main

    assert main(["reproduce", "transfr"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'transfr'" in err and "Did you mean: transfer?" in err
    from prm_plugin.trainers.paper.cli import EXPERIMENTS

    assert "Available: " + ", ".join(EXPERIMENTS) + ", all." in err


def test_limit_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from prm_plugin.cli import main

    assert main(["reproduce", "transfer", "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err


def test_codelike_problems_render_as_programs() -> None:
    p = Problem("x", "codelike", 12, (("+", 3),))
    assert p.question.startswith("What does this program print?")
