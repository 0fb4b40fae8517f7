"""examples/paper/: the consensus-labelling script runs on the world; the recipes parse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "examples" / "paper"
sys.path.insert(0, str(PAPER))

import consensus_labels  # noqa: E402


def test_model_specs_parse_and_bad_ones_say_how_to_write_them() -> None:
    assert consensus_labels.parse_model("vllm:Qwen/Qwen2.5-Math-7B@0.7", 1.0) == ("vllm", "Qwen/Qwen2.5-Math-7B", 0.7)
    assert consensus_labels.parse_model("hf:/models/p", 0.5) == ("hf", "/models/p", 0.5)
    with pytest.raises(ValueError, match="BACKEND:PATH"):
        consensus_labels.parse_model("sglang:x", 1.0)
    with pytest.raises(ValueError, match="must be a temperature"):
        consensus_labels.parse_model("hf:/m@hot", 1.0)


def test_a_problems_file_without_the_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"p.jsonl:1: no field 'problem'.*--question-field"):
        consensus_labels.read_problems(path, "problem", "answer", None)
    assert consensus_labels.read_problems(path, "question", "answer", None) == [{"question": "1+1?", "answer": "2"}]


def test_consensus_labels_on_the_world_train_a_stepwise_source(tmp_path: Path) -> None:
    from prm_plugin import world
    from prm_plugin.trainers.data import SourceSpec, load_source

    policy = world.paths()["policy"]
    out = tmp_path / "consensus.jsonl"
    proc = subprocess.run(
        [sys.executable, str(PAPER / "consensus_labels.py"), "--problems", str(world.paths()["arith_val"]),
         "--question-field", "question", "--policy", f"hf:{policy}@0.5", "--annotator", f"hf:{policy}@0.5",
         "--annotator", f"hf:{policy}@1.0", "--samples", "2", "--k", "2", "--limit", "2", "--checker", "world",
         "--max-tokens", "128", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["problems"] == 2 and 1 <= report["solutions"] <= 4
    assert report["kept"] == report["report"]["kept"] and len(report["annotators"]) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == report["kept"]
    for row in rows:
        assert len(row["labels"]) == len(row["completions"]) >= 1
        assert set(row["labels"]) <= {0.0, 1.0}  # --labels hard (the default)
    if rows:  # what the training recipe reads as `format: stepwise`
        data = load_source(SourceSpec(format="stepwise", path=str(out)))
        assert len(data) == len(rows)


@pytest.mark.parametrize("recipe", ["paper/prm_consensus_7b.yaml", "training/qwen2.5-math-1.5b.yaml",
                                    "training/qwen2.5-math-7b.yaml", "training/tiny.yaml"])
def test_the_training_recipes_parse_with_prm_plugin_train(recipe: str) -> None:
    """Every key of a real-model recipe is one ``prm-plugin train`` accepts (its own parser)."""
    from prm_plugin.trainers.cli import _parse, _specs

    path = ROOT / "examples" / recipe
    # bf16 and gradient checkpointing are refused on a machine without a GPU: off for the parse
    data, cfg, _, _ = _parse(["--config", str(path), "--bf16", "false", "--gradient_checkpointing", "false"])
    assert cfg.output_dir and cfg.step_separator == "\n\n"
    sources = yaml.safe_load(path.read_text()).get("sources", [])
    assert [s.format for s in _specs(sources)] == [s["format"] for s in sources]


def test_the_sweep_script_parses_and_names_registered_strategies() -> None:
    from prm_plugin.plugins import list_strategies

    assert subprocess.run(["bash", "-n", str(PAPER / "sweep.sh")]).returncode == 0
    line = next(x for x in (PAPER / "sweep.sh").read_text().splitlines() if x.startswith("STRATEGIES="))
    named = line.split('"')[1].split()
    assert named and set(named) <= set(list_strategies())
