"""What the search does with inputs that did not fit a model's context: skipped PRM
queries (unscorable candidates), skipped policy prefixes, truncation counts in ``Cost``,
and policy/PRM exceptions turned into ``BackendError`` (fake policy and PRM)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest
from fakes import FakePolicy, FakePRM, as_json_roundtrip

from prm_plugin.search import Budget, PrefixProposals, PRMQuery, Problem, StepScores
from prm_plugin.search_run import BackendError
from prm_plugin.strategies.beam import BeamSearch
from prm_plugin.strategies.bon import BestOfN
from prm_plugin.strategies.dvts import DVTS
from prm_plugin.strategies.majority import MajorityVote
from prm_plugin.strategies.mcts import MCTS
from prm_plugin.strategies.particle_filter import ParticleFilter

TREE = {
    "P:": [("a1", 2, "step"), ("b1", 2, "step"), ("c1", 2, "step")],
    "P:a1\n\n": [("a2", 3, "eos")],
    "P:b1\n\n": [("b2 \\boxed{7}", 3, "eos")],
    "P:c1\n\n": [("c2 \\boxed{7}", 3, "eos")],
}
SCORES = {"a1": 0.5, "a2": 0.5, "b1": 0.99, "b2 \\boxed{7}": 0.99, "c1": 0.3, "c2 \\boxed{7}": 0.3}


class SkippingPRM(FakePRM):
    """A ``FakePRM`` that reports the queries ``skip`` selects as skipped (too long)."""

    def __init__(self, scores: dict[str, float], skip: Callable[[PRMQuery], bool], **kw: object) -> None:
        super().__init__(scores, **kw)  # type: ignore[arg-type]
        self.skip = skip

    def score(self, queries: Sequence[PRMQuery]) -> list[StepScores]:
        return [StepScores(None, 0, "skipped") if self.skip(q) else r
                for q, r in zip(queries, super().score(queries), strict=True)]


def has(step: str) -> Callable[[PRMQuery], bool]:
    return lambda q: step in q.steps


def problem(prompt: str = "P:") -> Problem:
    return Problem(prompt=prompt, question="q", stop=["</s>"])


def test_bon_never_picks_an_unscorable_candidate_and_records_it() -> None:
    prm = SkippingPRM(SCORES, has("b1"))  # b would win (0.99) if it could be scored
    [res] = BestOfN().search([problem()], FakePolicy(TREE), prm, Budget(n=3))
    assert res.text == "a1\n\na2"
    b = res.candidates[1]
    assert (b.step_scores, b.score) == (None, None) and res.trace["scores"] == [0.5, None, 0.3]
    assert res.cost.prm_skipped == 1 and res.cost.prm_truncated == 0
    row = json.loads(json.dumps(res.to_json()))
    assert row["cost"]["prm_skipped"] == 1 and row["candidates"][1]["score"] is None


def test_bon_with_nothing_scorable_gives_no_answer_rather_than_a_guess() -> None:
    [res] = BestOfN().search([problem()], FakePolicy(TREE), SkippingPRM(SCORES, lambda q: True), Budget(n=3))
    assert res.chosen is None and res.text == "" and res.cost.prm_skipped == 3


def test_weighted_majority_counts_an_unscorable_vote_as_zero_and_never_chooses_it() -> None:
    prm = SkippingPRM(SCORES, has("b1"))
    [res] = MajorityVote(weighted=True).search([problem()], FakePolicy(TREE), prm, Budget(n=3))
    # answers: a -> none, b -> 7 (unscorable), c -> 7 (0.3): 7 wins; its chosen member is the scored c
    assert res.text == "c1\n\nc2 \\boxed{7}"
    assert res.trace["groups"][0]["weight"] == pytest.approx(0.3) and res.trace["groups"][0]["votes"] == 2
    [none] = MajorityVote(weighted=True).search([problem()], FakePolicy(TREE), SkippingPRM(SCORES, lambda q: True),
                                                Budget(n=3))
    assert none.text == "b1\n\nb2 \\boxed{7}"  # nothing scorable: the votes decide (first of the 7 group)


def test_beam_drops_unscorable_children_from_the_ranking() -> None:
    tree = {
        "P:": [("a", 1, "step"), ("b", 1, "step")],
        "P:a\n\n": [("a1", 1, "eos"), ("a2", 1, "eos")],
        "P:b\n\n": [("b1", 1, "eos"), ("b2", 1, "eos")],
    }
    scores = {"a": 0.4, "b": 0.9, "a1": 0.5, "a2": 0.6, "b1": 0.95, "b2": 0.97}
    prm = SkippingPRM(scores, has("b"))  # b, the best first step, cannot be scored
    [res] = BeamSearch(beam_width=2, aggregation="last").search([problem()], FakePolicy(tree), prm, Budget(n=2))
    assert res.trace["rounds"][0]["kept"] == [1]  # only a survives
    assert res.text == "a\n\na2"
    assert res.cost.prm_skipped == 1
    assert [n for n in res.trace["nodes"] if n.get("unscorable")] == [res.trace["nodes"][2]]


def test_mcts_does_not_walk_into_a_branch_it_cannot_value() -> None:
    tree = {
        "P:": [("A", 1, "step"), ("B", 1, "step")],
        "P:A\n\n": [("A1", 1, "eos"), ("A2", 1, "eos")],
        "P:B\n\n": [("B1", 1, "eos"), ("B2", 1, "eos")],
    }
    scores = {"A": 0.3, "B": 0.9, "A1": 0.6, "A2": 0.7, "B1": 0.9, "B2": 0.9}
    policy, prm = FakePolicy(tree), SkippingPRM(scores, has("B"))
    [res] = MCTS(c=1.0, expansion_width=2, simulations=4).search([problem()], policy, prm, Budget(n=8))
    nodes = {n["text"]: n for n in res.trace["nodes"][1:]}
    assert nodes["B"]["unscorable"] and nodes["B"]["visits"] == 0 and nodes["B"]["prior"] is None
    assert not any(c.prefixes == ("P:B\n\n",) for c in policy.calls)  # never expanded
    assert res.text.startswith("A\n\n") and res.candidates[res.chosen].score is not None
    assert as_json_roundtrip(res.to_json())["cost"]["prm_skipped"] >= 1


class OverflowPolicy(FakePolicy):
    """Skips (or reports truncating) prefixes whose problem prompt starts with ``marker``."""

    def __init__(self, tree: dict, marker: str, how: str) -> None:
        super().__init__(tree)
        self.marker, self.how = marker, how

    def propose(self, prefixes, **kw):
        out = super().propose(prefixes, **kw)
        for k, p in enumerate(prefixes):
            if p.startswith(self.marker):
                out[k] = (PrefixProposals((), 0, "skipped") if self.how == "skip"
                          else PrefixProposals(out[k].proposals, out[k].prefill_tokens, "truncated", 11))
        return out


@pytest.mark.parametrize("strategy", [BestOfN(), BeamSearch(beam_width=3), MCTS(expansion_width=3),
                                      MCTS(expansion_width=3, value="rollout"), MajorityVote(),
                                      ParticleFilter(), DVTS(subtree_width=3)])
def test_a_skipped_prefix_stops_its_problem_and_leaves_the_others_alone(strategy) -> None:
    tree = dict(TREE)
    tree.update({"L" + k[1:]: v for k, v in TREE.items()})
    prm = FakePRM(SCORES)
    long_, normal = strategy.search([problem("L:"), problem("P:")], OverflowPolicy(tree, "L:", "skip"), prm,
                                    Budget(n=3))
    [alone] = type(strategy)(strategy.params).search([problem("P:")], FakePolicy(TREE), FakePRM(SCORES), Budget(n=3))
    assert long_.text == "" and all(c.steps == [] for c in long_.candidates)  # mcts: the bare root
    assert long_.cost.stopped_by == "context" and long_.cost.policy_skipped >= 1  # pf: one per particle
    assert normal.text == alone.text and normal.cost.policy_skipped == 0


def test_truncations_are_counted_per_problem() -> None:
    tree = dict(TREE)
    tree.update({"L" + k[1:]: v for k, v in TREE.items()})
    long_, normal = BestOfN().search([problem("L:"), problem("P:")], OverflowPolicy(tree, "L:", "truncate"),
                                     FakePRM(SCORES), Budget(n=3))
    assert (long_.cost.policy_truncated, long_.cost.policy_cut_tokens) == (1, 11)
    assert long_.cost.overflowed and not normal.cost.overflowed and long_.text == normal.text.replace("P", "L")


class Boom(FakePolicy):
    def propose(self, prefixes, **kw):
        if any(p.startswith("X") for p in prefixes):
            raise RuntimeError("CUDA error: device-side assert on this input")
        return super().propose(prefixes, **kw)


def test_backend_exceptions_become_backend_errors_naming_the_problems() -> None:
    tree = dict(TREE)
    tree.update({"X" + k[1:]: v for k, v in TREE.items()})
    with pytest.raises(BackendError, match=r"policy failed on problem\(s\) \[0, 1\].*CUDA error") as info:
        BestOfN().search([problem("P:"), problem("X:")], Boom(tree), FakePRM(SCORES), Budget(n=3))
    assert info.value.backend == "policy" and isinstance(info.value.__cause__, RuntimeError)
    assert len(info.value.costs) == 2

    class BadPRM(FakePRM):
        def score(self, queries):
            raise MemoryError("out of memory")

    with pytest.raises(BackendError, match="prm failed") as info:
        BestOfN().search([problem()], FakePolicy(TREE), BadPRM(SCORES), Budget(n=3))
    assert info.value.costs[0].policy_generated_tokens > 0  # what was spent before the failure


def test_a_strategy_bug_is_not_wrapped() -> None:
    class Buggy(BestOfN):
        def search(self, problems, policy, prm, budget):
            run = self.start(problems, policy, prm, budget)
            run.sample(1)
            return run.finish(0, [], None, {}).nope  # AttributeError in strategy code

    with pytest.raises(AttributeError):
        Buggy().search([problem()], FakePolicy(TREE), FakePRM(SCORES), Budget(n=1))


class DeepSkipPolicy(FakePolicy):
    """Skips every prefix past the first step (as a policy with a small context would)."""

    def propose(self, prefixes, **kw):
        out = super().propose([p if "\n\n" not in p else "P:" for p in prefixes], **kw)
        return [PrefixProposals((), 0, "skipped") if "\n\n" in p else g for p, g in zip(prefixes, out, strict=True)]


@pytest.mark.parametrize("strategy", [BeamSearch(beam_width=3), MCTS(expansion_width=3),
                                      MCTS(expansion_width=3, value="rollout"), MCTS(final="best_terminal")])
def test_a_prefix_skipped_mid_search_ends_the_problem_with_what_it_found(strategy) -> None:
    [res] = strategy.search([problem()], DeepSkipPolicy(TREE), FakePRM(SCORES), Budget(n=3))
    assert res.cost.stopped_by == "context" and res.cost.policy_skipped >= 1
    assert res.chosen is not None and res.text in ("a1", "b1", "c1")  # the best first step found
    assert as_json_roundtrip(res.to_json())["cost"]["policy_skipped"] == res.cost.policy_skipped
