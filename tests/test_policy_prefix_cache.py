"""Prefix-KV reuse: the radix tree itself, and HFPolicy with and without it."""

from __future__ import annotations

import logging

import pytest
import torch
from test_policy_kit import SCRIPT, random_lm, scripted_lm, tokenizer
from tiny import tiny_qwen2_config
from transformers import AutoModelForCausalLM

from prm_plugin.policy.hf import HFPolicy
from prm_plugin.policy.prefix_cache import PrefixKVCache, kv_cat, kv_nbytes, kv_slice

# --- the radix tree ------------------------------------------------------------------


def _kv(ids: list[int]) -> tuple[torch.Tensor, ...]:
    """A fake two-tensor KV whose values are the token ids (easy to check after slicing)."""
    t = torch.tensor(ids, dtype=torch.float32).view(1, -1, 1)
    return (t, -t)


def _store(cache: PrefixKVCache, ids: list[int], calls: list[tuple[int, int]] | None = None) -> int:
    def kv_of(start: int, end: int):
        if calls is not None:
            calls.append((start, end))
        return kv_slice(_kv(ids), start, end)

    return cache.insert(ids, kv_of)


def _matched(cache: PrefixKVCache, ids: list[int], limit: int | None = None) -> list[int]:
    n, pieces = cache.match(ids, limit)
    got = kv_cat(pieces)[0].flatten().long().tolist() if pieces else []
    assert len(got) == n
    return got


def _total_bytes(cache: PrefixKVCache) -> int:
    return sum(kv_nbytes(node.kv) for node in cache._nodes())


def test_insert_and_match_with_splits() -> None:
    cache = PrefixKVCache(1 << 20)
    calls: list[tuple[int, int]] = []
    assert _store(cache, [1, 2, 3, 4, 5], calls) == 5
    assert _store(cache, [1, 2, 3, 9, 9], calls) == 2  # splits the edge after [1, 2, 3]
    assert _store(cache, [1, 2], calls) == 0  # already there (inside an edge)
    assert calls == [(0, 5), (3, 5)]  # only the missing parts were asked for
    assert _matched(cache, [1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5]
    assert _matched(cache, [1, 2, 3, 9, 7]) == [1, 2, 3, 9]
    assert _matched(cache, [1, 2, 3, 4, 5], limit=4) == [1, 2, 3, 4]
    assert _matched(cache, [7, 1]) == []
    assert cache.n_tokens == 7
    assert cache.nbytes == _total_bytes(cache) == 7 * 2 * 4


def test_lru_eviction_by_bytes_keeps_recent_paths() -> None:
    per_token = 2 * 4  # two float32 tensors, one value per token
    cache = PrefixKVCache(max_bytes=10 * per_token)
    _store(cache, [1, 2, 3, 4])
    _store(cache, [5, 6, 7, 8])
    _matched(cache, [1, 2, 3, 4])  # touch: [5..8] is now the least recently used
    _store(cache, [1, 2, 3, 4, 10, 11, 12])  # 11 tokens > 10: evict the LRU leaf
    assert _matched(cache, [5, 6, 7, 8]) == []
    assert _matched(cache, [1, 2, 3, 4, 10, 11, 12]) == [1, 2, 3, 4, 10, 11, 12]
    assert cache.nbytes == _total_bytes(cache) == 7 * per_token <= cache.max_bytes
    _store(cache, list(range(100, 120)))  # larger than the whole budget: kept nowhere
    assert cache.nbytes <= cache.max_bytes and cache.nbytes == _total_bytes(cache)


def test_zero_budget_stores_nothing_and_negative_is_refused() -> None:
    cache = PrefixKVCache(0)
    assert _store(cache, [1, 2, 3]) == 0 and cache.match([1, 2, 3]) == (0, [])
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixKVCache(-1)


# --- HFPolicy with reuse ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


def _extend(policy: HFPolicy, prompts: list[str], *, steps: int, stop: list[str], temperature: float,
            keep: int = 2, n: int = 2) -> tuple[list, int]:
    """A beam-like workload: each round extends the first ``keep`` step proposals of every
    prefix by their text and the stop string that ended them."""
    prefixes, log, prefill = list(prompts), [], 0
    for k in range(steps):
        out = policy.propose(prefixes, n=n, stop=stop, max_tokens=12, temperature=temperature, seed=k)
        log.append([(p.text, p.n_tokens, p.stop_reason) for g in out for p in g])
        prefill += sum(g.prefill_tokens for g in out)
        nxt = []
        for pre, group in zip(prefixes, out, strict=True):
            steps_ = [p for p in group if p.stop_reason == "step"][:keep]
            nxt += [pre + p.text + _which_stop(pre, p.text, stop) for p in steps_]
        # a fresh prompt joins each round, so cache hits of different lengths share a batch
        prefixes = nxt[:6] + [prompts[k % len(prompts)] + " x"]
    return log, prefill


def _which_stop(_pre: str, _text: str, stop: list[str]) -> str:
    return stop[0]


def test_scripted_reuse_prefills_only_the_delimiter(tok) -> None:
    script = tok(SCRIPT)["input_ids"] + [tok.eos_token_id]
    policy = HFPolicy(scripted_lm(script, tok), tok, device="cpu", prefix_cache_bytes=1 << 24)
    prompt = tok.decode(script[:3])
    [[first]] = policy.propose([prompt], n=1, stop=["\n\n"], max_tokens=20, temperature=0)
    assert first.text == " 2."
    [group] = policy.propose([prompt + first.text + "\n\n"], n=1, stop=["\n\n"], max_tokens=20, temperature=0)
    # Cached: 3 prompt tokens + " 2", ".", "\n" (fed); the second "\n" was sampled, never fed.
    assert group.prefill_tokens == 1
    assert group[0].text == "So def add(a, b):\n    return a + b"
    # The same prefix again: everything is cached but its last token is re-run for its logits.
    [again] = policy.propose([prompt], n=1, stop=["\n\n"], max_tokens=20, temperature=0)
    assert again.prefill_tokens == 1 and again[0] == first


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("budget", [1 << 26, 6000])  # ample, and small enough to evict and split
def test_reuse_gives_the_same_outputs_with_fewer_prefill_tokens(tok, temperature, budget) -> None:
    model = random_lm(1, tok)
    prompts = ["Step 1: 3 + 4", "def add(a, b):\n    return", "x = [1, 2, 3]"]
    kw = dict(steps=4, stop=["e", " ", "t"], temperature=temperature)
    cached = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=budget, batch_size=5)
    plain = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=0, batch_size=5)
    log_c, prefill_c = _extend(cached, prompts, **kw)
    log_p, prefill_p = _extend(plain, prompts, **kw)
    assert log_c == log_p
    assert sum(r == "step" for rnd in log_p for _, _, r in rnd) > 10  # the workload really extends
    assert prefill_c < prefill_p
    assert cached.prefix_cache.nbytes <= budget


def test_models_without_the_plain_kv_layout_run_without_reuse(tok, caplog) -> None:
    torch.manual_seed(0)
    config = tiny_qwen2_config(len(tok), use_sliding_window=True, sliding_window=8, max_window_layers=0,
                               tie_word_embeddings=False, initializer_range=0.2)
    model = AutoModelForCausalLM.from_config(config).eval()
    with caplog.at_level(logging.WARNING):
        policy = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=1 << 20)
    assert policy._decoder.prefix_cache is None and "prefix-KV reuse is off" in caplog.text
    prompt = "Step 1: 3 + 4 = 7, and then some more words to pass the window"
    ours = policy.propose([prompt], n=1, stop=[], max_tokens=6, temperature=0)[0][0]
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    gen = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                         eos_token_id=None, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:]
    assert ours.text == tok.decode(gen, clean_up_tokenization_spaces=False)


def test_default_budget_on_cpu(tok) -> None:
    policy = HFPolicy(random_lm(0, tok), tok, device="cpu")
    assert policy.prefix_cache.max_bytes == 1 << 30 and policy._decoder.prefix_cache is not None
