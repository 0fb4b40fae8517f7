"""Small helpers over transformers' KV cache objects used by the HF decode loop.

Reusing KV across calls needs the plain layout: every layer a full-attention
``DynamicLayer`` holding ``keys``/``values`` of shape ``(batch, heads, seq, head_dim)``.
Models with sliding-window, chunked, linear-attention or shared-KV layers still decode
through the model's own cache, only without cross-call reuse or column compaction.
"""

from __future__ import annotations

from typing import Any

import torch


def plain_layout(model: Any) -> bool:
    """True when a fresh ``DynamicCache`` for ``model`` has only plain full-attention layers."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # pragma: no cover - transformers < 4.56 has no cache layers
        return False
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # noqa: BLE001 - any model whose config the cache cannot read
        return False
    layers = getattr(cache, "layers", None) or []
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def make_cache(model: Any, tensors: list[torch.Tensor] | None) -> Any:
    """A ``DynamicCache`` for ``model``, optionally filled with ``[k0, v0, k1, v1, ...]``."""
    from transformers.cache_utils import DynamicCache

    if tensors is None:
        return DynamicCache(config=model.config)
    pairs = [(tensors[i], tensors[i + 1]) for i in range(0, len(tensors), 2)]
    return DynamicCache(pairs, config=model.config)


def growing_cache(model: Any, tensors: list[torch.Tensor], filled: int | None = None) -> Any:
    """A plain-layout ``DynamicCache`` whose layers are ``GrowingLayer``s over
    ``[k0, v0, k1, v1, ...]`` themselves (no copy). With ``filled``, only the first
    ``filled`` positions hold data and the rest is room to append into."""
    from transformers.cache_utils import DynamicCache

    from prm_plugin.policy._growing_cache import GrowingLayer

    cache = DynamicCache(config=model.config) if model is not None else DynamicCache()
    n = tensors[0].shape[-2] if filled is None else filled
    cache.layers = [GrowingLayer.with_room(tensors[i], tensors[i + 1], n) for i in range(0, len(tensors), 2)]
    return cache


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """``[k0, v0, k1, v1, ...]`` of a plain-layout cache, each ``(batch, heads, seq, dim)``."""
    out: list[torch.Tensor] = []
    for layer in cache.layers:
        out.extend((layer.keys, layer.values))
    return out


def keep_columns(cache: Any, columns: torch.Tensor) -> None:
    """Keep only the sequence positions ``columns`` of a plain-layout cache (in place)."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(-2, columns)
        layer.values = layer.values.index_select(-2, columns)


def append_in_place(cache: Any) -> None:
    """Swap each plain layer of ``cache`` for a ``GrowingLayer`` holding the same tensors, so
    decoding writes new positions in place instead of re-concatenating the whole cache."""
    from transformers.cache_utils import DynamicLayer

    from prm_plugin.policy._growing_cache import GrowingLayer

    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized:
            cache.layers[i] = GrowingLayer.from_layer(layer)
