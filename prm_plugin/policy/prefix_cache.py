"""A radix tree of token ids holding KV tensors, bounded by bytes with LRU eviction.

The HF policy keeps the keys/values of every prefix it prefilled and every step it
generated, so a later call whose prefix extends an earlier one (beam search and MCTS
extend the same prefixes step after step) prefills only the tokens not already cached.

Each edge holds a run of token ids and, for those tokens, a tuple of tensors sliced
along the sequence dimension (``dim=-2``; the HF layout ``(heads, seq, head_dim)`` per
layer, keys and values alternating). The tree is keyed by token ids only: the caller
decides how text becomes ids.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

KV = tuple[torch.Tensor, ...]


def kv_nbytes(kv: KV) -> int:
    return sum(t.numel() * t.element_size() for t in kv)


def kv_slice(kv: KV, start: int, end: int | None) -> KV:
    return tuple(t[..., start:end, :] for t in kv)


def kv_cat(pieces: Sequence[KV]) -> KV:
    """Concatenate KV pieces along the sequence dimension."""
    if len(pieces) == 1:
        return pieces[0]
    return tuple(torch.cat(parts, dim=-2) for parts in zip(*pieces, strict=True))


@dataclass(eq=False)
class _Node:
    key: tuple[int, ...]
    kv: KV
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)
    last_used: int = 0

    @property
    def nbytes(self) -> int:
        return kv_nbytes(self.kv)


class PrefixKVCache:
    """Token-id radix tree of KV slices, least-recently-used eviction above ``max_bytes``.

    Args:
        max_bytes: bound on the bytes of KV tensors held; 0 keeps nothing.

    Example:
        >>> import torch
        >>> cache = PrefixKVCache(max_bytes=1 << 20)
        >>> kv = (torch.arange(4.0).view(1, 4, 1),)          # one tensor, 4 tokens
        >>> cache.insert([1, 2, 3, 4], lambda s, e: kv_slice(kv, s, e))
        >>> n, pieces = cache.match([1, 2, 9], limit=3)
        >>> n, kv_cat(pieces)[0].flatten().tolist()
        (2, [0.0, 1.0])
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0 disables the cache), got {max_bytes}.")
        self.max_bytes = max_bytes
        self._root = _Node(key=(), kv=(), parent=None)
        self._clock = itertools.count(1)
        self.nbytes = 0
        self.n_tokens = 0

    def clear(self) -> None:
        self._root = _Node(key=(), kv=(), parent=None)
        self.nbytes = self.n_tokens = 0

    def match(self, ids: Sequence[int], limit: int | None = None) -> tuple[int, list[KV]]:
        """The longest cached prefix of ``ids[:limit]``: its length and its KV pieces
        (views, in order; concatenate with ``kv_cat``). Marks the path as used."""
        limit = len(ids) if limit is None else min(limit, len(ids))
        node, pos, pieces = self._root, 0, []
        now = next(self._clock)
        while pos < limit:
            child = node.children.get(ids[pos])
            if child is None:
                break
            common = _common_len(child.key, ids, pos, limit)
            child.last_used = now
            pieces.append(kv_slice(child.kv, 0, common) if common < len(child.key) else child.kv)
            pos += common
            if common < len(child.key):
                break
            node = child
        return pos, pieces

    def insert(self, ids: Sequence[int], kv_of: Callable[[int, int], KV]) -> int:
        """Store ``ids``; ``kv_of(start, end)`` gives the KV of ``ids[start:end]`` and is
        called only for the part not already cached. Returns the tokens newly stored."""
        if self.max_bytes == 0 or not ids:
            return 0
        node, pos = self._root, 0
        now = next(self._clock)
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                break
            common = _common_len(child.key, ids, pos, len(ids))
            if common < len(child.key):
                child = self._split(child, common)
            child.last_used = now
            node, pos = child, pos + common
        if pos == len(ids):
            return 0
        kv = tuple(t.contiguous() for t in kv_of(pos, len(ids)))
        leaf = _Node(key=tuple(ids[pos:]), kv=kv, parent=node, last_used=now)
        node.children[ids[pos]] = leaf
        self.nbytes += leaf.nbytes
        self.n_tokens += len(leaf.key)
        self._evict()
        return len(leaf.key)

    def _split(self, child: _Node, at: int) -> _Node:
        """Cut ``child``'s edge after ``at`` tokens; returns the new upper node. Both halves
        are cloned so evicting one frees its memory."""
        assert child.parent is not None
        upper = _Node(
            key=child.key[:at],
            kv=tuple(t.clone() for t in kv_slice(child.kv, 0, at)),
            parent=child.parent,
            last_used=child.last_used,
        )
        child.parent.children[child.key[0]] = upper
        old = child.nbytes
        child.key = child.key[at:]
        child.kv = tuple(t.clone() for t in kv_slice(child.kv, at, None))
        child.parent = upper
        upper.children[child.key[0]] = child
        self.nbytes += upper.nbytes + child.nbytes - old
        return upper

    def _evict(self) -> None:
        if self.nbytes <= self.max_bytes:
            return
        heap = [(n.last_used, id(n), n) for n in self._nodes() if not n.children]
        heapq.heapify(heap)
        while self.nbytes > self.max_bytes and heap:
            _, _, leaf = heapq.heappop(heap)
            parent = leaf.parent
            assert parent is not None
            del parent.children[leaf.key[0]]
            self.nbytes -= leaf.nbytes
            self.n_tokens -= len(leaf.key)
            if parent is not self._root and not parent.children:
                heapq.heappush(heap, (parent.last_used, id(parent), parent))

    def _nodes(self) -> list[_Node]:
        out, todo = [], list(self._root.children.values())
        while todo:
            node = todo.pop()
            out.append(node)
            todo.extend(node.children.values())
        return out


def _common_len(key: tuple[int, ...], ids: Sequence[int], pos: int, limit: int) -> int:
    n = min(len(key), limit - pos)
    i = 0
    while i < n and key[i] == ids[pos + i]:
        i += 1
    return i
