"""Per-row random streams and next-token sampling.

Every (seed, prefix text, sample index) owns a private stream of uniforms, and a token
is drawn by inverting the (nucleus-truncated) CDF at that row's next uniform. So a row's
continuation depends only on its own stream and its own logits, never on which other
rows share the batch: batched and one-at-a-time runs agree up to float noise in the
logits (a flip needs a uniform within ~1e-6 of a CDF step).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import torch


def row_seed(seed: int, prefix: str, index: int) -> int:
    """A 64-bit seed for one row's stream, stable across runs, machines and Python versions.

    >>> row_seed(0, "abc", 1) == row_seed(0, "abc", 1) != row_seed(0, "abc", 2)
    True
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{seed}\x1f{index}\x1f".encode())
    h.update(prefix.encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "little")


def row_stream(seed: int, prefix: str, index: int) -> random.Random:
    """The row's private stream of uniforms in [0, 1)."""
    return random.Random(row_seed(seed, prefix, index))


def fresh_seed() -> int:
    """A base seed for a call made with ``seed=None`` (not reproducible by design)."""
    return random.SystemRandom().getrandbits(63)


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    uniforms: Sequence[float] | None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` (rows, vocab).

    ``temperature == 0`` is greedy (argmax, first index on ties). Otherwise the softmax at
    ``temperature`` is truncated to the smallest set of most likely tokens whose mass
    reaches ``top_p`` and sampled by inverse CDF at ``uniforms[i]``.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    if uniforms is None or len(uniforms) != logits.shape[0]:
        raise ValueError("sampling at temperature > 0 needs one uniform per row.")
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    order: torch.Tensor | None = None
    if top_p < 1.0:
        # Stable sort: ties keep vocabulary order, so the result is deterministic on GPU too.
        probs, order = probs.sort(dim=-1, descending=True, stable=True)
        keep = (probs.cumsum(dim=-1) - probs) < top_p  # always keeps the most likely token
        probs = probs * keep
    # float64 CDF: the uniform times the total mass stays strictly below the last step.
    cdf = probs.double().cumsum(dim=-1)
    u = torch.tensor(list(uniforms), dtype=torch.float64, device=logits.device)
    target = (u * cdf[:, -1]).unsqueeze(-1)
    # right=True: the first index whose CDF exceeds the target, so zero-mass tokens are never picked.
    idx = torch.searchsorted(cdf, target, right=True).clamp_max(cdf.shape[-1] - 1)
    if order is not None:
        idx = order.gather(-1, idx)
    return idx.squeeze(-1)
