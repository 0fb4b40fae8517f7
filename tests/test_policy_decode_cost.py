"""The HF decode loop's cache handling, tuned with ``benchmarks/search_cost.py``:
keys/values appended in place (``GrowingLayer``) and finished rows dropped from the batch
only once they are a quarter of it. Both must leave every output unchanged."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny import build_causal_lm

from prm_plugin import hf_kv as _kv
from prm_plugin.hf_kv import MIN_SPARE, GrowingLayer
from prm_plugin.policy._decode import DROP_FINISHED

PROMPTS = ["Question: what is 12 - 5? Let's think step by step.\n\n", "x = [1, 2, 3]\n\n"]


def _kv_pair(batch: int, seq: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, seq, 4, generator=g), torch.randn(batch, 2, seq, 4, generator=g)


def test_growing_layer_matches_concatenation_and_keeps_its_spare_room() -> None:
    k0, v0 = _kv_pair(3, 5, 0)
    layer = GrowingLayer(k0, v0)
    ref_k, ref_v = k0, v0
    for step in range(1, 4):
        k, v = _kv_pair(3, 1, step)
        got_k, got_v = layer.update(k, v)
        ref_k, ref_v = torch.cat([ref_k, k], dim=-2), torch.cat([ref_v, v], dim=-2)
        assert torch.equal(got_k, ref_k) and torch.equal(got_v, ref_v)
    assert layer.get_seq_length() == 8 and layer.capacity == 6 + MIN_SPARE  # grew once, at step 1
    storage = layer.keys.untyped_storage().data_ptr()
    layer.update(*_kv_pair(3, 1, 9))
    assert layer.keys.untyped_storage().data_ptr() == storage  # written in place, no copy

    rows = torch.tensor([2, 0])
    layer.batch_select_indices(rows)
    assert torch.equal(layer.keys[..., :8, :], ref_k[rows]) and layer.capacity == 6 + MIN_SPARE
    cols = torch.tensor([0, 3, 8])
    _kv.keep_columns(_Cache([layer]), cols)  # keys and values are cut one after the other
    assert layer.keys.shape[-2] == layer.values.shape[-2] == 3
    assert torch.equal(layer.values[..., :2, :], ref_v[rows][..., [0, 3], :])


class _Cache:
    def __init__(self, layers: list[Any]) -> None:
        self.layers = layers


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from prm_plugin.policy.hf import HFPolicy

    path = build_causal_lm(tmp_path_factory.mktemp("decode_cost") / "policy")
    policy = HFPolicy.from_pretrained(str(path), device="cpu", prefix_cache_bytes=0)
    policy.propose(PROMPTS, n=2, stop=[], temperature=1.0, seed=0, max_tokens=1)  # runs the shared-prefix probe
    return policy


def _decode_batches(policy: Any, prefixes: list[str], **kw: Any) -> tuple[Any, list[tuple[int, str]]]:
    """Run ``propose`` and record (rows, cache layer type) of every one-token decode step."""
    seen: list[tuple[int, str]] = []

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        if kwargs["input_ids"].shape[1] == 1:
            cache = next(v for k, v in kwargs.items() if k in ("cache", "past_key_values"))
            seen.append((kwargs["input_ids"].shape[0], type(cache.layers[0]).__name__))

    handle = policy.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        return policy.propose(prefixes, stop=[], temperature=1.0, seed=3, **kw), seen
    finally:
        handle.remove()


def test_finished_rows_ride_along_until_a_quarter_of_the_batch(policy: Any) -> None:
    assert DROP_FINISHED == 4
    # 4 rows, 2 of which stop after 2 tokens: half the batch, dropped at once
    out, seen = _decode_batches(policy, PROMPTS, n=2, max_tokens=[2, 9])
    alone = [policy.propose([p], n=2, stop=[], temperature=1.0, seed=3, max_tokens=c)[0]
             for p, c in zip(PROMPTS, (2, 9), strict=True)]
    assert [(p.text, p.n_tokens) for g in out for p in g] == [(p.text, p.n_tokens) for g in alone for p in g]
    assert [p.n_tokens for p in out[0]] == [2, 2] and min(p.n_tokens for p in out[1]) > 2
    assert [rows for rows, _ in seen[:2]] == [4, 2]
    assert all(kind == "GrowingLayer" for _, kind in seen)

    # 8 rows, 1 of which stops after 2 tokens: it rides along on a pad token
    out, seen = _decode_batches(policy, [PROMPTS[0]] + [PROMPTS[1]] * 7, n=1, max_tokens=[2] + [9] * 7)
    lengths = sorted(p.n_tokens for g in out for p in g)
    assert lengths[0] == 2 and lengths[1] > 2
    assert seen[1][0] == 8
