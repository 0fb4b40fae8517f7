"""Prefixes longer than the policy's context: the ``on_overflow`` rule every backend shares.

Pure Python (no torch), so the vLLM backend and tests use it without a model.

A prefix of ``L`` tokens fits a context of ``C`` positions when it leaves room to
generate: ``L + min(max_tokens, C // 4) <= C`` (the room asked for is the token cap, at
most a quarter of the context, so a large cap never forces a short prompt to be cut).
Generation never runs past the context: a row's cap is lowered to ``C - L`` (it then
ends with ``stop_reason="length"``, as vLLM does). A prefix that does not fit is, by
``on_overflow``:

* ``"truncate"`` (default): cut from the left to ``C - min(max_tokens, C // 4)`` tokens
  (a leading BOS is kept), as lm-eval's HF model does; the continuation follows what is
  left. The steps at the end of a search prefix survive; the prompt's start goes first.
* ``"skip"``: not continued (no proposals; ``PrefixProposals.overflow == "skipped"``).
* ``"error"``: ``ContextOverflowError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prm_plugin.search import ContextOverflowError


@dataclass(frozen=True)
class Fit:
    """How one prefix runs: the ids kept, tokens cut, and the cap left for generation."""

    ids: list[int]
    cut: int
    cap: int
    skipped: bool = False

    @property
    def overflow(self) -> Literal["truncated", "skipped"] | None:
        return "skipped" if self.skipped else "truncated" if self.cut else None


def room_needed(cap: int, context: int) -> int:
    """Positions a prefix must leave free: its token cap, at most a quarter of the context."""
    return min(cap, context // 4)


def fit_prefix(ids: Sequence[int], cap: int, context: int | None, on_overflow: str, *,
               keep_head: int = 0, index: int = 0) -> Fit:
    """Apply the context rule (module docstring) to one prefix's token ids.

    Args:
        ids: the prefix as the model would run it.
        cap: the largest ``max_tokens`` asked of this prefix.
        context: the model's context in positions (None: unlimited).
        on_overflow: ``"truncate"``, ``"skip"`` or ``"error"``.
        keep_head: leading ids never cut (a BOS token).
        index: the prefix's position in the call (for the error message).

    >>> fit_prefix([1, 2, 3, 4, 5, 6, 7], 2, 8, "truncate", keep_head=1)
    Fit(ids=[1, 3, 4, 5, 6, 7], cut=1, cap=2, skipped=False)
    >>> fit_prefix([1, 2, 3], 100, 8, "truncate").cap  # fits; generation stops at the context
    5
    """
    ids = list(ids)
    if context is None:
        return Fit(ids, 0, cap)
    keep = context - room_needed(cap, context)
    if len(ids) <= keep:
        return Fit(ids, 0, max(1, min(cap, context - len(ids))))
    if on_overflow == "error":
        raise ContextOverflowError(
            f"Prefix {index} takes {len(ids)} tokens; with room for {room_needed(cap, context)} generated "
            f"tokens it needs more than the policy's context of {context} positions (on_overflow=error). "
            "Use on_overflow=truncate (cut the prompt from the left) or skip, a shorter prompt, or a "
            "longer-context model."
        )
    if on_overflow == "skip":
        return Fit([], 0, 0, skipped=True)
    head = ids[: min(keep_head, keep - 1)]
    kept = head + ids[len(ids) - (keep - len(head)):]
    return Fit(kept, len(ids) - len(kept), max(1, min(cap, context - len(kept))))
