"""The request plan of the engine-backed policies (``prm_plugin.policy._per_sample``)."""

from __future__ import annotations

from prm_plugin.policy._context import Fit
from prm_plugin.policy._per_sample import SEED_SPACE, plan_requests
from prm_plugin.policy._sampling import row_seed
from prm_plugin.search import Proposal


def fits(*caps: int) -> list[Fit]:
    return [Fit([], 0, c) for c in caps]


def test_sampled_prefixes_get_one_request_per_sample_with_consecutive_seeds() -> None:
    plan = plan_requests(["a", "b", "a"], [5, 5, 5], fits(5, 5, 5), n=2, temperature=0.7, seed=9)
    first_a, first_b = row_seed(9, "a", 0) % SEED_SPACE, row_seed(9, "b", 0) % SEED_SPACE
    assert [r.seed for r in plan.requests] == [first_a, first_a + 1, first_b, first_b + 1, first_a + 2, first_a + 3]
    assert plan.requests_of == [[0, 1], [2, 3], [4, 5]]
    out = plan.gather([(Proposal(f"t{r}", 1, "step"), 3) for r in range(6)])
    assert [[p.text for p in g] for g in out] == [["t0", "t1"], ["t2", "t3"], ["t4", "t5"]]
    assert [g.prefill_tokens for g in out] == [6, 6, 6]


def test_greedy_sends_one_request_per_text_and_cap_and_charges_its_prefill_once() -> None:
    plan = plan_requests(["a", "a", "a"], [5, 5, 3], fits(5, 5, 5), n=3, temperature=0, seed=1)
    assert plan.requests_of == [[0], [0], [1]] and [r.cap for r in plan.requests] == [5, 3]
    out = plan.gather([(Proposal("x", 1, "eos"), 4), (Proposal("y", 1, "length"), 4)])
    assert [len(g) for g in out] == [3, 3, 3] and [g.prefill_tokens for g in out] == [4, 0, 4]


def test_skipped_and_cut_prefixes() -> None:
    plan = plan_requests(["long", "cut"], [8, 8], [Fit([], 0, 8, skipped=True), Fit([7, 8], 5, 4)], n=1,
                         temperature=0.5, seed=0)
    assert plan.requests_of == [None, [0]]
    assert plan.requests[0].prompt == [7, 8] and plan.requests[0].cap == 4  # token ids, the context's cap
    skipped, cut = plan.gather([(Proposal("z", 1, "step"), 2)])
    assert skipped.overflow == "skipped" and len(skipped) == 0
    assert cut.overflow == "truncated" and cut.cut_tokens == 5
