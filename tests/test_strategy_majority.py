"""Majority voting: math-verify grouping, weighting, tie-breaks, no-answer candidates."""

from __future__ import annotations

import pytest
from fakes import FakePolicy, FakePRM

from prm_plugin.search import Budget, Problem
from prm_plugin.strategies.majority import MajorityVote, elect, group_answers

HALF, THREE = r"\boxed{\frac{1}{2}}", r"\boxed{3}"
# Samples in order: 1/2, 3, 0.5, (no answer), 3, \frac12 -> {1/2: 0,2,5} {3: 1,4}, one silent.
TREE = {
    "P:": [
        ("x\n\n" + r"\boxed{1/2}", 3, "eos"), ("so " + THREE, 3, "eos"), (r"\boxed{0.5}", 3, "eos"),
        ("I do not know", 4, "eos"), ("hence " + THREE, 3, "eos"), (HALF, 3, "eos"),
    ],
}


def problem() -> Problem:
    return Problem(prompt="P:", question="What is 1/2?", domain="math")


def test_plain_majority_groups_equivalent_answers() -> None:
    [res] = MajorityVote().search([problem()], FakePolicy(TREE), None, Budget(n=6))
    groups = res.trace["groups"]
    assert [g["members"] for g in groups] == [[0, 2, 5], [1, 4]]
    assert res.trace["no_answer"] == 1 and res.trace["winner"] == 0
    assert res.chosen == 0 and res.text == "x\n\n" + r"\boxed{1/2}"
    assert res.candidates[3].answer is None and res.candidates[2].answer == "0.5"
    assert res.cost.prm_calls == 0


def test_weighted_majority_overturns_the_plain_vote() -> None:
    # The 1/2 group has 3 votes but low scores; the 3 group 2 votes with high scores.
    def scores(question: str, steps: tuple[str, ...]) -> list[float]:
        return [0.9 if "3" in s else 0.2 for s in steps]

    prm = FakePRM(scores)
    [res] = MajorityVote(weighted=True).search([problem()], FakePolicy(TREE), prm, Budget(n=6))
    weights = {tuple(g["members"]): g["weight"] for g in res.trace["groups"]}
    assert weights[(0, 2, 5)] == pytest.approx(0.2 * 3) and weights[(1, 4)] == pytest.approx(1.8)
    assert res.trace["winner"] == 1 and res.chosen == 1  # best-scored member, lowest index on ties
    assert len(prm.calls) == 1


def test_weighted_majority_needs_a_prm() -> None:
    with pytest.raises(ValueError, match=r"Strategy 'majority' \(weighted=True\) needs a PRM, but none was given \(prm=None\).*choose settings"):
        MajorityVote(weighted="true").search([problem()], FakePolicy(TREE), None, Budget(n=2))


def test_ties_go_to_the_group_that_came_first() -> None:
    tree = {"P:": [(THREE, 1, "eos"), (HALF, 1, "eos"), (r"\boxed{0.5}", 1, "eos"), (THREE, 1, "eos")]}
    [res] = MajorityVote().search([problem()], FakePolicy(tree), None, Budget(n=4))
    assert [g["votes"] for g in res.trace["groups"]] == [2, 2]
    assert res.trace["winner"] == 0 and res.chosen == 0


def test_no_extractable_answer_falls_back_to_the_first_candidate() -> None:
    tree = {"P:": [("no idea", 1, "eos"), ("still nothing", 1, "eos")]}
    [res] = MajorityVote().search([problem()], FakePolicy(tree), None, Budget(n=2))
    assert res.trace["groups"] == [] and res.trace["no_answer"] == 2 and res.chosen == 0


def test_group_answers_and_elect_are_pure_and_ordered() -> None:
    answers = ["a", None, "A", "b", "a"]
    groups = group_answers(answers, lambda x, y: x.lower() == y.lower())
    assert groups == [[0, 2, 4], [3]]
    assert elect(groups, [1, 1, 1, 1, 1]) == 0
    assert elect(groups, [0.1, 0, 0.1, 0.5, 0.1]) == 1
    assert elect([], []) is None


def test_code_domain_votes_on_normalised_source() -> None:
    tree = {"P:": [("def f():\n    return 1  # one", 5, "eos"), ("def f():\n    return 2", 5, "eos"),
                   ("def f():\n    return 1", 5, "eos")]}
    prob = Problem(prompt="P:", question="f", domain="code")
    [res] = MajorityVote().search([prob], FakePolicy(tree), None, Budget(n=3))
    assert [g["members"] for g in res.trace["groups"]] == [[0, 2], [1]]
