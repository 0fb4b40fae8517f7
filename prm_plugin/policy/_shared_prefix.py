"""Shared-prefix attention for the HF decode loop: rows read their prefix's KV once.

The samples of one prefix (n per prefix in best-of-N, beam width's children in beam
search) all attend over the same prefix keys/values. Copying that KV into every row, as
``generate(num_return_sequences=n)`` does, multiplies both the cache's memory and the
bytes read per decoded token by the rows per prefix; on a CPU a batched beam round then
spills out of cache and attention becomes the largest cost of a decode step.

Here the prefill's KV stays one entry per prefix (``SharedPrefix``) and the per-row cache
holds only the tokens each row generated. A decode step computes attention in two parts
and merges them exactly (log-sum-exp): the queries of each prefix's rows against that
prefix's KV in one batched product, and each row against its own generated tokens (the
same technique as cascade attention in FlashInfer and vLLM). The merged output equals
full attention over ``[prefix, generated]`` up to float rounding.

The attention runs as a transformers attention implementation, switched on only for the
decode forwards of ``Decoder.run``; a model whose attention does not route through
transformers' ``AttentionInterface`` (or needs features this does not implement) is
detected by ``supports`` with a probe forward, and keeps the plain path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)

#: Name the attention function is registered under in transformers' ``AttentionInterface``.
NAME = "prm_plugin_shared_prefix"
#: The forward keyword that carries the ``SharedPrefix`` to the attention function.
KWARG = "prm_shared_prefix"
#: Keyword arguments the attention may receive without changing its result; any other one
#: that is set (softcap, sinks, position bias, a sliding window, ...) is a feature this
#: implementation does not have, and the model keeps the plain path.
_HARMLESS = frozenset({KWARG, "position_ids", "use_cache", "cache_position", "is_causal", "cache",
                       "past_key_values", "position_embeddings"})


@dataclass
class SharedPrefix:
    """The prefixes' KV and which prefix each row continues.

    ``kv[2 * layer]`` / ``kv[2 * layer + 1]`` are keys / values ``(prefixes, kv_heads,
    width, head_dim)``, ``keys_t[layer]`` the keys as ``(prefixes * kv_heads, head_dim,
    width)``; ``bias`` ``(prefixes * kv_heads, 1, width)`` is 0 on a prefix's real tokens and
    -inf on padding; ``job`` ``(rows,)`` is each row's prefix; ``slot`` ``(rows,)`` its
    place in the ``(prefixes * group)`` query grid, ``group`` the most rows of a prefix;
    ``dense`` when the rows fill the grid in order (no scatter/gather needed).
    """

    kv: list[torch.Tensor]
    mask: torch.Tensor  # (prefixes, width) 1 on real tokens, for storing a row's KV
    job: torch.Tensor
    keys_t: list[torch.Tensor] = field(default_factory=list)
    bias: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    slot: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    group: int = 1
    dense: bool = True

    @classmethod
    def build(cls, kv: list[torch.Tensor], mask: torch.Tensor, job: torch.Tensor) -> SharedPrefix:
        out = cls(list(kv), mask, job)  # _prepare replaces the keys by views: not the caller's list
        out._prepare()
        return out

    def select(self, rows: torch.Tensor) -> None:
        """Keep the rows ``rows`` (in that order); drop prefixes no row continues any more."""
        used, job = torch.unique(self.job[rows], return_inverse=True)
        if used.numel() < self.mask.shape[0]:
            self.kv = [t.index_select(0, used) for t in self.kv]
            self.mask = self.mask.index_select(0, used)
        self.job = job
        self._prepare()

    def _prepare(self) -> None:
        jobs, kv_heads, width, dim = self.kv[0].shape
        if any(t.shape != self.kv[0].shape for t in self.kv):
            raise ValueError("Shared-prefix attention needs the same KV shape in every layer.")
        # keys are kept once, transposed for the score product; kv[2 * layer] is a view of them
        self.keys_t = [k.transpose(-1, -2).reshape(jobs * kv_heads, dim, width) for k in self.kv[0::2]]
        for layer, kt in enumerate(self.keys_t):
            self.kv[2 * layer] = kt.view(jobs, kv_heads, dim, width).transpose(-1, -2)
        bias = torch.zeros(self.mask.shape, dtype=self.kv[0].dtype, device=self.mask.device)
        bias = bias.masked_fill(self.mask == 0, float("-inf"))
        self.bias = bias.repeat_interleave(kv_heads, dim=0)[:, None, :]
        # each row's slot: its prefix times ``group`` plus its rank among that prefix's rows
        counts = torch.bincount(self.job, minlength=jobs)
        self.group = max(1, int(counts.max()))
        order = torch.argsort(self.job, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(self.job)
        rank[order] = torch.arange(self.job.numel(), device=self.job.device) - starts[self.job[order]]
        self.slot = self.job * self.group + rank
        self.dense = self.job.numel() == jobs * self.group and bool(
            (self.slot == torch.arange(self.job.numel(), device=self.job.device)).all())

    def row_kv(self, row: int, suffix: list[torch.Tensor], fed: int, start: int, end: int) -> list[torch.Tensor]:
        """Tokens ``start:end`` of a row's KV: its real prefix tokens, then its first ``fed``
        generated tokens; ``(kv_heads, tokens, head_dim)`` per tensor, as the prefix cache
        stores it (only the part it does not hold yet is asked for)."""
        j = int(self.job[row])
        cols = self.mask[j].nonzero().squeeze(-1)
        n = cols.numel()
        if end > n + fed:
            raise RuntimeError(f"KV layout error: row has {n + fed} tokens, asked for {end}.")
        if start >= n:  # a copy: a view would keep the whole decode buffer alive in the cache
            return [t[row, :, start - n : end - n].clone() for t in suffix]
        return [torch.cat([p[j].index_select(-2, cols[start:end]), t[row, :, : max(0, end - n)]], dim=-2)
                for p, t in zip(self.kv, suffix, strict=True)]

    def materialize(self, suffix: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every row's own copy of its prefix followed by its generated tokens, and the
        attention mask over them: the plain layout, for when few rows share a prefix."""
        tensors = [torch.cat([p.index_select(0, self.job), t], dim=-2) for p, t in zip(self.kv, suffix, strict=True)]
        mask = torch.cat([self.mask.index_select(0, self.job),
                          self.mask.new_ones((self.job.numel(), suffix[0].shape[-2]))], dim=1)
        return tensors, mask


def attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of one new token per row over its prefix's KV and its own generated KV.

    ``query`` ``(rows, heads, 1, dim)``; ``key``/``value`` ``(rows, kv_heads, generated,
    dim)`` (this row's tokens only; no padding, so no mask). Returns ``(rows, 1, heads,
    dim)`` as transformers' attention functions do.
    """
    shared: SharedPrefix | None = kwargs.get(KWARG)
    bad = [k for k, v in kwargs.items() if k not in _HARMLESS and v is not None and v is not False]
    if shared is None or bad or dropout or query.shape[2] != 1 or attention_mask is not None:
        raise NotImplementedError(
            f"{NAME} serves one-token decode steps with a SharedPrefix and no mask "
            f"(got {KWARG}={'set' if shared is not None else None}, q_len={query.shape[2]}, "
            f"unsupported features={bad}, mask={'set' if attention_mask is not None else None})."
        )
    rows, heads, _, dim = query.shape
    layer = module.layer_idx
    pkt, pv = shared.keys_t[layer], shared.kv[2 * layer + 1]  # (jobs*kvh, dim, width), (jobs, kvh, width, dim)
    jobs, kv_heads, width, _ = pv.shape
    groups, group = heads // kv_heads, shared.group
    q = query.reshape(rows, kv_heads, groups, dim) * (dim**-0.5 if scaling is None else scaling)
    # prefix part: the queries of a prefix's rows side by side, one product per (prefix, kv head)
    if shared.dense:
        grid = q
    else:
        grid = q.new_zeros((jobs * group, kv_heads, groups, dim)).index_copy_(0, shared.slot, q)
    grid = grid.view(jobs, group, kv_heads, groups, dim).transpose(1, 2).reshape(jobs * kv_heads, group * groups, dim)
    # scores in the model's dtype, softmax and merge in float32 (as transformers' eager attention)
    s1 = torch.baddbmm(shared.bias, grid, pkt).float()  # (jobs*kvh, group*g, width)
    lse1 = torch.logsumexp(s1, dim=-1, keepdim=True)
    o1 = torch.bmm(torch.softmax(s1, dim=-1).to(pv.dtype), pv.flatten(0, 1)).float()

    def back(t: torch.Tensor) -> torch.Tensor:  # (jobs*kvh, group*g, x) -> (rows, kvh, g, x)
        t = t.view(jobs, kv_heads, group, groups, t.shape[-1]).transpose(1, 2)
        t = t.reshape(jobs * group, kv_heads, groups, t.shape[-1])
        return t if shared.dense else t.index_select(0, shared.slot)

    out, lse1 = back(o1), back(lse1)
    if key.shape[-2]:  # own part: each row against the tokens it generated, merged by log-sum-exp
        s2 = torch.matmul(q, key.transpose(-1, -2)).float()  # (rows, kvh, g, generated)
        w1 = torch.sigmoid(lse1 - torch.logsumexp(s2, dim=-1, keepdim=True))
        out = torch.lerp(torch.matmul(torch.softmax(s2, dim=-1).to(value.dtype), value).float(), out, w1)
    return out.reshape(rows, 1, heads, dim).to(query.dtype), None


def register() -> bool:
    """Register ``attention`` with transformers (once); False where transformers has no
    ``AttentionInterface``."""
    try:
        from transformers import AttentionInterface
    except ImportError:  # pragma: no cover - transformers without attention dispatch
        return False
    if NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(NAME, attention)
    return True


@contextlib.contextmanager
def active(model: Any) -> Iterator[None]:
    """Route ``model``'s attention through ``attention`` inside the block."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before


def supports(model: Any) -> bool:
    """Whether ``model``'s decode steps give the same logits through ``attention`` as
    through its own attention (a probe of two rows sharing a five-token prefix)."""
    if not register() or getattr(model.config, "sub_configs", None):
        return False  # (multimodal configs: switching the attention would touch their parts too)
    try:
        with torch.inference_mode():
            return _probe(model)
    except Exception as exc:  # noqa: BLE001 - any failure means: keep the plain path
        log.info("Shared-prefix attention is off for %s: %s", type(model).__name__, exc)
        return False


def _probe(model: Any) -> bool:
    from prm_plugin import hf_kv as _kv
    from prm_plugin._hf_compat import CACHE_KW, output_cache

    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().num_embeddings
    prompt = (torch.arange(5, device=device) * 7 + 3) % vocab
    kv = _kv.cache_tensors(output_cache(model(input_ids=prompt[None], use_cache=True)))
    plain = _kv.make_cache(model, [t.repeat(2, 1, 1, 1) for t in kv])
    suffix = _kv.growing_cache(model, [t.new_zeros((2, *t.shape[1:-2], 0, t.shape[-1])) for t in kv])  # as decoding
    shared = SharedPrefix.build(kv, torch.ones((1, 5), device=device), torch.zeros(2, dtype=torch.long, device=device))
    tol = 1e-4 if kv[0].dtype == torch.float32 else 3e-2
    for step, pair in enumerate(((11, 13), (17, 19))):
        tokens = torch.tensor(pair, device=device)[:, None] % vocab
        pos = torch.full((2, 1), 5 + step, device=device)
        a = model(input_ids=tokens, position_ids=pos, use_cache=True, **{CACHE_KW: plain}).logits[:, -1].float()
        with active(model):
            b = model(input_ids=tokens, position_ids=pos, use_cache=True,
                      **{CACHE_KW: suffix, KWARG: shared}).logits[:, -1].float()
        if not bool(((a - b).abs().max() <= tol * (1 + a.abs().max())).item()):
            log.info("Shared-prefix attention is off for %s: its logits differ from the model's own "
                     "attention (max |diff| %.3g).", type(model).__name__, float((a - b).abs().max()))
            return False
    return True
