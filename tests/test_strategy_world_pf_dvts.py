"""Particle filtering and DVTS on the shipped world (real tiny policy and PRM, 200 validation
problems, temperature 0.5, fixed seed): each must beat greedy decoding by ten points at n = 16.
They run in the normal suite (a few minutes on 2 CPU cores)."""

from __future__ import annotations

from typing import Any

import pytest

from prm_plugin import world

pytestmark = [
    pytest.mark.skipif(not (world.paths()["prm"] / "config.json").exists(), reason="the world has not been built"),
    pytest.mark.slow,
]
N_PROBLEMS, SEED, BATCH = 200, 1234, 50


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.tokenizer import build_tokenizer

    problems = world.load_set("arith_val")[:N_PROBLEMS]
    return {
        "problems": problems,
        "search": search_problems(build_tokenizer(), problems),
        # 512 rows per decode: twice as fast on CPU as the default, same samples (private row streams)
        "policy": HFPolicy.from_pretrained(str(world.paths()["policy"]), batch_size=512),
        "prm": load_prm(str(world.paths()["prm"])),
        "acc": {},
    }


def _accuracy(setup: dict[str, Any], name: str, n: int, **params: Any) -> float:
    from prm_plugin.world.evaluate import strategy_accuracy

    if name not in setup["acc"]:
        prm = None if name == "greedy" else setup["prm"]
        setup["acc"][name] = strategy_accuracy(name, setup["problems"], setup["search"], setup["policy"], prm, n,
                                               batch=BATCH, seed=SEED, **params)
    return float(setup["acc"][name])


@pytest.mark.parametrize("name", ["particle_filter", "dvts"])
def test_at_16_beats_greedy_by_ten_points(setup: dict[str, Any], name: str) -> None:
    from prm_plugin.world.evaluate import SAMPLE_TEMPERATURE

    greedy = _accuracy(setup, "greedy", 1)
    searched = _accuracy(setup, name, 16, temperature=SAMPLE_TEMPERATURE)
    print(f"{name}@16 {searched:.3f}, greedy {greedy:.3f} on {N_PROBLEMS} arith_val problems")  # pytest -rP
    assert searched >= greedy + 0.10, (name, greedy, searched)
