"""Best-of-N and greedy on a known tree, with the fake policy and PRM."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakePolicy, FakePRM, as_json_roundtrip

from prm_plugin.search import Budget, PRMQuery, Problem
from prm_plugin.strategies.bon import BestOfN
from prm_plugin.strategies.greedy import Greedy

# Sample i takes choice i % 3 at the root, then the only continuation.
TREE = {
    "P:": [("a1", 2, "step"), ("b1", 2, "step"), ("c1", 2, "step")],
    "P:a1\n\n": [("a2", 3, "eos")],
    "P:b1\n\n": [("b2", 3, "final")],
    "P:c1\n\n": [("c2", 3, "eos")],
}
# A = (1.0, 0.5), B = (0.6, 0.6), C = (0.2, 0.9):
# min -> B (.6), last -> C (.9), mean -> A (.75), prod -> A (.5).
SCORES = {"a1": 1.0, "a2": 0.5, "b1": 0.6, "b2": 0.6, "c1": 0.2, "c2": 0.9}


def problem(prompt: str = "P:", **kw: object) -> Problem:
    return Problem(prompt=prompt, question="q" + prompt, stop=["</s>"], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("aggregation", "text"), [
    ("min", "b1\n\nb2"), ("last", "c1\n\nc2"), ("mean", "a1\n\na2"), ("prod", "a1\n\na2"),
])
def test_bon_picks_the_best_aggregated_candidate(aggregation: str, text: str) -> None:
    policy, prm = FakePolicy(TREE), FakePRM(SCORES)
    [res] = BestOfN(aggregation=aggregation).search([problem()], policy, prm, Budget(n=3))
    assert res.text == text
    assert res.candidates[res.chosen].text("\n\n") == text
    assert [c.step_scores for c in res.candidates] == [[1.0, 0.5], [0.6, 0.6], [0.2, 0.9]]
    # one policy call: the prompt, n whole solutions, only the final stops
    [call] = policy.calls
    assert (call.prefixes, call.n, call.stop, call.final_stop) == (("P:",), 3, (), ("</s>",))
    assert len(prm.calls) == 1 and prm.calls[0][0] == PRMQuery("qP:", ("a1", "a2"))
    assert as_json_roundtrip(res.to_json())["chosen"] == res.chosen


def test_bon_breaks_ties_by_lowest_index() -> None:
    prm = FakePRM({"a1": 0.5, "a2": 0.5, "b1": 0.7, "b2": 0.7, "c1": 0.7, "c2": 0.7})
    [res] = BestOfN().search([problem()], FakePolicy(TREE), prm, Budget(n=3))
    assert res.chosen == 1


def test_bon_batches_problems_into_one_call_and_measures_cost() -> None:
    tree = dict(TREE)
    tree.update({k.replace("P:", "R:"): v for k, v in TREE.items()})
    policy, prm = FakePolicy(tree), FakePRM(SCORES)
    results = BestOfN().search([problem("P:"), problem("R:")], policy, prm, Budget(n=3))
    [call] = policy.calls
    assert call.prefixes == ("P:", "R:")
    assert len(prm.calls) == 1 and len(prm.calls[0]) == 6
    cost = results[1].cost
    assert cost.policy_prefill_tokens == 2 and cost.policy_generated_tokens == 15
    # PRM tokens: per query len(question) + sum(len(step) + 1) = 3 + 3 + 3
    assert cost.prm_tokens == 27
    # unique: question (3) + three distinct 2-step paths of 3 + 3 tokens each
    assert cost.unique_tokens == 3 + 3 * 6
    assert cost.unique_prompt_tokens == 2
    assert (cost.policy_calls, cost.prm_calls, cost.stopped_by) == (1, 1, None)


def test_bon_scores_identical_solutions_once() -> None:
    tree = {"P:": [("same", 1, "eos")]}
    policy, prm = FakePolicy(tree), FakePRM({"same": 0.4})
    [res] = BestOfN().search([problem()], policy, prm, Budget(n=4))
    assert len(res.candidates) == 4 and len(prm.calls[0]) == 1
    assert all(c.score == 0.4 for c in res.candidates)


def test_bon_groups_calls_by_final_stop_strings() -> None:
    tree = {"P:": [("x", 1, "final")], "R:": [("y", 1, "final")]}
    policy = FakePolicy(tree)
    p1, p2 = problem("P:"), Problem(prompt="R:", question="r", stop=["###"])
    BestOfN().search([p1, p2], policy, FakePRM({}, default=0.5), Budget(n=2))
    assert sorted((c.prefixes, c.final_stop) for c in policy.calls) == [
        (("P:",), ("</s>",)), (("R:",), ("###",))
    ]


def test_bon_max_policy_tokens_stops_between_calls() -> None:
    policy = FakePolicy(TREE)
    budget = Budget(n=3, max_policy_tokens=5)
    [res] = BestOfN(samples_per_call=1).search([problem()], policy, FakePRM(SCORES), budget)
    # call 1 generates 5 tokens, reaching the cap: no second call
    assert len(policy.calls) == 1 and len(res.candidates) == 1
    assert res.cost.policy_generated_tokens == 5 and res.cost.stopped_by == "max_policy_tokens"
    # each call has its own seed, so the samples differ (a then b); the cap stops at 10 >= 6
    policy = FakePolicy(TREE, rotate_by_seed=True)
    [res] = BestOfN(samples_per_call=1).search([problem()], policy, FakePRM(SCORES),
                                               Budget(n=3, max_policy_tokens=6))
    assert [c.seed for c in policy.calls] == [0, 1]
    assert len(res.candidates) == 2 and res.cost.policy_generated_tokens == 10
    assert res.text == "b1\n\nb2"  # the best of what was sampled (min: .6 > .5)


def test_bon_max_seconds_uses_the_strategy_clock() -> None:
    clock = FakeClock()
    policy = FakePolicy(TREE, clock=clock, seconds_per_call=1.0)
    bon = BestOfN(samples_per_call=1)
    bon.clock = clock
    [res] = bon.search([problem()], policy, FakePRM(SCORES), Budget(n=3, max_seconds=1.5))
    assert len(policy.calls) == 2 and res.cost.stopped_by == "max_seconds"
    assert res.cost.seconds == 2.0


def test_bon_without_prm_says_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"Strategy 'bon' needs a PRM, but none was given \(prm=None\).*strategies without a PRM: greedy, majority"):
        BestOfN().search([problem()], FakePolicy(TREE), None, Budget(n=2))


def test_greedy_takes_the_temperature_zero_path_without_prm() -> None:
    policy, prm = FakePolicy(TREE), FakePRM(SCORES)
    [res] = Greedy().search([problem()], policy, prm, Budget(n=8))
    assert res.text == "a1\n\na2" and res.chosen == 0 and len(res.candidates) == 1
    assert prm.calls == []
    [call] = policy.calls
    assert (call.n, call.temperature, call.stop) == (1, 0.0, ())
    assert res.candidates[0].score is None
    # no PRM: unique tokens in policy tokens (prompt + "a1\n\n" + "a2")
    assert res.cost.unique_tokens == 2 + 4 + 2


def test_greedy_refuses_a_sampling_temperature() -> None:
    with pytest.raises(ValueError, match="greedy decodes at temperature 0.*'bon' or 'majority'"):
        Greedy(temperature=0.7)
