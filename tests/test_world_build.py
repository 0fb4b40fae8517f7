"""The whole world pipeline at tiny scale: rebuild from scratch, load what it wrote."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from prm_plugin.trainers.world.build import SCALES, build_world
from prm_plugin.trainers.world.report import END, START, format_report, update_readme


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("world")
    report = build_world(out, replace(SCALES["tiny"], seed=3), log=lambda *_: None)
    return out, report


def test_tiny_rebuild_writes_loadable_checkpoints_and_sets(tiny_world: tuple[Path, dict]) -> None:
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.prm.load import detect_family
    from prm_plugin.search import PRMQuery
    from prm_plugin.world.generator import Problem

    out, report = tiny_world
    assert detect_family(str(out / "prm")) == "value_head"
    prm = load_prm(str(out / "prm"))  # no argument beyond the path
    assert prm.step_separator == "\n\n"
    scores = prm.score([PRMQuery("Compute 12 + 3 from left to right.", ("12 + 3 = 15", "\\boxed{15}"))])[0]
    assert len(scores.scores) == 2 and all(0.0 <= x <= 1.0 for x in scores.scores)
    from prm_plugin.world.tokenizer import build_tokenizer, chat_prompt

    policy = HFPolicy.from_pretrained(str(out / "policy"))
    prompt = chat_prompt(build_tokenizer(), "Compute 1 + 2 from left to right.")
    group = policy.propose([prompt], n=2, stop=["\n\n"], max_tokens=8, temperature=1.0, seed=0)[0]
    assert len(group) == 2
    rows = [json.loads(line) for line in (out / "arith_test.jsonl").read_text().splitlines()]
    assert len(rows) == SCALES["tiny"].set_sizes["arith_test"]
    assert Problem.from_json(rows[0]).question == rows[0]["question"]
    saved = json.loads((out / "figures.json").read_text())
    assert json.dumps(saved["figures"], sort_keys=True) == json.dumps(report["figures"], sort_keys=True)


def test_tiny_rebuild_reports_every_figure(tiny_world: tuple[Path, dict]) -> None:
    _, report = tiny_world
    f, labels = report["figures"], report["labels"]
    for key in ("greedy", "greedy_first50", "majority@4", "weighted_majority@4", "bon@4", "pass@4",
                "codelike_greedy", "codelike_pass@4"):
        assert 0.0 <= f[key] <= 1.0, key
    assert f["pass@4"] >= f["greedy"] or f["greedy"] == 0.0
    cons = labels["consensus"]
    assert cons["kept"] + cons["dropped"] == cons["total"] == labels["solutions"]
    assert labels["unfiltered"]["solutions"] == labels["solutions"]
    assert labels["filtered"]["solutions"] == cons["kept"]
    assert set(report["timings"]) >= {"policy_s", "labels_s", "prm_s", "eval_s", "total_s"}


def test_report_fills_the_readme_block(tmp_path: Path, tiny_world: tuple[Path, dict]) -> None:
    _, report = tiny_world
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START}\nold\n{END}\n\nafter\n")
    update_readme(readme, format_report(report))
    text = readme.read_text()
    assert "old" not in text and "| greedy |" in text and text.endswith("after\n")
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(ValueError, match="world-figures"):
        update_readme(tmp_path / "bare.md", "x")
