"""Per-prefix token caps: a continuation never depends on what shares its batch.

Found by ``benchmarks/search_cost.py``: when ``SearchRun`` gave a whole call the
largest of its requests' caps, a problem searched in a batch could write a longer
step (or rollout) than the same problem searched alone, and choose another answer.
Now a policy with ``per_prefix_max_tokens`` gets one cap per prefix, and any other
policy gets one call per distinct cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from test_policy_vllm import LLM, fake_vllm  # noqa: F401 - the fixture is used by name
from tiny import build_causal_lm

from prm_plugin.policy._request import token_caps
from prm_plugin.search import Budget, PrefixProposals, Problem, Proposal
from prm_plugin.strategy import SearchRun, StrategyParams

PROMPTS = ["Question: what is 12 - 5? Let's think step by step.\n\n", "x = [1, 2, 3]\n\n"]


@pytest.fixture(scope="module")
def hf_policy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from prm_plugin.policy.hf import HFPolicy

    path = build_causal_lm(tmp_path_factory.mktemp("caps") / "policy")
    return HFPolicy.from_pretrained(str(path), device="cpu", prefix_cache_bytes=0)


def _flat(groups: Sequence[PrefixProposals]) -> list[tuple[str, int, str]]:
    return [(p.text, p.n_tokens, p.stop_reason) for g in groups for p in g]


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_hf_per_prefix_caps_equal_separate_calls(hf_policy: Any, temperature: float) -> None:
    kw: dict[str, Any] = dict(n=3, stop=[], temperature=temperature, seed=7)
    both = hf_policy.propose(PROMPTS, max_tokens=[3, 9], **kw)
    alone = [hf_policy.propose([p], max_tokens=cap, **kw)[0] for p, cap in zip(PROMPTS, (3, 9), strict=True)]
    assert _flat(both) == _flat(alone)
    assert all(p.n_tokens <= 3 for p in both[0]) and any(p.n_tokens > 3 for p in both[1])


def test_hf_greedy_same_prefix_with_two_caps(hf_policy: Any) -> None:
    out = hf_policy.propose([PROMPTS[0], PROMPTS[0]], n=2, stop=[], max_tokens=[2, 6], temperature=0.0)
    short, long = out[0][0], out[1][0]
    assert (short.n_tokens, short.stop_reason) == (2, "length")
    assert long.n_tokens == 6 and long.text.startswith(short.text)
    assert out[1].prefill_tokens == 0  # a repeated text is prefilled (and charged) once


def test_vllm_gets_one_cap_per_prompt(fake_vllm: Any) -> None:  # noqa: F811
    from prm_plugin.policy.vllm import VLLMPolicy

    policy = VLLMPolicy.from_pretrained("m")
    policy.propose(["a", "b", "a"], n=1, stop=["\n\n"], max_tokens=[2, 5, 4], temperature=0.0, seed=0)
    [(prompts, params)] = LLM.instances[0].calls
    assert prompts == ["a", "b", "a"]  # greedy "a" twice: two caps, two requests
    assert [sp.max_tokens for sp in params] == [2, 5, 4]


@pytest.mark.parametrize(("caps", "message"), [([3], "1 caps for 2"), ([3, 0], ">= 1"), ([3, True], ">= 1")])
def test_bad_caps_are_refused(caps: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        token_caps(caps, 2)


class CapRecorder:
    """A policy that records each call's caps; answers one short step per prefix."""

    def __init__(self, per_prefix: bool) -> None:
        self.per_prefix_max_tokens = per_prefix
        self.calls: list[tuple[list[str], Any]] = []

    def propose(self, prefixes: Sequence[str], *, n: int, max_tokens: Any, **_: Any) -> list[PrefixProposals]:
        self.calls.append((list(prefixes), max_tokens))
        return [PrefixProposals((Proposal("s", 1, "step"),) * n, 1) for _ in prefixes]

    def count_tokens(self, text: str) -> int:
        return len(text)


@pytest.mark.parametrize("per_prefix", [True, False])
def test_search_run_keeps_each_request_cap(per_prefix: bool) -> None:
    problems = [Problem(prompt=f"P{i}:", question="q", max_tokens=cap) for i, cap in enumerate((8, 3, 8))]
    policy = CapRecorder(per_prefix)
    run = SearchRun(problems, policy, None, Budget(n=1), StrategyParams())  # type: ignore[arg-type]
    got = run.expand([(0, 0), (1, 0), (2, 0)], 2, round_index=0)  # each step capped by what its problem has left
    assert got == [[1], [1], [1]]  # both samples of each prefix are the same step
    if per_prefix:
        assert policy.calls == [(["P0:", "P1:", "P2:"], [8, 3, 8])]
    else:
        assert sorted(policy.calls) == [(["P0:", "P2:"], 8), (["P1:"], 3)]
    assert [c.policy_calls for c in run.costs] == [1, 1, 1]
