"""A trie of scored prefixes holding their KV cache, bounded by bytes (LRU).

A PRM input is a list of token-id segments: the question (or prompt) segment, then
one segment per step, each ending on the token that carries that step's score. The
trie is keyed by those segments, so ``(question, s1, s2)`` extends ``(question, s1)``
and best-of-N candidates of one question share its question node. Each node holds
the keys/values of its own segment only (all layers, shape ``(layers, kv_heads,
segment_len, head_dim)``) and the score of its step; a prefix's KV is the
concatenation along the path.

Eviction removes least-recently-used leaves first. ``touch`` moves a path to the
recent end leaf-first, so an ancestor is always more recent than its descendants and
the LRU end only ever holds leaves (or nodes whose children are pinned).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

Segment = tuple[int, ...]

_ids = count()


@dataclass(eq=False)
class Node:
    """One segment of a cached prefix.

    Attributes:
        key: the segment's token ids.
        parent: the node this segment extends (None for the root).
        keys / values: this segment's KV, ``(layers, kv_heads, len(key), head_dim)``.
        score: the step score at the segment's last token (None for a question segment).
    """

    key: Segment
    parent: Node | None
    keys: Any = None
    values: Any = None
    score: float | None = None
    nbytes: int = 0
    children: dict[Segment, Node] = field(default_factory=dict)
    uid: int = field(default_factory=lambda: next(_ids))

    def path(self) -> list[Node]:
        """Nodes from the first segment down to this one (the root excluded)."""
        out: list[Node] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            out.append(node)
            node = node.parent
        return out[::-1]


class PrefixCache:
    """The trie plus its byte accounting and LRU order.

    Args:
        max_bytes: budget for all cached KV tensors. It is enforced by ``evict``, which
            the scorer calls between forward passes; nodes pinned by queries still
            being scored are kept even when that exceeds the budget for a moment.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0 (0 turns the prefix cache off), got {max_bytes}.")
        self.max_bytes = max_bytes
        self.root = Node(key=(), parent=None)
        self.nbytes = 0
        self._lru: OrderedDict[int, Node] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lru)

    def longest_prefix(self, segments: Sequence[Segment]) -> list[Node]:
        """The cached nodes matching the first segments of ``segments``, in order."""
        out: list[Node] = []
        node = self.root
        for seg in segments:
            child = node.children.get(seg)
            if child is None:
                break
            out.append(child)
            node = child
        return out

    def insert(self, parent: Node | None, key: Segment, keys: Any, values: Any,
               score: float | None) -> Node:
        """Add (or replace) the child ``key`` of ``parent`` (None = root)."""
        parent = parent or self.root
        old = parent.children.get(key)
        if old is not None:
            self._forget(old)
        nbytes = _tensor_bytes(keys) + _tensor_bytes(values)
        node = Node(key=key, parent=parent, keys=keys, values=values, score=score, nbytes=nbytes)
        parent.children[key] = node
        self._lru[node.uid] = node
        self.nbytes += nbytes
        return node

    def touch(self, path: Sequence[Node]) -> None:
        """Mark a path as just used (leaf first, so ancestors end up more recent)."""
        for node in reversed(path):
            if node.uid in self._lru:
                self._lru.move_to_end(node.uid)

    def evict(self, pinned: Iterable[Node] = ()) -> int:
        """Drop least-recently-used leaves until within budget; returns bytes freed."""
        if self.nbytes <= self.max_bytes:
            return 0
        keep = {n.uid for n in pinned}
        freed = 0
        for node in list(self._lru.values()):
            if self.nbytes <= self.max_bytes:
                break
            if node.uid in keep or node.children:
                continue
            freed += node.nbytes
            self._forget(node)
        return freed

    def clear(self) -> None:
        self.root.children.clear()
        self._lru.clear()
        self.nbytes = 0

    def _forget(self, node: Node) -> None:
        for child in list(node.children.values()):
            self._forget(child)
        if node.parent is not None and node.parent.children.get(node.key) is node:
            del node.parent.children[node.key]
        if self._lru.pop(node.uid, None) is not None:
            self.nbytes -= node.nbytes
        node.keys = node.values = None


def _tensor_bytes(t: Any) -> int:
    if t is None:
        return 0
    return int(t.numel() * t.element_size())
