"""The scoring engine every HF PRM family shares: batching, padding, prefix KV reuse.

A family supplies three things: a decoder ``backbone`` (returns hidden states and a
KV cache), a ``head`` mapping hidden states at score positions to P(correct), and a
``Segmenter`` that turns a question and its steps into token-id segments — the
question (prompt) segment, then one segment per step whose LAST token carries that
step's score. Segments are additive: the ids of ``steps[:k+1]`` extend those of
``steps[:k]``, which is what lets the prefix cache work.

Batching and padding are exact: every row is laid out as ``[left pad | cached
prefix KV | new tokens | right pad]`` with a 2-D attention mask that hides both pads
and explicit position ids counting from the row's true prefix length, so a row's
scores do not depend on what else is in the batch (within float tolerance).

With the prefix cache on (``cache_bytes > 0``), each query runs only the tokens past
its longest cached prefix, and queries in one call that share a new prefix (the n
candidates of one question) compute it once: the first of them runs it, the others
run after it, on top of the cached result. ``StepScores.tokens`` counts the real
(non-pad) input tokens each query ran, so summed over a search it is T_R.

Inputs longer than the context (``max_length``) follow ``on_overflow``: ``"truncate"``
(default) cuts the question from the left, then the oldest steps
(``prm_plugin.prm.overflow``); ``"skip"`` returns ``StepScores(scores=None)`` for the
query; ``"error"`` raises ``ContextOverflowError``. The first overflow is logged once
per scorer; every one is reported in the ``StepScores`` it concerns.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import torch

from prm_plugin._hf_compat import CACHE_KW, output_cache
from prm_plugin.prm.kv_cache import Node, PrefixCache, Segment
from prm_plugin.prm.overflow import QUESTION_GRAIN, fit_query, fit_question
from prm_plugin.search import ContextOverflowError, PRMQuery, StepScores, check_overflow_policy

Head = Callable[[torch.Tensor], torch.Tensor]
log = logging.getLogger(__name__)


class Segmenter(Protocol):
    """Turns a question and its steps into token-id segments (score on each step's last token)."""

    def question_segment(self, question: str) -> Segment: ...

    def step_segment(self, step: str, index: int) -> Segment: ...


@dataclass
class _Job:
    """One row of a forward pass: a query's cached path and the segments it must run."""

    query: int
    path: list[Node]
    new: list[Segment]
    first: int  # index (in the query's segment list) of new[0]

    @property
    def prefix_len(self) -> int:
        return sum(len(n.key) for n in self.path)

    @property
    def new_len(self) -> int:
        return sum(len(s) for s in self.new)


class StepScorer:
    """A ``RewardModel`` over an HF backbone, with batching and a prefix KV cache.

    Args:
        backbone: the decoder (e.g. ``Qwen2Model``), already on its device, in eval mode.
        head: hidden states ``(n, hidden)`` at score positions -> probabilities ``(n,)``.
        segmenter: the family's token layout.
        step_separator: what ends every step in this PRM's input (informational).
        batch_size: at most this many rows per forward pass.
        max_batch_tokens: at most this many padded positions (cached prefix + new
            tokens) per forward pass; a single longer row still runs alone.
        cache_bytes: byte budget of the prefix KV cache; 0 turns it off (every query
            then runs its full sequence, like a naive scorer).
        max_length: the model's position limit (None: no limit).
        on_overflow: what to do with an input longer than ``max_length``:
            ``"truncate"`` (cut the question from the left, then the oldest steps),
            ``"skip"`` (leave the query unscored: ``StepScores.scores`` is None) or
            ``"error"`` (raise ``ContextOverflowError``).
    """

    def __init__(
        self,
        backbone: torch.nn.Module,
        head: Head,
        segmenter: Segmenter,
        *,
        step_separator: str,
        batch_size: int = 32,
        max_batch_tokens: int = 16384,
        cache_bytes: int = 1 << 30,
        max_length: int | None = None,
        on_overflow: str = "truncate",
        name: str = "prm",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}.")
        self.backbone = backbone.eval()
        self.head = head
        self.segmenter = segmenter
        self.step_separator = step_separator
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_length = max_length
        self.on_overflow = check_overflow_policy(on_overflow, "on_overflow (PRM)")
        self.name = name
        #: Queries that did not fit the context since construction, by what was done.
        self.overflows = {"truncated": 0, "skipped": 0}
        self.device = next(backbone.parameters()).device
        if cache_bytes and not _cacheable(backbone):
            warnings.warn(
                f"{name}: this backbone has sliding-window or non-attention layers; the prefix "
                "KV cache is off (scores stay exact, every query runs in full).",
                stacklevel=2,
            )
            cache_bytes = 0
        self.cache = PrefixCache(cache_bytes) if cache_bytes else None
        #: Real input tokens run through the backbone since construction.
        self.tokens_run = 0
        self._question = lru_cache(maxsize=4096)(segmenter.question_segment)
        self._step = lru_cache(maxsize=65536)(segmenter.step_segment)
        # The cut question per (question, room); its search probes bypass ``_question``,
        # which would otherwise fill up with long suffixes.
        self._fit_question = lru_cache(maxsize=1024)(self._fit_question_uncached)

    # -- the RewardModel contract --------------------------------------------------
    def segments(self, query: PRMQuery) -> list[Segment]:
        """The query's token-id segments: the question's, then one per step."""
        if not isinstance(query, PRMQuery):
            raise TypeError(f"score() takes PRMQuery objects, got {type(query).__name__}.")
        if isinstance(query.steps, str):
            raise TypeError("PRMQuery.steps must be a tuple of step strings, not one string.")
        segs = [self._question(query.question)]
        segs += [self._step(step, i) for i, step in enumerate(query.steps)]
        return segs

    def count_tokens(self, query: PRMQuery) -> int:
        """Tokens an uncached scoring of ``query`` runs (additive over steps)."""
        return sum(len(s) for s in self.segments(query))

    def score(self, queries: Sequence[PRMQuery]) -> list[StepScores]:
        """One ``StepScores`` per query: P(correct) per step and the tokens run for it
        (inputs longer than the context follow ``on_overflow``; see the class)."""
        segs = [self.segments(q) for q in queries]
        work: list[list[Segment]] = []  # sequences to run; a truncated query may need several
        owner: list[int] = []
        overflow: list[Any] = [None] * len(queries)
        cut = [0] * len(queries)
        for i, s in enumerate(segs):
            total = sum(len(x) for x in s)
            if self.max_length is None or total <= self.max_length or len(s) == 1:
                work.append(s)
                owner.append(i)
                continue
            if self.on_overflow == "error":
                raise ContextOverflowError(
                    f"Query {i} takes {total} tokens, more than this PRM's limit of {self.max_length} "
                    "positions (on_overflow=error). Use on_overflow=truncate (cut the question from the left, "
                    "then the oldest steps) or skip, shorten the solution (lower max_tokens), or use a "
                    "longer-context PRM."
                )
            if self.on_overflow == "skip":
                overflow[i] = "skipped"
                continue
            grain = max(1, self.max_length // QUESTION_GRAIN)
            parts, cut[i] = fit_query(queries[i].question, s[1:], self.max_length, self._question,
                                      fit=functools.partial(self._fit_question, grain=grain))
            overflow[i] = "truncated"
            work += parts
            owner += [i] * len(parts)
        self._note_overflow(overflow, len(queries))
        scores: list[list[float] | None] = [None] * len(work)
        tokens = [0] * len(work)
        with torch.inference_mode():
            if self.cache is None:
                jobs = [_Job(i, [], s, 0) for i, s in enumerate(work) if len(s) > 1]
                for job, out in zip(jobs, self._run(jobs, remaining_pins=()), strict=True):
                    scores[job.query], tokens[job.query] = out, job.new_len
            else:
                self._score_cached(work, scores, tokens)
        merged: list[list[float]] = [[] for _ in queries]
        spent = [0] * len(queries)
        for w, i in enumerate(owner):
            merged[i] += scores[w] or []
            spent[i] += tokens[w]
        return [StepScores(None if overflow[i] == "skipped" else tuple(merged[i]), spent[i], overflow[i], cut[i])
                for i in range(len(queries))]

    def _fit_question_uncached(self, question: str, room: int, grain: int) -> Segment:
        return fit_question(question, room, self.segmenter.question_segment, grain)

    def _note_overflow(self, overflow: list[Any], count: int) -> None:
        """Count overflows; log the first one (the run's summary reports the totals)."""
        new = {kind: sum(o == kind for o in overflow) for kind in self.overflows}
        if any(new.values()) and not any(self.overflows.values()):
            log.warning(
                "%s: %d of %d queries in this call are longer than its context of %d positions; "
                "on_overflow=%s: %s. Counted per problem in Cost.prm_truncated / prm_skipped (warned once).",
                self.name, sum(new.values()), count, self.max_length, self.on_overflow,
                "the question is cut from the left, then the oldest steps" if self.on_overflow == "truncate"
                else "those candidates stay unscored (they never win on score)",
            )
        for kind, n in new.items():
            self.overflows[kind] += n

    def clear_cache(self) -> None:
        """Drop every cached prefix."""
        if self.cache is not None:
            self.cache.clear()

    # -- the cached path -------------------------------------------------------------
    def _score_cached(self, segs: list[list[Segment]], scores: list[Any], tokens: list[int]) -> None:
        assert self.cache is not None
        pending = [i for i, s in enumerate(segs) if len(s) > 1]
        while pending:
            jobs, waiting = [], []
            leaders: set[tuple[int, Segment]] = set()
            for i in pending:
                path = self.cache.longest_prefix(segs[i])
                if len(path) == len(segs[i]):  # everything cached: scores for free
                    self.cache.touch(path)
                    scores[i] = [n.score for n in path[1:]]
                    continue
                parent_uid = path[-1].uid if path else -1
                group = (parent_uid, segs[i][len(path)])
                if group in leaders:  # another query runs this new prefix first
                    waiting.append(i)
                    continue
                leaders.add(group)
                jobs.append(_Job(i, path, segs[i][len(path):], len(path)))
            waiting_pins = [n for i in waiting for n in self.cache.longest_prefix(segs[i])]
            for job, out in zip(jobs, self._run(jobs, remaining_pins=waiting_pins), strict=True):
                cached = [n.score for n in job.path[1:]]
                scores[job.query] = cached + out
                tokens[job.query] = job.new_len
            pending = waiting

    # -- forward passes --------------------------------------------------------------
    def _run(self, jobs: list[_Job], remaining_pins: Sequence[Node]) -> list[list[float]]:
        """Run jobs in micro-batches; returns the new step scores of each job."""
        results: list[list[float]] = [[] for _ in jobs]
        batches = _plan_batches(jobs, self.batch_size, self.max_batch_tokens)
        for b, batch in enumerate(batches):
            outs = self._forward([jobs[j] for j in batch])
            for j, out in zip(batch, outs, strict=True):
                results[j] = out
            if self.cache is not None:
                later = [n for bb in batches[b + 1:] for j in bb for n in jobs[j].path]
                self.cache.evict(pinned=[*later, *remaining_pins])
        return results

    def _forward(self, jobs: list[_Job]) -> list[list[float]]:
        prefix = [j.prefix_len for j in jobs]
        new = [j.new_len for j in jobs]
        P, S, B = max(prefix), max(new), len(jobs)
        ids = torch.zeros(B, S, dtype=torch.long)
        mask = torch.zeros(B, P + S, dtype=torch.long)
        for b, job in enumerate(jobs):
            flat = [t for seg in job.new for t in seg]
            ids[b, : len(flat)] = torch.tensor(flat, dtype=torch.long)
            mask[b, P - prefix[b]: P + new[b]] = 1
        positions = torch.tensor(prefix).unsqueeze(1) + torch.arange(S).unsqueeze(0)
        kwargs: dict[str, Any] = {"use_cache": self.cache is not None}
        if self.cache is not None:
            kwargs[CACHE_KW] = _prefix_cache(jobs, P, S)
        out = self.backbone(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            **kwargs,
        )
        self.tokens_run += sum(new)
        hidden = out.last_hidden_state
        rows, cols, owners = [], [], []
        for b, job in enumerate(jobs):
            offset = 0
            for k, seg in enumerate(job.new):
                offset += len(seg)
                if job.first + k > 0:  # segment 0 is the question: no score
                    rows.append(b)
                    cols.append(offset - 1)
                    owners.append(b)
        probs = self.head(hidden[torch.tensor(rows), torch.tensor(cols)]).float().cpu().tolist()
        per_job: list[list[float]] = [[] for _ in jobs]
        for b, p in zip(owners, probs, strict=True):
            per_job[b].append(float(p))
        if self.cache is not None:
            self._store(jobs, output_cache(out), P, per_job)
        return per_job

    def _store(self, jobs: list[_Job], cache: Any, P: int, per_job: list[list[float]]) -> None:
        """Insert each job's new segments (KV slices and scores) into the trie."""
        assert self.cache is not None
        keys = torch.stack([layer.keys[:, :, P:] for layer in cache.layers])
        values = torch.stack([layer.values[:, :, P:] for layer in cache.layers])
        for b, job in enumerate(jobs):
            parent = job.path[-1] if job.path else None
            offset, scored = 0, iter(per_job[b])
            path = list(job.path)
            for k, seg in enumerate(job.new):
                end = offset + len(seg)
                score = next(scored) if job.first + k > 0 else None
                parent = self.cache.insert(
                    parent, seg, keys[:, b, :, offset:end].clone(), values[:, b, :, offset:end].clone(), score
                )
                path.append(parent)
                offset = end
            self.cache.touch(path)


def _prefix_cache(jobs: list[_Job], P: int, room: int = 0) -> Any:
    """A ``DynamicCache`` holding each row's cached prefix, left-padded to ``P``, with space
    for ``room`` more positions so the forward appends the new tokens in place."""
    from transformers import DynamicCache

    from prm_plugin.hf_kv import growing_cache

    if P == 0:
        return DynamicCache()
    ref = next(j.path[0].keys for j in jobs if j.path)
    L, H, _, D = ref.shape
    keys = ref.new_zeros(L, len(jobs), H, P + room, D)
    values = ref.new_zeros(L, len(jobs), H, P + room, D)
    for b, job in enumerate(jobs):
        start = P - job.prefix_len
        for node in job.path:  # copy each segment straight into its slot (no temporary)
            end = start + len(node.key)
            keys[:, b, :, start:end] = node.keys
            values[:, b, :, start:end] = node.values
            start = end
    return growing_cache(None, [t for layer in range(L) for t in (keys[layer], values[layer])], filled=P)


def _plan_batches(jobs: list[_Job], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Group job indices into micro-batches of similar length within both limits.

    Jobs are ordered by new tokens first: every row of a batch runs as many positions as
    its longest new part, so one long step among short ones would pad them all (a cached
    prefix costs only attention reads).
    """
    order = sorted(range(len(jobs)), key=lambda j: (jobs[j].new_len, jobs[j].prefix_len, j))
    batches: list[list[int]] = []
    cur: list[int] = []
    max_p = max_s = 0
    for j in order:
        p, s = max(max_p, jobs[j].prefix_len), max(max_s, jobs[j].new_len)
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * (p + s) > max_tokens):
            batches.append(cur)
            cur, p, s = [], jobs[j].prefix_len, jobs[j].new_len
        cur.append(j)
        max_p, max_s = p, s
    if cur:
        batches.append(cur)
    return batches


def _cacheable(backbone: torch.nn.Module) -> bool:
    config = getattr(backbone, "config", None)
    layer_types = getattr(config, "layer_types", None) or []
    if getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None):
        return False
    return all(t == "full_attention" for t in layer_types)
