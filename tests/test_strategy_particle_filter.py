"""Particle filtering on a known tree: weights, resampled counts under a fixed seed,
finished particles, the final choice, caps and batching (all hand-computed)."""

from __future__ import annotations

import math
import random

import pytest
from fakes import FakeClock, FakePolicy, FakePRM, as_json_roundtrip

from prm_plugin.search import Budget, Problem
from prm_plugin.strategies.particle_filter import (
    ParticleFilter,
    effective_sample_size,
    multinomial_resample,
    normalised_weights,
    systematic_resample,
)

# Three particles. Round 0: the k-th copy of the prompt draws choice k (a, b, c); b ends.
# Round 1: the copies of "a" draw a1 and a2 (both end).
TREE = {
    "P:": [("a", 1, "step"), ("\\boxed{2}", 1, "eos"), ("c", 1, "step")],
    "P:a\n\n": [("\\boxed{1}", 2, "eos"), ("\\boxed{2}", 2, "eos"), ("\\boxed{3}", 2, "eos")],
    "P:c\n\n": [("\\boxed{3}", 2, "eos")],
}
# logit odds s / (1 - s): a 4, b 1, c 0.25
SCORES = {"a": 0.8, "\\boxed{2}": 0.5, "c": 0.2, "\\boxed{1}": 0.9, "\\boxed{3}": 0.1}
SEED = 3  # its systematic draw for "P:" is u = 0.687...: positions 0.229, 0.562, 0.896


def problem(prompt: str = "P:") -> Problem:
    return Problem(prompt=prompt, question="q", stop=["</s>"])


def run(policy: FakePolicy, prm: FakePRM, n: int = 3, **params: object) -> object:
    [res] = ParticleFilter(seed=SEED, temperature=0.5, **params).search([problem()], policy, prm, Budget(n=n))
    return res


def test_pure_helpers_by_hand() -> None:
    w = normalised_weights([0.8, 0.5, 0.2], "logit", 1.0)
    assert w == pytest.approx([4 / 5.25, 1 / 5.25, 0.25 / 5.25])
    assert normalised_weights([0.8, 0.5, 0.2], "logit", 0.5) == pytest.approx([16 / 17.0625, 1 / 17.0625,
                                                                                0.0625 / 17.0625])
    assert normalised_weights([0.8, 0.4], "prob", 1.0) == pytest.approx([2 / 3, 1 / 3])
    assert normalised_weights([1.0, 0.0], "logit", 1.0)[1] == pytest.approx(1e-12, abs=1e-11)  # clipped, finite
    assert effective_sample_size(w) == pytest.approx(1 / sum(x * x for x in w))
    # cumulative 0.1 0.3 0.6 1.0; positions (u + k) / 4
    assert systematic_resample([0.1, 0.2, 0.3, 0.4], 0.0) == [0, 1, 2, 3]  # 0, .25, .5, .75
    assert systematic_resample([0.1, 0.2, 0.3, 0.4], 0.9) == [1, 2, 3, 3]  # .225 .475 .725 .975
    assert systematic_resample([0.5, 0.0, 0.5], 0.4) == [0, 0, 2]  # .133 .467 .8: a zero weight is never drawn
    assert multinomial_resample([0.1, 0.2, 0.3, 0.4], [0.0, 0.1, 0.29, 0.61, 0.999]) == [0, 1, 1, 3, 3]


def test_weights_and_systematic_counts_under_a_fixed_seed() -> None:
    policy, prm = FakePolicy(TREE, distinct_repeats=True), FakePRM(SCORES)
    res = run(policy, prm)
    r0, r1 = res.trace["rounds"]
    # round 0: particles a (1), b (2, finished), c (3); weights 4 : 1 : 0.25
    assert r0["particles"] == [1, 2, 3]
    assert r0["weights"] == pytest.approx([4 / 5.25, 1 / 5.25, 0.25 / 5.25])
    assert r0["ess"] == pytest.approx(1 / sum(w * w for w in r0["weights"]))
    u = random.Random(f"{SEED}|P:").random()
    assert r0["draws"] == [u] and 0.2858 < u < 0.857  # cumulative 0.762, 0.952, 1
    assert r0["resampled"] and r0["indices"] == [0, 0, 1]  # two copies of a, one of b, c dropped
    # round 1: the two copies of a draw different steps; b stays finished with its weight
    assert policy.calls[1].prefixes == ("P:a\n\n", "P:a\n\n") and policy.calls[1].n == 1
    assert r1["particles"] == [4, 5, 2]
    assert r1["weights"] == pytest.approx([9 / 11, 1 / 11, 1 / 11])  # odds 9, 1, 1 (last step scores)
    assert not r1["resampled"]  # every particle finished: nothing left to resample
    assert len(policy.calls) == 2 and len(prm.calls) == 2
    assert [q.steps for q in prm.calls[1]] == [("a", "\\boxed{1}"), ("a", "\\boxed{2}")]
    # best weight: a -> \boxed{1}
    assert res.text == "a\n\n\\boxed{1}" and [c.node_id for c in res.candidates] == [4, 5, 2]
    assert res.trace["final"]["mass"] == pytest.approx([9 / 11, 1 / 11, 1 / 11])
    assert as_json_roundtrip(res.to_json())["trace"]["rounds"] == res.trace["rounds"]


def test_weighted_vote_sums_the_weights_of_equal_answers() -> None:
    scores = {**SCORES, "\\boxed{1}": 0.75}  # odds 3 against 1 + 1 for the two \boxed{2}
    best = run(FakePolicy(TREE, distinct_repeats=True), FakePRM(scores))
    assert best.text == "a\n\n\\boxed{1}"
    scores["\\boxed{1}"] = 0.6  # odds 1.5 < 2
    vote = run(FakePolicy(TREE, distinct_repeats=True), FakePRM(scores), final="weighted_vote")
    # answer 2 (a->boxed2 with odds 1, b with odds 1) outweighs answer 1 (1.5); ties in mass go
    # to the lower node id: a->boxed{2} is node 5, b is node 2
    assert vote.text == "\\boxed{2}" and vote.candidates[vote.chosen].node_id == 2
    assert [c.answer for c in vote.candidates] == ["1", "2", "2"]


def test_multinomial_draws_one_uniform_per_particle() -> None:
    res = run(FakePolicy(TREE, distinct_repeats=True), FakePRM(SCORES), resampling="multinomial")
    r0 = res.trace["rounds"][0]
    rng = random.Random(f"{SEED}|P:")
    draws = [rng.random() for _ in range(3)]
    assert r0["draws"] == draws
    cum = [4 / 5.25, 5 / 5.25]
    assert r0["indices"] == [0 if d < cum[0] else 1 if d < cum[1] else 2 for d in draws]


@pytest.mark.parametrize(("threshold", "resampled"), [(0.5, False), (0.6, True)])
def test_ess_threshold_resamples_only_below_it(threshold: float, resampled: bool) -> None:
    # ESS of (4, 1, 0.25) / 5.25 is 1.615: below 0.6 * 3 = 1.8, above 0.5 * 3 = 1.5
    res = run(FakePolicy(TREE, distinct_repeats=True), FakePRM(SCORES), ess_threshold=threshold)
    r0 = res.trace["rounds"][0]
    assert r0["ess"] == pytest.approx(1.615, abs=1e-3) and r0["resampled"] is resampled
    assert res.trace["rounds"][1]["particles"] == ([4, 5, 2] if resampled else [4, 2, 5])


def test_weight_temperature_and_prob_transform() -> None:
    res = run(FakePolicy(TREE, distinct_repeats=True), FakePRM(SCORES), transform="prob", weight_temperature=0.5)
    # weights proportional to s^2: 0.64, 0.25, 0.04
    assert res.trace["rounds"][0]["weights"] == pytest.approx([0.64 / 0.93, 0.25 / 0.93, 0.04 / 0.93])


def test_caps_stop_stepping_and_return_the_best_particle_so_far() -> None:
    policy = FakePolicy(TREE, distinct_repeats=True)
    res = run(policy, FakePRM(SCORES))
    assert len(policy.calls) == 2
    stepped = FakePolicy(TREE, distinct_repeats=True)
    [once] = ParticleFilter(seed=SEED, max_steps=1).search([problem()], stepped, FakePRM(SCORES), Budget(n=3))
    assert len(stepped.calls) == 1 and once.text == "\\boxed{2}" and once.cost.stopped_by is None
    capped_policy = FakePolicy(TREE, distinct_repeats=True)
    [capped] = ParticleFilter(seed=SEED).search([problem()], capped_policy, FakePRM(SCORES),
                                                Budget(n=3, max_policy_tokens=3))
    assert len(capped_policy.calls) == 1 and capped.cost.stopped_by == "max_policy_tokens"
    assert capped.text == "\\boxed{2}"  # b is the only finished particle after round 0
    clock = FakeClock()
    strategy = ParticleFilter(seed=SEED)
    strategy.clock = clock
    [timed] = strategy.search([problem()], FakePolicy(TREE, clock=clock, seconds_per_call=1.0),
                              FakePRM(SCORES), Budget(n=3, max_seconds=0.5))
    assert timed.cost.stopped_by == "max_seconds" and timed.cost.seconds == 1.0
    assert res.cost.policy_generated_tokens == 3 + 4  # round 0: 3 x 1 token; round 1: 2 x 2 tokens


def test_problems_share_calls_and_match_solo_runs() -> None:
    tree = {**TREE, **{"R" + k[1:]: v for k, v in TREE.items()}}
    policy, prm = FakePolicy(tree, distinct_repeats=True), FakePRM(SCORES)
    both = ParticleFilter(seed=SEED).search([problem("P:"), problem("R:")], policy, prm, Budget(n=3))
    assert len(policy.calls) == 2 and len(prm.calls) == 2
    assert policy.calls[0].prefixes == ("P:",) * 3 + ("R:",) * 3
    solo = ParticleFilter(seed=SEED).search([problem("R:")], FakePolicy(tree, distinct_repeats=True),
                                            FakePRM(SCORES), Budget(n=3))
    assert both[1].text == solo[0].text and both[1].trace == solo[0].trace


def test_params_refuse_bad_values_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"ess_threshold must be in \(0, 1\]"):
        ParticleFilter(ess_threshold=1.5)
    with pytest.raises(ValueError, match="resampling.*one of systematic, multinomial"):
        ParticleFilter(resampling="stratified")
    with pytest.raises(ValueError, match="weight_temperature must be > 0"):
        ParticleFilter(weight_temperature=0)
    with pytest.raises(ValueError, match="prm=None"):
        ParticleFilter().search([problem()], FakePolicy(TREE), None, Budget(n=3))
    assert math.isclose(ParticleFilter(weight_temperature="0.5").params.weight_temperature, 0.5)
