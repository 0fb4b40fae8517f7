"""HFPolicy on real transformers models: stops, reasons, counts, determinism, invariance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_policy_kit import SCRIPT, random_lm, scripted_lm, tokenizer
from tiny import build_causal_lm

from prm_plugin.policy.base import Policy
from prm_plugin.policy.hf import HFPolicy


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


@pytest.fixture(scope="module")
def script(tok) -> list[int]:
    return tok(SCRIPT)["input_ids"] + [tok.eos_token_id]


@pytest.fixture(scope="module")
def scripted(tok, script) -> HFPolicy:
    return HFPolicy(scripted_lm(script, tok), tok, device="cpu", prefix_cache_bytes=0)


@pytest.fixture(scope="module")
def rand(tok) -> HFPolicy:
    return HFPolicy(random_lm(0, tok), tok, device="cpu", prefix_cache_bytes=0)


PROMPTS = ["Step 1: 3 + 4", "def add(a, b):\n", "x", "The quick brown fox jumps over the lazy dog."]


def _prompt(tok, script: list[int], cut: int) -> str:
    return tok.decode(script[:cut])


def _call(policy: HFPolicy, prefixes, **kw):
    kw.setdefault("stop", ["\n\n"])
    kw.setdefault("max_tokens", 40)
    kw.setdefault("temperature", 0)
    return policy.propose(prefixes, n=kw.pop("n", 1), **kw)


def _flat(groups) -> list[tuple[str, int, str]]:
    return [(p.text, p.n_tokens, p.stop_reason) for g in groups for p in g]


# --- exact behaviour on the scripted model -------------------------------------------

# (cut, stop, final_stop, max_tokens) -> (text, n_tokens, stop_reason); tokens are listed in
# test_policy_kit (e.g. "\n\n" is two "\n" tokens, " return" one token).
CASES = [
    ((3, ["\n\n"], [], 40), (" 2.", 4, "step")),  # stop spanning two tokens
    ((7, ["\n\n"], ["The answer"], 40), ("So def add(a, b):\n    return a + b", 18, "step")),
    ((25, ["\n\n"], ["answer"], 40), ("The ", 6, "final")),  # final stop ends mid-token "er"
    ((7, ["\n\n"], ["return"], 40), ("So def add(a, b):\n    ", 13, "final")),  # earliest wins
    ((7, ["ret"], [], 40), ("So def add(a, b):\n    ", 13, "step")),  # stop inside one token
    ((25, ["\n\n"], [], 40), ("The answer is 14", 10, "eos")),  # 9 tokens + EOS
    ((7, ["\n\n"], [], 5), ("So def a", 5, "length")),
    ((23, ["\n\n"], [], 1), ("\n", 1, "length")),
]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_scripted_stop_reasons_and_counts(scripted, tok, script, args, expected) -> None:
    cut, stop, final, max_tokens = args
    [group] = _call(scripted, [_prompt(tok, script, cut)], stop=stop, final_stop=final, max_tokens=max_tokens)
    assert _flat([group]) == [expected]
    assert group.prefill_tokens == cut


def test_scripted_step_proposal_counts_equal_the_tokenizer(scripted, tok, script) -> None:
    [[p]] = _call(scripted, [_prompt(tok, script, 7)])
    assert p.n_tokens == scripted.count_tokens(p.text + "\n\n") == len(tok(p.text + "\n\n")["input_ids"])
    assert not p.finished


def test_scripted_batched_positions_under_padding(scripted, tok, script) -> None:
    """One call with prefixes of many lengths gives each exactly its solo result."""
    cuts = [3, 25, 7, 12, 1]
    prompts = [_prompt(tok, script, c) for c in cuts]
    solo = [_flat(_call(scripted, [p], final_stop=["answer"])) for p in prompts]
    batched = _call(scripted, prompts, final_stop=["answer"], temperature=1.0, seed=3, n=2)
    assert [g.prefill_tokens for g in batched] == cuts
    for group, alone in zip(batched, solo, strict=True):
        assert _flat([group]) == alone * 2


def test_finished_rows_leave_the_batch_and_their_padding_is_dropped(tok, script) -> None:
    model = scripted_lm(script, tok)
    policy = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=0)
    seen: list[tuple[int, int]] = []

    def hook(_module, args, kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] == 1:  # decode steps only
            seen.append((ids.shape[0], kwargs["attention_mask"].shape[1]))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        long_first, short_last = _prompt(tok, script, 20), _prompt(tok, script, 8)
        out = _call(policy, [long_first, short_last])
    finally:
        handle.remove()
    assert _flat(out) == [(" a + b", 5, "step"), (" def add(a, b):\n    return a + b", 17, "step")]
    # Tokens 2..5 decode as a batch of 2; then the short prompt decodes alone, and its mask
    # holds only its own tokens (8 prompt + the fed generated ones), not 12 padding columns.
    assert [b for b, _ in seen] == [2] * 4 + [1] * 12
    assert seen[-1][1] == 8 + 16


# --- the random Qwen2: real RoPE + KV path -------------------------------------------


def test_n_proposals_per_prefix_and_prefill_counts(rand, tok) -> None:
    out = rand.propose(PROMPTS, n=3, stop=["\n\n"], max_tokens=12, temperature=1.0, seed=0)
    assert isinstance(rand, Policy)
    assert [len(g) for g in out] == [3, 3, 3, 3]
    assert [g.prefill_tokens for g in out] == [len(tok(p)["input_ids"]) for p in PROMPTS]
    reasons = set()
    for g in out:
        for p in g:
            assert 1 <= p.n_tokens <= 12
            # a row stops short of the cap only at a stop string or EOS
            assert p.n_tokens == 12 or p.stop_reason in ("step", "eos")
            assert p.stop_reason != "length" or p.n_tokens == 12
            reasons.add(p.stop_reason)
    assert "length" in reasons


def test_greedy_equals_model_generate(rand, tok) -> None:
    out = rand.propose(PROMPTS, n=2, stop=[], max_tokens=16, temperature=0)
    for prompt, group in zip(PROMPTS, out, strict=True):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        gen = rand.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=16, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
        ended = gen[-1] == tok.eos_token_id
        text = tok.decode(gen[:-1] if ended else gen, clean_up_tokenization_spaces=False)
        assert group[0] == group[1]
        assert (group[0].text, group[0].n_tokens) == (text, len(gen))
        assert group[0].stop_reason == ("eos" if ended else "length")


def test_seed_determinism(rand) -> None:
    kw = dict(n=3, stop=["\n\n"], max_tokens=10, temperature=1.0)
    a = rand.propose(PROMPTS, seed=7, **kw)
    b = rand.propose(PROMPTS, seed=7, **kw)
    c = rand.propose(PROMPTS, seed=8, **kw)
    assert _flat(a) == _flat(b)
    assert _flat(a) != _flat(c)
    assert len({p.text for p in a[0]}) == 3  # samples of one prefix differ


@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_batch_composition_invariance(tok, batch_size) -> None:
    policy = HFPolicy(random_lm(0, tok), tok, device="cpu", prefix_cache_bytes=0, batch_size=batch_size)
    kw = dict(n=3, stop=["\n\n"], max_tokens=10, temperature=0.9, top_p=0.95, seed=11)
    together = policy.propose(PROMPTS, **kw)
    alone = [policy.propose([p], **kw)[0] for p in PROMPTS]
    assert _flat(together) == _flat(alone)
    shuffled = policy.propose(PROMPTS[::-1], **kw)
    assert _flat(shuffled[::-1]) == _flat(together)


def test_repeated_prefix_draws_further_samples(rand) -> None:
    kw = dict(stop=["\n\n"], max_tokens=8, temperature=1.0, seed=2)
    twice = rand.propose([PROMPTS[0], PROMPTS[1], PROMPTS[0]], n=2, **kw)
    once = rand.propose([PROMPTS[0]], n=4, **kw)
    assert list(twice[0]) + list(twice[2]) == list(once[0])
    assert twice[0].prefill_tokens == once[0].prefill_tokens and twice[2].prefill_tokens == 0


def test_tiny_top_p_is_greedy(rand) -> None:
    greedy = rand.propose(PROMPTS, n=1, stop=[], max_tokens=8, temperature=0)
    nucleus = rand.propose(PROMPTS, n=2, stop=[], max_tokens=8, temperature=1.0, top_p=1e-6, seed=4)
    for g, s in zip(greedy, nucleus, strict=True):
        assert s[0] == s[1] == g[0]


def test_count_tokens_is_the_tokenizer_count(rand, tok) -> None:
    for text in PROMPTS + ["", "<|im_start|>user"]:
        assert rand.count_tokens(text) == len(tok(text, add_special_tokens=False)["input_ids"])


def test_from_pretrained_loads_and_proposes(tmp_path: Path) -> None:
    path = build_causal_lm(tmp_path / "lm")
    policy = HFPolicy.from_pretrained(str(path), device="cpu", dtype="float32", batch_size=4)
    assert policy.model.dtype == torch.float32 and policy.batch_size == 4
    out = policy.propose(["Step 1:"], n=2, stop=["\n\n"], max_tokens=3, temperature=1.0, seed=0)
    assert [p.n_tokens <= 3 for p in out[0]] == [True, True]
    with pytest.raises(ValueError, match="not a torch dtype"):
        HFPolicy.from_pretrained(str(path), dtype="bfloat17")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(prefixes="abc"), "list of strings"),
        (dict(n=0), "n must be"),
        (dict(max_tokens=0), "max_tokens must be"),
        (dict(temperature=-1.0), "temperature must be"),
        (dict(top_p=0.0), "top_p must be"),
        (dict(stop="\n\n"), "not a string"),
        (dict(stop=[""]), "non-empty"),
        (dict(final_stop=["\n\n"]), "both stop"),
        (dict(seed=1.5), "seed must be"),
    ],
)
def test_bad_requests_raise_clear_errors(rand, kwargs, error) -> None:
    args = dict(prefixes=["x"], n=1, stop=["\n\n"], max_tokens=4, temperature=1.0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=error):
        rand.propose(args.pop("prefixes"), **args)


def test_bad_construction_raises(tok) -> None:
    model = random_lm(0, tok)
    with pytest.raises(ValueError, match="batch_size"):
        HFPolicy(model, tok, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an int"):
        HFPolicy(model, tok, batch_size="8")  # e.g. an unconverted command-line string
    with pytest.raises(ValueError, match="prefix_cache_bytes"):
        HFPolicy(model, tok, prefix_cache_bytes=-1)
    with pytest.raises(ValueError, match="empty prefix"):
        HFPolicy(model, tok, device="cpu").propose([""], n=1, stop=[], max_tokens=2, temperature=0)
