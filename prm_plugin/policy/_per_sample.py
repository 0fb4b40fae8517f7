"""One request per sample: how the engine-backed policies (``vllm``, ``openai``) turn a
``propose`` call into requests and their replies back into ``PrefixProposals``.

Pure Python (no torch, no engine). The rules, shared so both backends draw the same samples:

* the ``k``-th occurrence of a prefix text in a call gets ``first = row_seed(seed, text, 0)
  mod 2**62 + k * n`` and its sample ``j`` the seed ``first + j`` (a repeated prefix draws
  further samples; vLLM seeds an ``n``-sample request's children the same way);
* greedy (``temperature == 0``) sends one request per unique (text, cap) and repeats its
  answer ``n`` times;
* a prefix the context rule skipped gets no request; one it cut is sent as token ids;
* a request's prefill is charged once, to the first prefix it serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prm_plugin.policy._context import Fit, fit_prefix
from prm_plugin.policy._sampling import fresh_seed, row_seed
from prm_plugin.search import PrefixProposals, Proposal

SEED_SPACE = 1 << 62


@dataclass(frozen=True)
class SampleRequest:
    """One sample to draw: the prompt (text, or token ids when cut to fit), its token cap
    and its seed."""

    prompt: str | list[int]
    cap: int
    seed: int


@dataclass
class Plan:
    """The requests of one ``propose`` call and which of them serve each prefix (None:
    skipped by the context rule)."""

    requests: list[SampleRequest]
    requests_of: list[list[int] | None]
    fits: list[Fit]
    n: int
    greedy: bool

    def gather(self, samples: Sequence[tuple[Proposal, int]]) -> list[PrefixProposals]:
        """Per prefix, its proposals; ``samples[r]`` is request ``r``'s proposal and the
        prompt tokens the engine ran for it."""
        if len(samples) != len(self.requests):
            raise RuntimeError(f"The engine returned {len(samples)} samples for {len(self.requests)} requests.")
        charged: set[int] = set()
        result = []
        for requests, fit in zip(self.requests_of, self.fits, strict=True):
            if requests is None:
                result.append(PrefixProposals((), 0, "skipped"))
                continue
            props = tuple(samples[r][0] for r in requests)
            prefill = sum(samples[r][1] for r in requests if r not in charged)
            charged.update(requests)
            result.append(PrefixProposals(props * self.n if self.greedy else props, prefill, fit.overflow,
                                          fit.cut))
        return result


def plan_requests(prefixes: Sequence[str], caps: Sequence[int], fits: Sequence[Fit], *, n: int,
                  temperature: float, seed: int | None) -> Plan:
    """The requests for ``prefixes`` (see the module docstring)."""
    base = fresh_seed() if seed is None else seed
    greedy = temperature == 0
    plan = Plan([], [], list(fits), n, greedy)
    occurrences: dict[str, int] = {}
    greedy_request: dict[tuple[str, int], int] = {}
    for text, cap, fit in zip(prefixes, caps, fits, strict=True):
        if fit.skipped:
            plan.requests_of.append(None)
            continue
        cap = min(cap, fit.cap)
        k = occurrences.get(text, 0)
        occurrences[text] = k + 1
        if greedy and (text, cap) in greedy_request:
            plan.requests_of.append([greedy_request[text, cap]])
            continue
        greedy_request.setdefault((text, cap), len(plan.requests))
        first = row_seed(base, text, 0) % SEED_SPACE + k * n
        count = 1 if greedy else n
        plan.requests_of.append(list(range(len(plan.requests), len(plan.requests) + count)))
        prompt: str | list[int] = fit.ids if fit.cut else text
        plan.requests += [SampleRequest(prompt, cap, first + j) for j in range(count)]
    return plan


def fit_text(tokenizer: Any, text: str, cap: int, context: int | None, on_overflow: str, index: int) -> Fit:
    """The context rule (``_context``) on ``text`` as ``tokenizer`` (the engine's, special
    tokens included) counts it; a leading BOS is kept when cutting."""
    if context is None:
        return Fit([], 0, cap)
    ids = list(tokenizer(text)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    return fit_prefix(ids, cap, context, on_overflow, keep_head=int(bos is not None and ids[:1] == [bos]),
                      index=index)
