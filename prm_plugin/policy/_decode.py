"""The batched sampling loop behind ``HFPolicy``: prefill, then one token per step.

One ``Decoder.run`` call serves a group of unique prefixes (``Job``) and the rows
(samples) wanted from each. Layout of a row in the KV cache, left to right:
``[padding][cached prefix tokens][padding][new prefix tokens][generated tokens]`` — padding
is masked out and positions are passed explicitly, so the middle padding left by
different cache hits is harmless, and columns no live row needs are dropped when rows
finish. A row's real tokens are exactly the columns where its attention mask is 1, which
is how its KV is cut out for the prefix cache.

While every prefix has at least ``SHARE_MIN_ROWS`` rows, the rows do not hold copies of
their prefix: its KV stays one entry per job (``_shared_prefix.SharedPrefix``), the rows'
cache holds only what they generated, and attention reads each prefix once for all its
rows. When rows finish and too few share a prefix, the plain layout above is rebuilt
(``SharedPrefix.materialize``) and decoding goes on with the model's own attention.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from prm_plugin import hf_kv as _kv
from prm_plugin._hf_compat import CACHE_KW, output_cache
from prm_plugin.policy import _shared_prefix
from prm_plugin.policy._detok import Detokenizer, RowText
from prm_plugin.policy._request import StopSet
from prm_plugin.policy._sampling import sample_next
from prm_plugin.policy._shared_prefix import SharedPrefix
from prm_plugin.policy.prefix_cache import PrefixKVCache, kv_cat
from prm_plugin.search import StopReason

#: Finished rows leave the batch once they are at least 1/DROP_FINISHED of it. Until then
#: they ride along on a pad token: re-indexing the whole KV cache every time a row ends
#: (every step, when rows end one by one) costs more than carrying a few idle rows.
DROP_FINISHED = 4
#: Rows read their prefix's KV once (``_shared_prefix``) while there are at least this many
#: rows per prefix; with fewer, one fused attention over per-row copies is faster.
SHARE_MIN_ROWS = 2
#: ... and while the query grid (prefixes x most rows of a prefix) is at most this many
#: times the rows: very uneven prefixes would make it mostly padding.
SHARE_MAX_GRID = 2


def _worth_sharing(rows: int, jobs: int, group: int) -> bool:
    return rows >= SHARE_MIN_ROWS * jobs and jobs * group <= SHARE_MAX_GRID * rows


@dataclass
class RowSpec:
    """One sample to draw: ``key`` is the caller's handle, ``stream`` its uniforms,
    ``max_tokens`` its own token cap (None: the call's ``Settings.max_tokens``)."""

    key: Any
    stream: random.Random | None
    max_tokens: int | None = None


@dataclass
class Job:
    """A unique prefix (its token ids) and the rows to sample from it."""

    ids: list[int]
    rows: list[RowSpec]


@dataclass(frozen=True)
class Settings:
    stops: StopSet
    max_tokens: int
    temperature: float
    top_p: float


@dataclass
class RowOut:
    text: str
    n_tokens: int
    stop_reason: StopReason


@dataclass
class _Row:
    spec: RowSpec
    prompt_ids: list[int]
    state: RowText
    n_tokens: int = 0
    out: RowOut | None = field(default=None)


class Decoder:
    """Runs groups of jobs on one model; optionally reads and fills a ``PrefixKVCache``."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: torch.device,
        eos_ids: frozenset[int],
        pad_id: int,
        prefix_cache: PrefixKVCache | None,
        shared_prefix: bool = True,
    ) -> None:
        self.model = model
        self.device = device
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.detok = Detokenizer(tokenizer)
        self.plain = _kv.plain_layout(model)
        # Reuse needs the plain layout; a cache of 0 bytes would only cost lookups.
        self.prefix_cache = prefix_cache if (self.plain and prefix_cache and prefix_cache.max_bytes) else None
        params = inspect.signature(model.forward).parameters
        self.shared_prefix = shared_prefix
        self._shared: bool | None = None
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)

    def run(self, jobs: Sequence[Job], s: Settings) -> tuple[dict[Any, RowOut], list[int]]:
        """Sample every row of every job. Returns outputs by row key and, per job, the
        prefix tokens run through the model."""
        logits, cache, mask, next_pos, prefilled = self._prefill(jobs)
        rows, owner = [], []
        for u, job in enumerate(jobs):
            for spec in job.rows:
                rows.append(_Row(spec, job.ids, RowText.start(job.ids)))
                owner.append(u)
        pick = torch.tensor(owner, device=self.device)
        shared = None
        if _worth_sharing(len(rows), len(jobs), max(len(job.rows) for job in jobs)) and self._shared_ok():
            # prefix KV stays one entry per job; the rows' cache holds their generated tokens
            shared = SharedPrefix.build(_kv.cache_tensors(cache), mask, pick)
            cache = _kv.growing_cache(self.model, [t.new_zeros((len(rows), *t.shape[1:-2], 0, t.shape[-1]))
                                                   for t in shared.kv])
            next_pos, logits = next_pos[pick], logits[pick]
        else:
            if self.plain:
                _kv.append_in_place(cache)
            if owner != list(range(len(jobs))):
                cache.batch_select_indices(pick)
                mask, next_pos, logits = mask[pick], next_pos[pick], logits[pick]
        results: dict[Any, RowOut] = {}
        while True:
            live = [i for i, r in enumerate(rows) if r.out is None]
            # finished rows still in the batch draw nothing from their streams
            uniforms = None if s.temperature == 0 else [
                r.spec.stream.random() if r.out is None else 0.5 for r in rows]  # type: ignore[union-attr]
            tokens = sample_next(logits, temperature=s.temperature, top_p=s.top_p, uniforms=uniforms).tolist()
            self._advance([rows[i] for i in live], [tokens[i] for i in live], s)
            for i in live:
                row = rows[i]
                if row.out is None:
                    continue
                results[row.spec.key] = row.out
                if self.prefix_cache is not None and row.out.stop_reason == "step":
                    # The cache holds the prompt and every sampled token but the last (never fed).
                    ids = row.prompt_ids + row.state.generated[:-1]
                    if shared is None:
                        self._store(cache, mask, i, ids)
                    else:
                        self._store_shared(shared, cache, i, ids, row.n_tokens - 1)
            keep = [i for i, r in enumerate(rows) if r.out is None]
            if not keep:
                return results, prefilled
            if (len(rows) - len(keep)) * DROP_FINISHED >= len(rows):
                pick = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(pick)
                next_pos = next_pos[pick]
                rows, tokens = [rows[i] for i in keep], [tokens[i] for i in keep]
                if shared is not None:
                    shared.select(pick)
                    if not _worth_sharing(len(rows), shared.mask.shape[0], shared.group):
                        tensors, mask = shared.materialize(_kv.cache_tensors(cache))
                        cache, shared = _kv.growing_cache(self.model, tensors), None
                        del tensors
                        mask = self._compact(cache, mask)
                else:
                    mask = mask[pick]
                    if self.plain:
                        mask = self._compact(cache, mask)
            tokens = [t if r.out is None else self.pad_id for r, t in zip(rows, tokens, strict=True)]
            step = torch.tensor(tokens, device=self.device).unsqueeze(1)
            if shared is None:
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                out = self.model(input_ids=step, attention_mask=mask, position_ids=next_pos.unsqueeze(1),
                                 use_cache=True, **{CACHE_KW: cache})
            else:
                with _shared_prefix.active(self.model):
                    out = self.model(input_ids=step, position_ids=next_pos.unsqueeze(1), use_cache=True,
                                     **{CACHE_KW: cache, _shared_prefix.KWARG: shared})
            cache, logits = output_cache(out), out.logits[:, -1, :]
            next_pos = next_pos + 1

    def _shared_ok(self) -> bool:
        """Shared-prefix attention is on, and the model passed its probe (run once)."""
        if self._shared is None:
            self._shared = self.plain and self.shared_prefix and _shared_prefix.supports(self.model)
        return self._shared

    def _prefill(self, jobs: Sequence[Job]) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor, list[int]]:
        """Run every job's uncached tokens in one forward; return last-position logits,
        the cache, the attention mask, each row's next position and the tokens run."""
        hits = [
            self.prefix_cache.match(job.ids, limit=len(job.ids) - 1) if self.prefix_cache else (0, [])
            for job in jobs
        ]
        cached = [n for n, _ in hits]
        new = [len(job.ids) - c for job, c in zip(jobs, cached, strict=True)]
        width_c, width_n = max(cached), max(new)
        input_ids = torch.full((len(jobs), width_n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width_c + width_n), dtype=torch.long)
        positions = torch.zeros((len(jobs), width_n), dtype=torch.long)
        for u, (job, c, m) in enumerate(zip(jobs, cached, new, strict=True)):
            input_ids[u, width_n - m :] = torch.tensor(job.ids[c:])
            mask[u, width_c - c : width_c] = 1
            mask[u, width_c + width_n - m :] = 1
            positions[u, width_n - m :] = torch.arange(c, c + m)
        past = self._past(hits, width_c) if width_c else None
        kwargs: dict[str, Any] = {CACHE_KW: past} if past is not None else {}
        if self._keep_kw:
            kwargs[self._keep_kw] = 1  # every row ends at the last column: no full-vocab logits per token
        mask = mask.to(self.device)
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask,
            position_ids=positions.to(self.device),
            use_cache=True,
            **kwargs,
        )
        cache = output_cache(out)
        if self.prefix_cache is not None:
            for u, job in enumerate(jobs):
                self._store(cache, mask, u, job.ids)
        next_pos = torch.tensor([len(job.ids) for job in jobs], device=self.device)
        return out.logits[:, -1, :], cache, mask, next_pos, new

    def _past(self, hits: list[tuple[int, list[Any]]], width: int) -> Any:
        """A batch cache holding each job's cached KV right-aligned in ``width`` columns."""
        kvs = [kv_cat(pieces) if n else None for n, pieces in hits]
        template = next(kv for kv in kvs if kv is not None)
        tensors = [t.new_zeros((len(kvs), *t.shape[:-2], width, t.shape[-1])) for t in template]
        for u, kv in enumerate(kvs):
            if kv is not None:
                for dst, src in zip(tensors, kv, strict=True):
                    dst[u, ..., width - src.shape[-2] :, :] = src
        return _kv.make_cache(self.model, tensors)

    def _store(self, cache: Any, mask: torch.Tensor, row: int, ids: list[int]) -> None:
        assert self.prefix_cache is not None
        columns = mask[row].nonzero().squeeze(-1)
        if columns.numel() != len(ids):  # an invariant of the layout; never store a misaligned KV
            raise RuntimeError(f"KV layout error: row has {columns.numel()} tokens, expected {len(ids)}.")
        tensors = _kv.cache_tensors(cache)

        def kv_of(start: int, end: int) -> tuple[torch.Tensor, ...]:
            cols = columns[start:end]
            return tuple(t[row].index_select(-2, cols) for t in tensors)

        self.prefix_cache.insert(ids, kv_of)

    def _store_shared(self, shared: SharedPrefix, cache: Any, row: int, ids: list[int], fed: int) -> None:
        assert self.prefix_cache is not None
        suffix = _kv.cache_tensors(cache)
        self.prefix_cache.insert(ids, lambda start, end: tuple(shared.row_kv(row, suffix, fed, start, end)))

    @staticmethod
    def _compact(cache: Any, mask: torch.Tensor) -> torch.Tensor:
        """Drop KV columns that no live row attends to (padding of finished rows)."""
        used = mask.bool().any(dim=0)
        if bool(used.all()):
            return mask
        columns = used.nonzero().squeeze(-1)
        _kv.keep_columns(cache, columns)
        return mask[:, columns]

    def _advance(self, rows: list[_Row], tokens: list[int], s: Settings) -> None:
        """Record one sampled token per row; set ``row.out`` for rows that finished."""
        eos = [t in self.eos_ids for t in tokens]
        live = [(r, t) for r, t, e in zip(rows, tokens, eos, strict=True) if not e]
        self.detok.advance([r.state for r, _ in live], [t for _, t in live])
        for row, is_eos in zip(rows, eos, strict=True):
            row.n_tokens += 1
            if is_eos:
                row.out = RowOut(self.detok.flush(row.state), row.n_tokens, "eos")
                continue
            text = row.state.visible
            hit = None
            if s.stops.max_len:
                start = max(0, min(row.state.searched, len(text)) - s.stops.max_len + 1)
                hit = s.stops.find(text, start)
                row.state.searched = len(text)
            if hit is not None:
                row.out = RowOut(text[: hit.start], row.n_tokens, hit.reason)
            elif row.n_tokens >= (row.spec.max_tokens or s.max_tokens):
                row.out = RowOut(self.detok.flush(row.state), row.n_tokens, "length")
