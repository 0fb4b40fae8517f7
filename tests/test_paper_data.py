"""The data experiment (paper Fig 3 on the world): pure helpers, settings checks, a tiny run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from prm_plugin.trainers.paper.data import DataSettings, data_table, hard_labels, mix_rows


def test_mixture_keeps_the_row_count_and_interleaves_the_sources() -> None:
    a = [{"src": "a", "i": i} for i in range(10)]
    b = [{"src": "b", "i": i} for i in range(10)]
    for total in (2, 7, 10):
        rows = mix_rows(a, b, total)
        assert len(rows) == total
        assert sum(r["src"] == "a" for r in rows) == total - total // 2  # the odd row goes to a
        assert [r["src"] for r in rows[:4]] == ["a", "b", "a", "b"][: min(4, total)]
        assert [r["i"] for r in rows if r["src"] == "b"] == list(range(total // 2))  # b's first rows, in order
    with pytest.raises(ValueError, match="needs 3 \\+ 2 rows, got 10 \\+ 1"):
        mix_rows(a, b[:1], 5)


def test_hard_labels_are_the_first_error_prefix_pattern() -> None:
    # the last step's label comes from the solution's own answer and can be 1 after an error
    assert hard_labels([0.75, 0.0, 0.0, 1.0]) == [1.0, 0.0, 0.0, 0.0]
    assert hard_labels([0.25, 0.5, 1.0]) == [1.0, 1.0, 1.0]
    assert hard_labels([0.0]) == [0.0]


@pytest.mark.parametrize("bad, match", [
    ({"train_rows": 10, "pool": 9}, "train_rows <= pool"),
    ({"train_rows": 1, "pool": 9}, "train_rows <= pool"),
    ({"rollouts": 0}, "rollouts and batch"),
    ({"epochs": 0.0}, "epochs > 0"),
    ({"budgets": ()}, "budgets must be"),
    ({"budgets": (4, 0)}, "budgets must be"),
    ({"limit": 0}, "limit must be"),
])
def test_bad_settings_are_refused_with_the_fix(bad: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DataSettings(**bad)  # type: ignore[arg-type]


def test_every_prm_gets_the_same_steps() -> None:
    assert DataSettings().training.max_steps == 126  # 2000 rows, 2 epochs of batch 32
    assert DataSettings(train_rows=768, pool=960).training.max_steps == 48  # --quick


def test_table_on_fake_results() -> None:
    results = {
        "single": {"training": {"rows": 10, "train_tokens": 1234, "steps": 3},
                   "label_quality": {"step_accuracy": 0.93, "first_error_accuracy": 0.85},
                   "bon": {"4": 0.5, "16": 0.75}, "step_f1": 0.9, "error_step_f1": 0.4},
        "shipped": {"bon": {"4": 0.25}},
    }
    lines = data_table(results, [4, 16]).splitlines()
    assert lines[0] == ("| PRM | train rows / tokens / steps | label step acc / first-error acc | bon@4 | bon@16 "
                        "| step F1 / error F1 |")
    assert lines[2] == "| single | 10 / 1,234 / 3 | 0.930 / 0.850 | 50.0% | 75.0% | 0.900 / 0.400 |"
    assert lines[3] == "| shipped | — | — | 25.0% | — | — |"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: on 2 cores shared with other jobs, two threads spin against each other
    (the tiny run took 180 s with two, 14 s with one)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_data_run_end_to_end(tmp_path: Path, one_thread: None) -> None:
    """Three PRMs of one step on 4 rows, a pool of 8 solutions, one test problem (about 15 s)."""
    pytest.importorskip("matplotlib")
    from prm_plugin.trainers.paper.data import run_data

    settings = DataSettings(train_rows=4, pool=8, rollouts=1, epochs=0.5, batch=4, budgets=(1, 2), limit=1,
                            metric_samples=1, include_truth=False, include_shipped=False)
    report = run_data(tmp_path, settings, log=lambda *_: None)
    doc = json.loads((tmp_path / "data.json").read_text())
    assert (tmp_path / "data.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["table"] == report["table"] and doc["settings"]["train_rows"] == 4
    assert set(doc["results"]) == {"single", "consensus", "mixture"}
    for name, res in doc["results"].items():
        assert (tmp_path / "prms" / name / "config.json").is_file()
        assert res["training"]["steps"] == 1 and res["training"]["train_tokens"] > 0
        assert set(res["bon"]) == {"1", "2"} and all(0.0 <= a <= 1.0 for a in res["bon"].values())
        assert 0.0 <= res["step_f1"] <= 1.0 and res["metrics"]["n_rows"] >= 1
        q = res["label_quality"]
        assert 0.0 <= q["step_accuracy"] <= 1.0 and q["solutions"] == res["training"]["rows"]
        assert 0.0 <= q["labelled_wrong_share"] <= 1.0 and 0.0 <= q["truly_wrong_share"] <= 1.0
        saved = [json.loads(line) for line in (tmp_path / "rows" / f"{name}.jsonl").open()]
        assert len(saved) == res["training"]["rows"] and all(set(r) == {"prompt", "completions", "labels"}
                                                            for r in saved)
    assert doc["results"]["single"]["training"]["rows"] == doc["results"]["mixture"]["training"]["rows"] == 4
    assert 1 <= doc["results"]["consensus"]["training"]["rows"] <= 4
    assert doc["consensus"]["total"] == doc["label_pool"] <= 8 and "dropped_indices" not in doc["consensus"]
    # both annotators rolled out; the mixture's true half is never wrong
    assert all(c["rollouts"] > 0 and c["generated_tokens"] > 0 for c in doc["annotator_cost"].values())
    assert doc["results"]["mixture"]["label_quality"]["false_correct"] <= doc["results"]["single"]["label_quality"][
        "false_correct"]
    assert len(report["table"].splitlines()) == 2 + 3


def test_data_is_registered() -> None:
    from prm_plugin.trainers.paper.cli import EXPERIMENTS

    assert EXPERIMENTS["data"][0] == "data" and "Fig 3" in EXPERIMENTS["data"][1]
