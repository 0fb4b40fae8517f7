"""The strategies on the shipped world (real tiny policy and PRM, the 300 validation problems, fixed
seeds): search with the PRM must actually beat greedy decoding."""

from __future__ import annotations

from typing import Any

import pytest

from prm_plugin import world

pytestmark = pytest.mark.skipif(
    not (world.paths()["prm"] / "config.json").exists(), reason="the world has not been built"
)
N_PROBLEMS, SEED = 300, 1234


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.tokenizer import build_tokenizer

    problems = world.load_set("arith_val")[:N_PROBLEMS]  # not the set the README figures use
    return {
        "problems": problems,
        "search": search_problems(build_tokenizer(), problems),
        "policy": HFPolicy.from_pretrained(str(world.paths()["policy"])),
        "prm": load_prm(str(world.paths()["prm"])),
        "acc": {},
    }


def _accuracy(setup: dict[str, Any], key: str, name: str, n: int, prm: bool, **params: Any) -> float:
    from prm_plugin.world.evaluate import strategy_accuracy

    if key not in setup["acc"]:
        setup["acc"][key] = strategy_accuracy(name, setup["problems"], setup["search"], setup["policy"],
                                              setup["prm"] if prm else None, n, batch=50, seed=SEED, **params)
    return float(setup["acc"][key])


def test_bon_and_beam_at_16_beat_greedy_by_ten_points(setup: dict[str, Any]) -> None:
    greedy = _accuracy(setup, "greedy", "greedy", 1, False)
    bon = _accuracy(setup, "bon", "bon", 16, True, temperature=0.5)
    beam = _accuracy(setup, "beam", "beam", 16, True, temperature=0.5, beam_width=4)
    assert bon >= greedy + 0.10, (greedy, bon)
    assert beam >= greedy + 0.10, (greedy, beam)


def test_mcts_at_a_comparable_budget_beats_greedy(setup: dict[str, Any]) -> None:
    greedy = _accuracy(setup, "greedy", "greedy", 1, False)
    mcts = _accuracy(setup, "mcts", "mcts", 16, True, temperature=0.5, expansion_width=4)
    assert mcts > greedy, (greedy, mcts)


def test_weighted_majority_is_at_least_plain_majority(setup: dict[str, Any]) -> None:
    plain = _accuracy(setup, "majority", "majority", 16, False, temperature=0.5)
    weighted = _accuracy(setup, "weighted", "majority", 16, True, temperature=0.5, weighted=True)
    assert weighted >= plain, (plain, weighted)
