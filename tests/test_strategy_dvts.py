"""DVTS on a known tree: independent greedy subtrees, final selection, caps and batching."""

from __future__ import annotations

import pytest
from fakes import FakePolicy, FakePRM, as_json_roundtrip

from prm_plugin.search import Budget, Problem
from prm_plugin.strategies.dvts import DVTS

# n=4, m=2: two subtrees. The k-th copy of a prefix in a call draws choices k*m .. k*m+m-1,
# so subtree 0 gets a, b and subtree 1 gets c, d at the first step.
TREE = {
    "P:": [("a", 1, "step"), ("b", 1, "step"), ("c", 1, "step"), ("d", 1, "step")],
    "P:a\n\n": [("a1", 1, "eos"), ("a2", 1, "eos")],
    "P:c\n\n": [("c1", 1, "eos"), ("c2", 1, "step")],
    "P:c\n\nc2\n\n": [("c2x", 1, "eos"), ("c2y", 1, "eos")],
}
SCORES = {"a": 0.6, "b": 0.4, "c": 0.9, "d": 0.8, "a1": 0.7, "a2": 0.5, "c1": 0.3, "c2": 0.6,
          "c2x": 0.2, "c2y": 0.95}


def problem(prompt: str = "P:") -> Problem:
    return Problem(prompt=prompt, question="q", stop=["</s>"])


def search(tree: dict, scores: dict, n: int = 4, **params: object):
    policy, prm = FakePolicy(tree, distinct_repeats=True), FakePRM(scores)
    [res] = DVTS(subtree_width=2, **params).search([problem()], policy, prm, Budget(n=n))
    return res, policy, prm


def test_each_subtree_keeps_its_own_best_child() -> None:
    res, policy, prm = search(TREE, SCORES)
    # ids: a b c d = 1..4; a1 a2 = 5, 6; c1 c2 = 7, 8; c2x c2y = 9, 10
    walk0, walk1 = res.trace["subtrees"]
    assert [(s["children"], s["kept"]) for s in walk0] == [([1, 2], 1), ([5, 6], 5)]
    assert [(s["children"], s["kept"]) for s in walk1] == [([3, 4], 3), ([7, 8], 8), ([9, 10], 10)]
    assert walk1[1]["scores"] == [0.3, 0.6]  # aggregation "last": the new step's score
    # beam would keep c and d (the two best overall); each subtree keeps its own best instead
    assert [(c.prefixes, c.n) for c in policy.calls] == [
        (("P:", "P:"), 2), (("P:a\n\n", "P:c\n\n"), 2), (("P:c\n\nc2\n\n",), 2),
    ]
    assert len(prm.calls) == 3
    assert res.trace["leaves"] == [5, 10] and [c.node_id for c in res.candidates] == [5, 10]
    assert res.text == "c\n\nc2\n\nc2y"  # 0.95 beats 0.7
    assert res.cost.policy_generated_tokens == 4 + 4 + 2
    assert as_json_roundtrip(res.to_json())["trace"]["subtrees"] == res.trace["subtrees"]


def test_subtrees_are_independent_of_each_others_scores() -> None:
    base, _, _ = search(TREE, SCORES)
    # make subtree 1's children far better than subtree 0's: subtree 0's path must not change
    changed, _, _ = search(TREE, {**SCORES, "c": 0.99, "d": 0.98, "c2": 0.01, "c1": 0.02})
    assert changed.trace["subtrees"][0] == base.trace["subtrees"][0]
    assert changed.trace["subtrees"][1][1]["kept"] == 7  # its own choice did change (c1 now)
    # and a subtree's children never enter another's comparison, even at equal scores
    flat, _, _ = search(TREE, dict.fromkeys(SCORES, 0.5))
    assert [s["kept"] for s in flat.trace["subtrees"][0]] == [1, 5]  # lowest id among its own children


def test_subtrees_at_the_same_node_draw_different_children() -> None:
    tree = {"P:": [("a", 1, "step"), ("b", 1, "step")] * 2,
            "P:a\n\n": [("w", 1, "eos"), ("x", 1, "eos"), ("y", 1, "eos"), ("z", 1, "eos")]}
    res, policy, _ = search(tree, {"a": 0.9, "b": 0.1, "w": 0.1, "x": 0.2, "y": 0.8, "z": 0.3})
    walk0, walk1 = res.trace["subtrees"]
    assert walk0[0]["kept"] == walk1[0]["kept"] == 1  # both subtrees chose a
    assert policy.calls[1].prefixes == ("P:a\n\n", "P:a\n\n")
    assert walk0[1]["children"] == [3, 4] and walk1[1]["children"] == [5, 6]  # w x | y z
    assert res.text == "a\n\ny"


def test_final_best_score_or_weighted_vote() -> None:
    tree = {"P:": [("\\boxed{1}", 1, "eos"), ("x", 1, "eos"), ("\\boxed{2}", 1, "eos"), ("y", 1, "eos"),
                   ("so \\boxed{2}", 1, "eos"), ("z", 1, "eos")]}
    scores = {"\\boxed{1}": 0.9, "x": 0.1, "\\boxed{2}": 0.6, "y": 0.1, "so \\boxed{2}": 0.5, "z": 0.1}
    best, _, _ = search(tree, scores, n=6)
    assert best.text == "\\boxed{1}"
    vote, _, _ = search(tree, scores, n=6, final="weighted_vote")
    assert vote.text == "\\boxed{2}"  # 0.6 + 0.5 > 0.9, and 0.6 is the group's best
    assert [c.answer for c in vote.candidates] == ["1", "2", "2"]


def test_budget_cap_returns_the_best_unfinished_leaf() -> None:
    policy, prm = FakePolicy(TREE, distinct_repeats=True), FakePRM(SCORES)
    [res] = DVTS(subtree_width=2).search([problem()], policy, prm, Budget(n=4, max_policy_tokens=4))
    assert len(policy.calls) == 1 and res.cost.stopped_by == "max_policy_tokens"
    assert res.text == "c" and not res.candidates[res.chosen].finished


def test_problems_share_calls_and_match_solo_runs() -> None:
    tree = {**TREE, **{"R" + k[1:]: v for k, v in TREE.items()}}
    policy = FakePolicy(tree, distinct_repeats=True)
    both = DVTS(subtree_width=2).search([problem("P:"), problem("R:")], policy, FakePRM(SCORES), Budget(n=4))
    assert len(policy.calls) == 3 and policy.calls[0].prefixes == ("P:", "P:", "R:", "R:")
    solo = DVTS(subtree_width=2).search([problem("R:")], FakePolicy(tree, distinct_repeats=True),
                                        FakePRM(SCORES), Budget(n=4))
    assert both[1].text == solo[0].text and both[1].trace == solo[0].trace


def test_n_must_be_a_multiple_of_subtree_width() -> None:
    with pytest.raises(ValueError, match=r"n=6, subtree_width=4\. Use n=8 or n=4"):
        DVTS().search([problem()], FakePolicy(TREE), FakePRM(SCORES), Budget(n=6))
    with pytest.raises(ValueError, match="subtree_width must be >= 1"):
        DVTS(subtree_width=0)
    with pytest.raises(ValueError, match="prm=None"):
        DVTS(subtree_width=2).search([problem()], FakePolicy(TREE), None, Budget(n=4))
