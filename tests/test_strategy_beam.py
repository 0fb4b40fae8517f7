"""Beam search on a known tree: survivors, completion, dedup, lookahead, caps, batching."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakePolicy, FakePRM, as_json_roundtrip

from prm_plugin.prm.base import aggregate
from prm_plugin.search import Budget, Problem
from prm_plugin.strategies.beam import BeamSearch

# n=4, m=2: the prompt gets 4 children, 2 survive, each gets 2 children, ...
TREE = {
    "P:": [("a", 1, "step"), ("b", 1, "step"), ("c", 1, "step"), ("d", 1, "step")],
    "P:a\n\n": [("a1", 1, "step"), ("a2", 1, "eos")],
    "P:d\n\n": [("d1", 1, "step"), ("d2", 1, "eos")],
    "P:a\n\na1\n\n": [("a1x", 1, "eos"), ("a1x", 1, "eos")],  # a duplicate pair
    "P:d\n\nd1\n\n": [("d1x", 1, "eos"), ("d1y", 1, "eos")],
}
SCORES = {"a": 0.9, "b": 0.4, "c": 0.7, "d": 0.8, "a1": 0.3, "a2": 0.95, "d1": 0.85, "d2": 0.6,
          "a1x": 0.9, "d1x": 0.5, "d1y": 0.99}


def problem(prompt: str = "P:") -> Problem:
    return Problem(prompt=prompt, question="q", stop=["</s>"])


def rename(tree: dict, old: str, new: str) -> dict:
    return {new + k[len(old):]: v for k, v in tree.items()}


def path_scores(nodes: list[dict], node_id: int) -> list[float]:
    out = []
    while node_id:
        out.append(nodes[node_id]["score"])
        node_id = nodes[node_id]["parent"]
    return out[::-1]


@pytest.mark.parametrize(("aggregation", "answer"), [("min", "a\n\na2"), ("last", "d\n\nd1\n\nd1y")])
def test_beam_keeps_the_top_survivors_and_picks_the_best_completed(aggregation: str, answer: str) -> None:
    policy, prm = FakePolicy(TREE), FakePRM(SCORES)
    [res] = BeamSearch(beam_width=2, aggregation=aggregation).search([problem()], policy, prm, Budget(n=4))
    assert res.text == answer
    rounds, nodes = res.trace["rounds"], res.trace["nodes"]
    # ids: a b c d = 1..4; a1 a2 d1 d2 = 5..8; d1x d1y = 9, 10; a1x = 11 (its twin is dropped)
    assert [r["kept"] for r in rounds] == [[1, 4], [7, 5], []]
    assert [r["completed"] for r in rounds] == [[], [6, 8], [9, 10, 11]]
    assert rounds[2]["children"] == [9, 10, 11]
    for r in rounds:  # survivors are exactly the top n/m unfinished children by aggregated score
        active = [c for c in r["children"] if not nodes[c]["finished"]]
        ranked = sorted(active, key=lambda c: (-aggregate(path_scores(nodes, c), aggregation), c))
        assert r["kept"] == ranked[:2]
    assert [(c.prefixes, c.n, c.stop, c.final_stop) for c in policy.calls] == [
        (("P:",), 4, ("\n\n",), ("</s>",)),
        (("P:a\n\n", "P:d\n\n"), 2, ("\n\n",), ("</s>",)),
        (("P:d\n\nd1\n\n", "P:a\n\na1\n\n"), 2, ("\n\n",), ("</s>",)),
    ]
    assert len(prm.calls) == 3
    assert [c.node_id for c in res.candidates] == [6, 8, 9, 10, 11]
    assert all(c.finished for c in res.candidates)
    assert as_json_roundtrip(res.to_json())["trace"]["rounds"] == rounds


def test_beam_cost_with_a_caching_prm_has_prm_tokens_equal_to_unique_tokens() -> None:
    prm = FakePRM(SCORES, cache=True)
    [res] = BeamSearch(beam_width=2).search([problem()], FakePolicy(TREE), prm, Budget(n=4))
    cost = res.cost
    assert cost.prm_tokens == cost.unique_tokens  # every node scored once, prefixes cached
    # question (1) + each of the 11 nodes' step + 1 separator
    assert cost.unique_tokens == 1 + sum(len(s) + 1 for s in ["a", "b", "c", "d", "a1", "a2", "d1", "d2",
                                                               "d1x", "d1y", "a1x"])
    # prompt "P:" + the extended nodes a, d, d1, a1 each with the delimiter
    assert cost.unique_prompt_tokens == 2 + 3 + 3 + 4 + 4
    assert cost.policy_generated_tokens == 4 + 4 + 4 and cost.policy_prefill_tokens == 2 + 5 + 5 + 9 + 9
    assert (cost.policy_calls, cost.prm_calls) == (3, 3)


def test_beam_advances_all_problems_in_the_same_calls_and_matches_solo_runs() -> None:
    tree = {**TREE, **rename(TREE, "P:", "R:")}
    policy, prm = FakePolicy(tree), FakePRM(SCORES)
    both = BeamSearch(beam_width=2).search([problem("P:"), problem("R:")], policy, prm, Budget(n=4))
    assert len(policy.calls) == 3 and len(prm.calls) == 3
    assert policy.calls[1].prefixes == ("P:a\n\n", "P:d\n\n", "R:a\n\n", "R:d\n\n")
    solo = BeamSearch(beam_width=2).search([problem("R:")], FakePolicy(tree), FakePRM(SCORES), Budget(n=4))
    assert both[1].text == solo[0].text and both[1].trace == solo[0].trace


def test_lookahead_scores_children_by_their_greedy_continuation() -> None:
    tree = {"P:": [("x", 1, "step"), ("y", 1, "step")],
            "P:x\n\n": [("x2", 1, "step")], "P:y\n\n": [("y2", 1, "step")]}
    prm = FakePRM({"x": 0.5, "y": 0.6, "x2": 0.9, "y2": 0.1})
    plain = BeamSearch(beam_width=2, max_steps=1, aggregation="last")
    [res] = plain.search([problem()], FakePolicy(tree), prm, Budget(n=2))
    assert res.trace["rounds"][0]["kept"] == [2] and res.text == "y"
    policy, prm = FakePolicy(tree), FakePRM({"x": 0.5, "y": 0.6, "x2": 0.9, "y2": 0.1})
    ahead = BeamSearch(beam_width=2, max_steps=1, aggregation="last", lookahead=1)
    [res] = ahead.search([problem()], policy, prm, Budget(n=2))
    assert res.trace["rounds"][0]["kept"] == [1] and res.text == "x"
    look = policy.calls[1]
    assert (look.prefixes, look.n, look.temperature) == (("P:x\n\n", "P:y\n\n"), 1, 0.0)
    assert [q.steps for q in prm.calls[0]] == [("x", "x2"), ("y", "y2")]
    assert [n["role"] for n in res.trace["nodes"]] == ["step", "step", "step", "lookahead", "lookahead"]
    # the answer is the survivor itself, scored on its own steps
    assert res.candidates[res.chosen].score == 0.5 and not res.candidates[res.chosen].finished


def test_max_policy_tokens_stops_after_the_round_that_reaches_it() -> None:
    policy = FakePolicy(TREE)
    [res] = BeamSearch(beam_width=2).search([problem()], policy, FakePRM(SCORES),
                                            Budget(n=4, max_policy_tokens=5))
    # round 1 generates 4 (< 5), round 2 another 4: 8 >= 5, no third round
    assert len(policy.calls) == 2 and res.cost.policy_generated_tokens == 8
    assert res.cost.stopped_by == "max_policy_tokens"
    assert res.text == "a\n\na2"  # best completed so far
    assert [c.node_id for c in res.candidates] == [6, 8, 7, 5]  # completed, then live beams


def test_max_seconds_stops_with_the_best_active_beam() -> None:
    clock = FakeClock()
    beam = BeamSearch(beam_width=2)
    beam.clock = clock
    policy = FakePolicy(TREE, clock=clock, seconds_per_call=1.0)
    [res] = beam.search([problem()], policy, FakePRM(SCORES), Budget(n=4, max_seconds=1.0))
    assert len(policy.calls) == 1 and res.cost.stopped_by == "max_seconds"
    assert res.text == "a" and not res.candidates[res.chosen].finished
    assert res.cost.seconds == 1.0


def test_max_steps_returns_the_best_unfinished_beam() -> None:
    [res] = BeamSearch(beam_width=2, max_steps=1).search([problem()], FakePolicy(TREE), FakePRM(SCORES),
                                                         Budget(n=4))
    assert res.text == "a" and [c.node_id for c in res.candidates] == [1, 4]
    assert res.cost.stopped_by is None


def test_a_solution_reaching_problem_max_tokens_is_not_extended() -> None:
    tree = {"P:": [("long", 5, "step")], "P:long\n\n": [("more", 1, "eos")]}
    prob = Problem(prompt="P:", question="q", max_tokens=5)
    policy = FakePolicy(tree)
    [res] = BeamSearch(beam_width=1).search([prob], policy, FakePRM({"long": 0.5}), Budget(n=1))
    assert len(policy.calls) == 1 and policy.calls[0].max_tokens == 5
    assert res.text == "long" and res.candidates[0].finished


def test_n_must_be_a_multiple_of_beam_width() -> None:
    with pytest.raises(ValueError, match=r"n=10, beam_width=4\. Use n=12 or n=8"):
        BeamSearch(beam_width=4).search([problem()], FakePolicy(TREE), FakePRM(SCORES), Budget(n=10))
    with pytest.raises(ValueError, match="prm=None"):
        BeamSearch(beam_width=2).search([problem()], FakePolicy(TREE), None, Budget(n=4))
