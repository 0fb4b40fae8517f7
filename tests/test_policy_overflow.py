"""Policy prefixes longer than the model's context (``on_overflow``) on the real HF path
(the shipped world's policy: a byte-level BPE tokenizer, a 512-position context)."""

from __future__ import annotations

import doctest

import pytest

from prm_plugin import world
from prm_plugin.policy import _context
from prm_plugin.policy._context import fit_prefix
from prm_plugin.policy.hf import HFPolicy
from prm_plugin.search import ContextOverflowError

pytestmark = pytest.mark.skipif(not (world.paths()["policy"] / "config.json").exists(),
                                reason="the world has not been built")
CONTEXT = 64
PROMPT = "Compute 35 - 3 - 4 - 7 from left to right.\n"
LONG = "Compute 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 from left to right. " * 4 + PROMPT


@pytest.fixture(scope="module")
def policies() -> dict[str, HFPolicy]:
    path = str(world.paths()["policy"])
    out = {mode: HFPolicy.from_pretrained(path, device="cpu", max_length=CONTEXT, on_overflow=mode)
           for mode in ("truncate", "skip", "error")}
    out["unlimited"] = HFPolicy.from_pretrained(path, device="cpu", max_length=100_000)
    return out


def _greedy(policy: HFPolicy, prefixes: list[str], max_tokens: int = 12):
    return policy.propose(prefixes, n=2, stop=["\n\n"], max_tokens=max_tokens, temperature=0)


def test_the_context_is_read_from_the_model_config() -> None:
    policy = HFPolicy.from_pretrained(str(world.paths()["policy"]), device="cpu")
    assert policy.max_length == 512 and policy.on_overflow == "truncate"


def test_truncate_continues_the_prompts_last_tokens_exactly(policies) -> None:
    policy, ref = policies["truncate"], policies["unlimited"]
    ids = policy.encode(LONG)
    assert len(ids) > CONTEXT
    group, short = _greedy(policy, [LONG, PROMPT])
    keep = CONTEXT - min(12, CONTEXT // 4)
    assert group.overflow == "truncated" and group.cut_tokens == len(ids) - keep and len(group) == 2
    assert short.overflow is None and short.cut_tokens == 0
    kept_text = policy.tokenizer.decode(ids[-keep:])
    assert ref.encode(kept_text) == ids[-keep:]  # the kept ids decode and re-encode to themselves
    (expected,) = _greedy(ref, [kept_text])
    assert [(p.text, p.n_tokens, p.stop_reason) for p in group] == [(p.text, p.n_tokens, p.stop_reason)
                                                                      for p in expected]
    assert group.prefill_tokens == keep


def test_generation_stops_at_the_end_of_the_context(policies) -> None:
    policy = policies["truncate"]
    prompt_len = len(policy.encode(PROMPT))
    (group,) = policy.propose([PROMPT], n=1, stop=[], max_tokens=500, temperature=0)
    assert group.overflow is None
    assert group[0].n_tokens <= CONTEXT - prompt_len
    if group[0].n_tokens == CONTEXT - prompt_len:
        assert group[0].stop_reason == "length"


def test_skip_samples_nothing_for_the_long_prefix_only(policies) -> None:
    long_group, short = _greedy(policies["skip"], [LONG, PROMPT])
    assert long_group.skipped and len(long_group) == 0 and long_group.prefill_tokens == 0
    (alone,) = _greedy(policies["truncate"], [PROMPT])
    assert [p.text for p in short] == [p.text for p in alone]


def test_error_names_the_prefix_the_context_and_the_fix(policies) -> None:
    with pytest.raises(ContextOverflowError, match="Prefix 1 takes .* context of 64 positions.*on_overflow=truncate"):
        _greedy(policies["error"], [PROMPT, LONG])


def test_bad_settings_are_refused() -> None:
    path = str(world.paths()["policy"])
    with pytest.raises(ValueError, match="on_overflow \\(policy\\)='drop'"):
        HFPolicy.from_pretrained(path, device="cpu", on_overflow="drop")
    with pytest.raises(ValueError, match="max_length must be an int >= 2"):
        HFPolicy.from_pretrained(path, device="cpu", max_length=0)


def test_fit_prefix_rule() -> None:
    assert doctest.testmod(_context).failed == 0
    fit = fit_prefix(list(range(10)), 100, 8, "truncate", keep_head=1)
    assert fit.ids == [0, 5, 6, 7, 8, 9] and fit.cut == 4 and fit.cap == 2  # room: min(100, 8 // 4) = 2
    assert fit_prefix(list(range(10)), 100, None, "error").cut == 0  # no context: nothing to check
    assert fit_prefix(list(range(10)), 3, 8, "skip").skipped
