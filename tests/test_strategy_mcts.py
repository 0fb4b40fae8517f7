"""MCTS against a hand-computed run, plus rollouts, virtual loss, noise, caps and batching."""

from __future__ import annotations

import math

import pytest
from fakes import FakeClock, FakePolicy, FakePRM, as_json_roundtrip

from prm_plugin.search import Budget, Problem
from prm_plugin.strategies._puct import select, set_priors, ucb
from prm_plugin.strategies.mcts import MCTS
from prm_plugin.tree import SearchTree

TREE = {
    "P:": [("A", 1, "step"), ("B", 1, "step")],
    "P:A\n\n": [("A1", 1, "step"), ("A2", 1, "eos")],
    "P:B\n\n": [("B1", 1, "eos"), ("B2", 1, "eos")],
    "P:A\n\nA1\n\n": [("A1a", 1, "eos"), ("A1b", 1, "eos")],
}
SCORES = {"A": 0.8, "B": 0.2, "A1": 0.9, "A2": 0.5, "A1a": 0.7, "A1b": 0.95, "B1": 0.3, "B2": 0.4}
IDS = {"A": 1, "B": 2, "A1": 3, "A2": 4, "A1a": 5, "A1b": 6}


def problem(prompt: str = "P:") -> Problem:
    return Problem(prompt=prompt, question="q", stop=["</s>"])


def test_four_simulations_match_a_hand_computed_run() -> None:
    """PUCT, c=1, k=2, values = PRM step score (terminal: min over the path).

    sim 1: expand root -> A (v .8), B (v .2); priors .8, .2. root N=2 W=1.0.
    sim 2: root: A .8 + .8*sqrt2/2 = 1.366 > B .2 + .2*sqrt2/2 = .341 -> A; expand A -> A1 (v .9),
           A2 (eos: v = min(.8, .5) = .5); priors .9/1.4, .5/1.4. root N=4 W=2.4; A N=3 W=2.2.
    sim 3: root: A 2.2/3 + .8*2/4 = 1.133 > B .2 + .2*2/2 = .4 -> A;
           A: A1 .9 + (.9/1.4)*sqrt3/2 = 1.457 > A2 .5 + (.5/1.4)*sqrt3/2 = .809 -> A1;
           expand A1 -> A1a (eos, v = .7), A1b (eos, v = min(.8, .9, .95) = .8).
           root N=6 W=3.9; A N=5 W=3.7; A1 N=3 W=2.4.
    sim 4: root: A 3.7/5 + .8*sqrt6/6 = 1.067 > B .2 + .2*sqrt6/2 = .445 -> A;
           A: A1 2.4/3 + (.9/1.4)*sqrt5/4 = 1.159 > A2 .5 + (.5/1.4)*sqrt5/2 = .899 -> A1;
           A1: A1a .7 + (.7/1.65)*sqrt3/2 = 1.067 < A1b .8 + (.95/1.65)*sqrt3/2 = 1.299 -> A1b,
           terminal: back up .8 along root, A, A1, A1b (no policy call).
    Final: most visited A (6) -> A1 (4) -> A1b (2), finished.
    """
    policy, prm = FakePolicy(TREE), FakePRM(SCORES)
    mcts = MCTS(c=1.0, expansion_width=2, simulations=4, aggregation="min")
    [res] = mcts.search([problem()], policy, prm, Budget(n=8))
    nodes = {n["text"] or "root": n for n in res.trace["nodes"]}
    expected = {"root": (7, 4.7), "A": (6, 4.5), "B": (1, 0.2), "A1": (4, 3.2), "A2": (1, 0.5),
                "A1a": (1, 0.7), "A1b": (2, 1.6)}
    for name, (visits, value_sum) in expected.items():
        assert nodes[name]["visits"] == visits, name
        assert nodes[name]["value"] == pytest.approx(value_sum / visits), name
    assert nodes["A"]["prior"] == pytest.approx(0.8) and nodes["A1"]["prior"] == pytest.approx(0.9 / 1.4)
    assert [(s["leaf"], s["terminal"]) for s in res.trace["selections"]] == [
        (0, False), (IDS["A"], False), (IDS["A1"], False), (IDS["A1b"], True)
    ]
    assert res.text == "A\n\nA1\n\nA1b" and res.trace["final_path"] == [1, 3, 6]
    assert [c.prefixes for c in policy.calls] == [("P:",), ("P:A\n\n",), ("P:A\n\nA1\n\n",)]
    assert all(c.n == 2 and c.stop == ("\n\n",) for c in policy.calls)
    assert len(prm.calls) == 3
    # candidates: every finished node (A2, A1a, A1b), the final one marked chosen
    assert [c.node_id for c in res.candidates] == [4, 5, 6] and res.chosen == 2
    assert as_json_roundtrip(res.to_json())["trace"]["simulations"] == 4


def test_best_terminal_takes_the_best_finished_solution() -> None:
    mcts = MCTS(c=1.0, expansion_width=2, simulations=4, final="best_terminal", aggregation="last")
    [res] = mcts.search([problem()], FakePolicy(TREE), FakePRM(SCORES), Budget(n=8))
    # finished: A2 (last .5), A1a (.7), A1b (.95) -> A1b
    assert res.text == "A\n\nA1\n\nA1b"


def test_rollout_values_and_greedy_completion_reuse() -> None:
    """value=rollout: each new unfinished child is rolled out greedily to the end in one
    extra call (n=1, no step stop) and valued by the aggregated score of the rollout."""
    policy, prm = FakePolicy(TREE), FakePRM(SCORES)
    mcts = MCTS(c=1.0, expansion_width=2, simulations=1, value="rollout", aggregation="min")
    [res] = mcts.search([problem()], policy, prm, Budget(n=8))
    expand, roll = policy.calls
    assert (expand.prefixes, expand.n, expand.stop) == (("P:",), 2, ("\n\n",))
    assert (roll.prefixes, roll.n, roll.stop, roll.temperature) == (("P:A\n\n", "P:B\n\n"), 1, (), 0.0)
    nodes = {n["text"]: n for n in res.trace["nodes"]}
    # greedy rollouts: A -> A1 -> A1a (min .7); B -> B1 (min .2)
    assert nodes["A"]["value"] == pytest.approx(0.7) and nodes["B"]["value"] == pytest.approx(0.2)
    assert nodes["A1"]["role"] == "rollout" and nodes["A1a"]["role"] == "rollout"
    # final: A (tie on visits, higher value), unfinished -> its greedy rollout is reused, no new call
    assert len(policy.calls) == 2 and res.text == "A\n\nA1\n\nA1a"
    assert len(prm.calls) == 1 and [q.steps for q in prm.calls[0]] == [("A", "A1", "A1a"), ("B", "B1")]


def test_an_unfinished_most_visited_path_is_completed_greedily() -> None:
    policy, prm = FakePolicy(TREE), FakePRM(SCORES)
    [res] = MCTS(expansion_width=2, simulations=1).search([problem()], policy, prm, Budget(n=8))
    last = policy.calls[-1]
    assert (last.prefixes, last.n, last.stop, last.temperature) == (("P:A\n\n",), 1, (), 0.0)
    assert res.text == "A\n\nA1\n\nA1a" and res.candidates[res.chosen].finished
    assert len(prm.calls) == 2  # expansion, then the completion


def test_virtual_loss_spreads_leaves_and_rounds_are_batched_across_trees() -> None:
    tree = {**TREE, **{"R:" + k[2:]: v for k, v in TREE.items()}}
    policy, prm = FakePolicy(tree), FakePRM(SCORES)
    mcts = MCTS(c=1.0, expansion_width=2, simulations=3, leaves_per_tree=2, virtual_loss=1.0)
    mcts.search([problem("P:"), problem("R:")], policy, prm, Budget(n=8))
    # round 1: only the root is a leaf in each tree; round 2: A, then B thanks to virtual loss
    # (A: (.8 - 1)/2 + .8*sqrt3/3 = .362 < B: .2 + .2*sqrt3/2 = .373)
    assert [c.prefixes for c in policy.calls[:2]] == [
        ("P:", "R:"), ("P:A\n\n", "P:B\n\n", "R:A\n\n", "R:B\n\n")
    ]
    assert [len(c) for c in prm.calls[:2]] == [4, 8]


def test_select_and_ucb_follow_the_formulas() -> None:
    tree = SearchTree(problem(), "\n\n")
    a, _ = tree.add(0, "A")
    b, _ = tree.add(0, "B")
    a.score, b.score = 0.75, 0.25
    set_priors(tree, 0)
    assert (a.prior, b.prior) == (0.75, 0.25)
    a.visits, a.value_sum, b.visits, b.value_sum, tree.root.visits = 3, 1.5, 1, 0.4, 4
    assert ucb(a, 4, "uct", 2.0) == pytest.approx(0.5 + 2 * math.sqrt(math.log(4) / 3))
    assert ucb(b, 4, "puct", 2.0) == pytest.approx(0.4 + 2 * 0.25 * 2 / 2)
    # UCT, c=2: A .5 + 2 sqrt(ln4/3) = 1.860 < B .4 + 2 sqrt(ln4/1) = 2.755 -> B (exploration)
    assert select(tree, {}, "uct", 2.0, 0.0, lambda k: False) == [0, 2]
    # c=0 is greedy on Q: A .5 > B .4
    assert select(tree, {}, "puct", 0.0, 0.0, lambda k: False) == [0, 1]
    # a pending visit on A with virtual loss 1: Q_A = (1.5 - 1) / 4 = .125 < .4 -> B
    assert select(tree, {1: 1}, "puct", 0.0, 1.0, lambda k: False) == [0, 2]


def test_simulations_default_to_n_over_expansion_width() -> None:
    [res] = MCTS(expansion_width=2).search([problem()], FakePolicy(TREE), FakePRM(SCORES), Budget(n=7))
    assert res.trace["simulations"] == 4  # ceil(7 / 2)


def test_dirichlet_noise_perturbs_root_priors_reproducibly() -> None:
    def root_priors(seed: int, eps: float) -> list[float]:
        mcts = MCTS(expansion_width=2, simulations=1, dirichlet_epsilon=eps, seed=seed)
        [res] = mcts.search([problem()], FakePolicy(TREE), FakePRM(SCORES), Budget(n=2))
        return [n["prior"] for n in res.trace["nodes"] if n["parent"] == 0]

    plain = root_priors(0, 0.0)
    assert plain == pytest.approx([0.8, 0.2])
    noisy = root_priors(0, 0.5)
    assert sum(noisy) == pytest.approx(1.0) and noisy != pytest.approx(plain)
    assert all(0.4 <= p <= 0.9 for p in noisy[:1])  # (1 - .5) * .8 + .5 * eta, eta in [0, 1]
    assert root_priors(0, 0.5) == noisy and root_priors(1, 0.5) != noisy


def test_max_policy_tokens_returns_the_best_finished_so_far_without_completing() -> None:
    policy = FakePolicy(TREE)
    [res] = MCTS(expansion_width=2, simulations=10).search(
        [problem()], policy, FakePRM(SCORES), Budget(n=8, max_policy_tokens=3))
    # round 1 generates 2 tokens (< 3), round 2 another 2: 4 >= 3, stop
    assert len(policy.calls) == 2 and res.cost.policy_generated_tokens == 4
    assert res.cost.stopped_by == "max_policy_tokens"
    # most visited path A -> A1 is unfinished; the best finished node so far is A2
    assert res.text == "A\n\nA2"


def test_max_seconds_with_nothing_finished_returns_the_unfinished_path() -> None:
    clock = FakeClock()
    mcts = MCTS(expansion_width=2, simulations=10)
    mcts.clock = clock
    policy = FakePolicy(TREE, clock=clock, seconds_per_call=1.0)
    [res] = mcts.search([problem()], policy, FakePRM(SCORES), Budget(n=8, max_seconds=1.0))
    assert len(policy.calls) == 1 and res.cost.stopped_by == "max_seconds"
    assert res.text == "A" and not res.candidates[res.chosen].finished


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"selection": "ucb1"}, "selection.*one of puct, uct"),
    ({"expansion_width": 0}, "expansion_width must be >= 1"),
    ({"simulations": 0}, r"simulations must be >= 1, or None for ceil\(n / expansion_width\)"),
    ({"dirichlet_epsilon": 1.5}, r"dirichlet_epsilon must be in \[0, 1\]"),
    ({"dirichlet_epsilon": 0.25, "selection": "uct"}, "set selection=puct or dirichlet_epsilon=0"),
    ({"c": -1}, "c and virtual_loss must be >= 0"),
])
def test_mcts_params_are_validated_with_fixes(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MCTS(**kwargs)  # through params_from_kwargs
    with pytest.raises(ValueError, match=message):
        MCTS.Params(**kwargs)  # the dataclass itself
