"""The strategy author's API (``Strategy.start`` -> ``SearchRun``): what a third party
gets for free, checked by hand on the fake policy and for real on the shipped world."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import FakePolicy, FakePRM

from prm_plugin import world
from prm_plugin.search import Budget, Problem
from prm_plugin.strategies.bon import BestOfN
from prm_plugin.strategy import Strategy, StrategyParams

TREE = {
    "P:": [("a", 2, "step"), ("b", 3, "step"), ("a", 2, "step")],
    "P:a\n\n": [("a1", 4, "eos"), ("a2", 1, "eos")],
    "P:b\n\n": [("b1", 5, "length")],
}


class WorstOfN(Strategy):
    """Written only against the documented API: n solutions, the lowest-scored wins."""

    name = "worst"

    def search(self, problems: Any, policy: Any, prm: Any, budget: Budget) -> list[Any]:
        run = self.start(problems, policy, prm, budget)
        solutions = run.sample(budget.n)
        run.score([(i, k) for i, ends in enumerate(solutions) for k in ends])
        results = []
        for i, ends in enumerate(solutions):
            scores = [run.aggregate(i, k) for k in ends]
            results.append(run.finish(i, ends, scores.index(min(scores)), {"scores": scores}))
        return results


class Plain(Strategy):
    name = "plain"
    needs_prm = False


def test_expand_returns_distinct_children_and_books_the_cost() -> None:
    policy = FakePolicy(TREE)
    run = Plain(StrategyParams(max_step_tokens=3)).start([Problem(prompt="P:", question="q", max_tokens=6)],
                                                            policy, None, Budget(n=3))
    [kids] = run.expand([(0, 0)], 3, round_index=0)
    tree = run.trees[0]
    assert [tree.nodes[k].text for k in kids] == ["a", "b"]  # the repeated "a" is one child
    assert policy.calls[0].max_tokens == 3  # min(max_step_tokens, what the problem has left)
    [kids_a] = run.expand([(0, kids[0])], 2, round_index=1)
    assert policy.calls[1].max_tokens == 3 and policy.calls[1].prefixes == ("P:a\n\n",)  # 6 - 2 left, cap 3
    assert [tree.nodes[k].text for k in kids_a] == ["a1", "a2"]
    assert tree.nodes[kids_a[0]].stop_reason == "length" and tree.nodes[kids_a[0]].finished  # 4 tokens > cap 3
    assert run.costs[0].policy_generated_tokens == 2 + 3 + 2 + 3 + 1 and run.costs[0].policy_calls == 2
    with pytest.raises(ValueError, match=f"Node {kids_a[0]} of problem 0 is finished"):
        run.expand([(0, kids_a[0])], 1, round_index=2)
    result = run.finish(0, kids_a, 1, {}, scored=False)
    # prompt-side tokens: the prompt plus every node the policy continued (the root and "a"), by the
    # fake's count_tokens (one token per character): "P:" + "a\n\n"
    assert result.cost.unique_prompt_tokens == len("P:") + len("a\n\n")
    assert result.text == "a\n\na2" and result.strategy == "plain"


def test_start_enforces_needs_prm_once_with_one_message() -> None:
    problem = Problem(prompt="P:", question="q")
    with pytest.raises(ValueError, match=r"Strategy 'worst' needs a PRM, but none was given \(prm=None\)"):
        WorstOfN().search([problem], FakePolicy(TREE), None, Budget(n=2))

    class NoPRM(WorstOfN):
        needs_prm = False

    with pytest.raises(ValueError, match="asked the PRM for scores, but this run has none"):
        NoPRM().search([problem], FakePolicy(TREE), FakePRM({}), Budget(n=2))  # given, but not wanted


def test_third_party_strategy_costs_what_bon_costs_for_the_same_samples() -> None:
    if not (world.paths()["prm"] / "config.json").exists():
        pytest.skip("the world has not been built")
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.tokenizer import build_tokenizer

    problems = search_problems(build_tokenizer(), world.load_set("arith_test")[:6])
    params = BestOfN.Params(temperature=0.7, seed=3)

    def run(strategy: Strategy) -> list[Any]:  # fresh models: no cache carried from the other run
        policy = HFPolicy.from_pretrained(str(world.paths()["policy"]))
        return strategy.search(problems, policy, load_prm(str(world.paths()["prm"])), Budget(n=4))

    ours, bon = run(WorstOfN(StrategyParams(temperature=0.7, seed=3))), run(BestOfN(params))
    fields = ("unique_tokens", "unique_prompt_tokens", "policy_prefill_tokens", "policy_generated_tokens",
              "prm_tokens", "policy_calls", "prm_calls")
    for mine, theirs in zip(ours, bon, strict=True):
        assert [c.steps for c in mine.candidates] == [c.steps for c in theirs.candidates]
        assert {f: getattr(mine.cost, f) for f in fields} == {f: getattr(theirs.cost, f) for f in fields}
        assert mine.cost.unique_tokens > 0 and mine.cost.unique_prompt_tokens > 0
        scores = [c.score for c in theirs.candidates]
        assert mine.chosen == scores.index(min(scores)) and theirs.chosen == scores.index(max(scores))
