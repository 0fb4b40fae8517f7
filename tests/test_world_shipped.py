"""The shipped world: its checkpoints load by path alone, are small, and reproduce
the greedy accuracy the build reported."""

from __future__ import annotations

import json

import pytest

from prm_plugin import world

ASSETS = world.paths()
pytestmark = pytest.mark.skipif(
    not (ASSETS["prm"] / "config.json").exists(), reason="the world has not been built (prm-plugin world build)"
)


def test_shipped_sets_and_checkpoint_sizes() -> None:
    for name in world.SETS:
        problems = world.load_set(name)
        assert len(problems) >= 200
        assert len({p.question for p in problems}) == len(problems)
    for part in ("policy", "prm"):
        weights = list(ASSETS[part].glob("*.safetensors"))
        assert weights and all(w.stat().st_size <= 10 * 2**20 for w in weights)


def test_shipped_checkpoints_reproduce_the_reported_greedy_accuracy() -> None:
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm.load import detect_family
    from prm_plugin.world.evaluate import search_problems, strategy_correct
    from prm_plugin.world.tokenizer import build_tokenizer

    report = json.loads((world.ASSETS / "figures.json").read_text())
    assert detect_family(str(ASSETS["prm"])) == "value_head"
    problems = world.load_set("arith_test")[:50]
    policy = HFPolicy.from_pretrained(str(ASSETS["policy"]))
    correct = strategy_correct("greedy", problems, search_problems(build_tokenizer(), problems), policy, None, 1)
    assert abs(sum(correct) / 50 - report["figures"]["greedy_first50"]) <= 0.04
