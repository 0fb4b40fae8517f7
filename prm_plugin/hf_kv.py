"""KV-cache helpers over transformers' cache objects, shared by the HF policy's decode
loop (``prm_plugin.policy``) and the PRM scorer (``prm_plugin.prm``).

Reusing KV across calls needs the plain layout: every layer a full-attention
``DynamicLayer`` holding ``keys``/``values`` of shape ``(batch, heads, seq, head_dim)``.
Models with sliding-window, chunked, linear-attention or shared-KV layers still decode
through the model's own cache, only without cross-call reuse or column compaction.

``GrowingLayer``: transformers' ``DynamicLayer.update`` concatenates the new keys/values
onto the old ones, copying the whole layer cache at every decoded token: O(rows x length) bytes per
step. With many rows (a batched search) that copying was most of the decode time (see
``benchmarks/search_cost.py``). ``GrowingLayer`` keeps keys/values in buffers with spare
room along the sequence, writes each step's new positions in place and exposes the filled
part as views, so a step copies nothing until the buffer is full (then it grows by a
quarter plus 64 positions, one copy).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

#: Spare positions added when a buffer grows: at least this many, or a quarter of its length.
MIN_SPARE = 64


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` (``(batch, heads, seq, head_dim)`` keys/values) that appends in place.

    ``keys``/``values`` read as views of the filled positions and can be assigned like
    ``DynamicLayer``'s (selection, cropping and column dropping keep working).

    >>> layer = GrowingLayer(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    >>> k, v = layer.update(torch.ones(1, 1, 1, 4), torch.ones(1, 1, 1, 4))
    >>> tuple(k.shape), layer.capacity >= 3, float(k[0, 0, 2, 0])
    ((1, 1, 3, 4), True, 1.0)
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._n = self._nv = 0  # filled positions of keys and of values (equal between updates)
        super().__init__()
        self.device = keys.device
        self.keys, self.values = keys, values
        self.is_initialized = True

    @classmethod
    def from_layer(cls, layer: Any) -> GrowingLayer:
        return cls(layer.keys, layer.values)

    @classmethod
    def with_room(cls, keys: torch.Tensor, values: torch.Tensor, filled: int) -> GrowingLayer:
        """A layer over buffers ``keys``/``values`` whose first ``filled`` positions hold
        data; the rest is room for appending without a copy."""
        layer = cls(keys[..., :filled, :], values[..., :filled, :])
        layer._k, layer._v = keys, values
        return layer

    @property
    def keys(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[..., : self._n, :]

    @keys.setter
    def keys(self, tensor: torch.Tensor | None) -> None:
        self._k = tensor
        self._n = tensor.shape[-2] if tensor is not None and tensor.dim() == 4 else 0

    @property
    def values(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[..., : self._nv, :]

    @values.setter
    def values(self, tensor: torch.Tensor | None) -> None:
        self._v = tensor
        self._nv = tensor.shape[-2] if tensor is not None and tensor.dim() == 4 else 0

    @property
    def capacity(self) -> int:
        return 0 if self._k is None or self._k.dim() != 4 else self._k.shape[-2]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._k is None or self._v is None or self._k.dim() != 4:
            self.keys, self.values = key_states, value_states
            self.device, self.is_initialized = key_states.device, True
            return key_states, value_states
        start, end = self._n, self._n + key_states.shape[-2]
        if end > self.capacity:
            self._grow(end)
        assert self._k is not None and self._v is not None
        self._k[..., start:end, :] = key_states
        self._v[..., start:end, :] = value_states
        self._n = self._nv = end
        return self._k[..., :end, :], self._v[..., :end, :]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows ``indices``, spare room included (no regrowth on the next step)."""
        if self._k is not None and self._v is not None and self._k.dim() == 4:
            self._k, self._v = self._k[indices, ...], self._v[indices, ...]

    def _grow(self, need: int) -> None:
        assert self._k is not None and self._v is not None
        size = need + max(MIN_SPARE, need // 4)
        k = self._k.new_empty((*self._k.shape[:-2], size, self._k.shape[-1]))
        v = self._v.new_empty((*self._v.shape[:-2], size, self._v.shape[-1]))
        k[..., : self._n, :] = self._k[..., : self._n, :]
        v[..., : self._n, :] = self._v[..., : self._n, :]
        self._k, self._v = k, v




def plain_layout(model: Any) -> bool:
    """True when a fresh ``DynamicCache`` for ``model`` has only plain full-attention layers."""
    from transformers.cache_utils import DynamicCache
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
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized:
            cache.layers[i] = GrowingLayer.from_layer(layer)
