"""Shared-prefix attention in the HF decode loop: the samples of a prefix read its KV once.

The attention function must equal full attention over ``[prefix, generated]``; the
decode loop must give the same outputs, token counts and prefix-cache contents with and
without it; and a model it does not serve must be detected by the probe, not mis-scored.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_policy_kit import random_lm, tokenizer
from test_policy_prefix_cache import _extend

from prm_plugin.policy import _shared_prefix
from prm_plugin.policy._decode import SHARE_MIN_ROWS
from prm_plugin.policy._shared_prefix import SharedPrefix
from prm_plugin.policy.hf import HFPolicy


class _Layer:
    layer_idx = 0


def _reference(q, prefix_k, prefix_v, prefix_mask, job, k, v):  # noqa: ANN001, ANN202
    """Plain attention of each row over its own copy of the prefix plus its own tokens."""
    groups = q.shape[1] // prefix_k.shape[1]
    keys = torch.cat([prefix_k[job], k], dim=-2).repeat_interleave(groups, dim=1)
    values = torch.cat([prefix_v[job], v], dim=-2).repeat_interleave(groups, dim=1)
    mask = torch.cat([prefix_mask[job], torch.ones(len(job), k.shape[-2])], dim=1).bool()[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    return out.transpose(1, 2)


@pytest.mark.parametrize("kv_heads", [4, 2])  # plain and grouped-query attention
@pytest.mark.parametrize("generated", [0, 5])
def test_attention_equals_full_attention_over_prefix_and_own_tokens(kv_heads: int, generated: int) -> None:
    g = torch.Generator().manual_seed(kv_heads + generated)
    jobs, width, dim, heads = 3, 7, 8, 4
    pk, pv = (torch.randn(jobs, kv_heads, width, dim, generator=g) for _ in range(2))
    mask = torch.ones(jobs, width)
    mask[0, :3] = 0  # left padding of a shorter prefix
    mask[2, 2:4] = 0  # middle padding (cached part, then new part)
    job = torch.tensor([0, 0, 1, 1, 1, 2])  # uneven rows per prefix
    kv = [pk, pv]
    shared = SharedPrefix.build(kv, mask, job)
    assert not shared.dense and shared.group == 3
    rows = len(job)
    q = torch.randn(rows, heads, 1, dim, generator=g)
    k, v = (torch.randn(rows, kv_heads, generated, dim, generator=g) for _ in range(2))
    got, _ = _shared_prefix.attention(_Layer(), q, k, v, None, scaling=dim**-0.5, prm_shared_prefix=shared)
    torch.testing.assert_close(got, _reference(q, pk, pv, mask, job, k, v), atol=1e-5, rtol=1e-5)

    # after rows leave: prefix 1 is gone, the others keep their rows in order
    keep = torch.tensor([0, 5])
    shared.select(keep)
    assert shared.mask.shape[0] == 2 and shared.job.tolist() == [0, 1]
    got, _ = _shared_prefix.attention(_Layer(), q[keep], k[keep], v[keep], None, scaling=dim**-0.5,
                                      prm_shared_prefix=shared)
    torch.testing.assert_close(got, _reference(q[keep], pk[[0, 2]], pv[[0, 2]], mask[[0, 2]],
                                               torch.tensor([0, 1]), k[keep], v[keep]), atol=1e-5, rtol=1e-5)


def test_dense_layout_needs_no_scatter_and_materialize_rebuilds_the_plain_layout() -> None:
    kv = [torch.randn(2, 2, 4, 3), torch.randn(2, 2, 4, 3)]
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    shared = SharedPrefix.build(kv, mask, torch.tensor([0, 0, 1, 1]))
    assert shared.dense and shared.slot.tolist() == [0, 1, 2, 3]
    suffix = [torch.randn(4, 2, 2, 3), torch.randn(4, 2, 2, 3)]
    tensors, full_mask = shared.materialize(suffix)
    assert torch.equal(tensors[0][3], torch.cat([kv[0][1], suffix[0][3]], dim=-2))
    assert full_mask.tolist()[0] == [0, 1, 1, 1, 1, 1]
    # a row's KV for the prefix cache: real prefix tokens, then the generated ones fed so far
    part = shared.row_kv(0, suffix, fed=1, start=0, end=4)
    assert torch.equal(part[1], torch.cat([kv[1][0][:, 1:], suffix[1][0][:, :1]], dim=-2))
    assert torch.equal(shared.row_kv(0, suffix, fed=2, start=3, end=5)[0], suffix[0][0][:, :2])
    with pytest.raises(RuntimeError, match="KV layout error"):
        shared.row_kv(0, suffix, fed=1, start=0, end=5)


@pytest.fixture(scope="module")
def tok() -> Any:
    return tokenizer()


def _propose(policy: HFPolicy, **kw: Any) -> list[list[tuple[str, int, str]]]:
    out = policy.propose(**kw)
    return [[(p.text, p.n_tokens, p.stop_reason) for p in g] for g in out]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_decode_outputs_are_the_same_with_and_without_sharing(tok: Any, temperature: float) -> None:
    model = random_lm(3, tok)
    shared = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=0)
    plain = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=0, shared_prefix_attention=False)
    assert shared._decoder._shared_ok() and not plain._decoder._shared_ok()
    calls = []
    real = _shared_prefix.attention

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1].shape[0])
        return real(*args, **kwargs)

    from transformers import AttentionInterface

    AttentionInterface._global_mapping[_shared_prefix.NAME] = counting
    try:
        kw = dict(prefixes=["Step 1: 3 + 4", "def add(a, b):", "x = [1, 2, 3]"], n=4, stop=["e", " "],
                  max_tokens=[3, 12, 20], temperature=temperature, seed=5)
        got = _propose(shared, **kw)
    finally:
        AttentionInterface._global_mapping[_shared_prefix.NAME] = real
    assert got == _propose(plain, **kw)
    if temperature == 0:  # greedy decodes one row per prefix: nothing to share
        assert not calls
    else:  # the shared path ran, then handed over to the plain one once rows per prefix fell
        assert calls and calls[0] == 12 and min(calls) >= SHARE_MIN_ROWS
        decode_steps = max(n for g in got for _, n, _ in g) - 1
        assert len(calls) // 2 < decode_steps  # 2 layers a step; the last steps ran plain


def test_prefix_cache_fills_the_same_through_the_shared_path(tok: Any) -> None:
    model = random_lm(1, tok)
    prompts = ["Step 1: 3 + 4", "def add(a, b):\n    return", "x = [1, 2, 3]"]
    kw = dict(steps=4, stop=["e", " ", "t"], temperature=1.0, n=3)
    shared = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=1 << 26, batch_size=9)
    plain = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=1 << 26, batch_size=9,
                     shared_prefix_attention=False)
    log_s, prefill_s = _extend(shared, prompts, **kw)
    log_p, prefill_p = _extend(plain, prompts, **kw)
    assert log_s == log_p and prefill_s == prefill_p
    assert shared.prefix_cache.n_tokens == plain.prefix_cache.n_tokens
    for node_s, node_p in zip(shared.prefix_cache._nodes(), plain.prefix_cache._nodes(), strict=True):
        assert node_s.key == node_p.key
        for a, b in zip(node_s.kv, node_p.kv, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_probe_turns_sharing_off_when_the_attention_disagrees(tok: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AttentionInterface

    def prefix_blind(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *a: Any,
                     **kw: Any) -> tuple[torch.Tensor, None]:
        # a model whose attention never sees the shared prefix (e.g. it ignores the dispatch)
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key.repeat_interleave(query.shape[1] // key.shape[1], 1),
            value.repeat_interleave(query.shape[1] // key.shape[1], 1))
        return out.transpose(1, 2), None

    monkeypatch.setitem(AttentionInterface._global_mapping, _shared_prefix.NAME, prefix_blind)
    model = random_lm(2, tok)
    assert not _shared_prefix.supports(model)
    assert model.config._attn_implementation != _shared_prefix.NAME  # switched back
    policy = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=0)
    plain = HFPolicy(model, tok, device="cpu", prefix_cache_bytes=0, shared_prefix_attention=False)
    kw = dict(prefixes=["Step 1: 3 + 4"], n=3, stop=[], max_tokens=6, temperature=0.0)
    assert _propose(policy, **kw) == _propose(plain, **kw) and not policy._decoder._shared_ok()


def test_half_precision_stays_close_to_float32_attention() -> None:
    g = torch.Generator().manual_seed(7)
    pk, pv = (torch.randn(2, 2, 9, 8, generator=g) for _ in range(2))
    mask = torch.ones(2, 9)
    mask[1, :4] = 0
    job = torch.tensor([0, 0, 0, 1])
    q = torch.randn(4, 4, 1, 8, generator=g)
    k, v = (torch.randn(4, 2, 3, 8, generator=g) for _ in range(2))
    want = _reference(q, pk, pv, mask, job, k, v)
    bf = [t.bfloat16() for t in (pk, pv, q, k, v)]
    shared = SharedPrefix.build(bf[:2], mask, job)
    got, _ = _shared_prefix.attention(_Layer(), bf[2], bf[3], bf[4], None, scaling=8**-0.5, prm_shared_prefix=shared)
    assert got.dtype == torch.bfloat16 and shared.bias.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=3e-2)


def test_stored_pieces_are_copies_and_uneven_prefixes_are_not_shared() -> None:
    from prm_plugin.policy._decode import _worth_sharing

    kv = [torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)]  # one KV head: slices of a row look contiguous
    shared = SharedPrefix.build(kv, torch.ones(1, 3), torch.tensor([0, 0]))
    suffix = [torch.randn(2, 1, 8, 4), torch.randn(2, 1, 8, 4)]
    part = shared.row_kv(1, suffix, fed=2, start=3, end=5)
    assert torch.equal(part[0], suffix[0][1, :, :2])
    # the prefix cache must not keep the whole decode buffer alive through a view
    assert part[0].untyped_storage().nbytes() == part[0].numel() * part[0].element_size()

    assert _worth_sharing(rows=16, jobs=4, group=4)
    assert not _worth_sharing(rows=6, jobs=4, group=3)  # under two rows per prefix
    assert not _worth_sharing(rows=24, jobs=9, group=16)  # 8 single-row prefixes and one of 16: a padded grid
