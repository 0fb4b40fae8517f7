"""A ``Policy`` over any lm-eval model's ``generate_until`` (``policy=<lm-eval name>``).

lm-eval's API returns text only, cut before whichever stop string or EOS ended it:
asking it to stop at the step delimiter would make "stopped at a step boundary"
(``stop_reason="step"``) indistinguishable from "the model ended its answer". So this
adapter never sends the step delimiters as stops. It asks for ``until=final_stop``
(plus EOS, which lm-eval adds) with ``max_gen_toks=max_tokens`` and splits the text
itself:

* a step delimiter in the text -> ``"step"``, the text before it; the rest of the
  sample is kept as a *pending continuation* of ``prefix + step + delimiter`` and
  served, once, to the next ``propose`` call on exactly that prefix (it is a genuine
  sample of the model's continuation there, so reusing it is not a shortcut);
* no delimiter and fewer than ``max_tokens`` tokens -> ``"final"`` (lm-eval cannot
  say whether EOS or a final stop string ended it; both mean finished);
* no delimiter and ``max_tokens`` tokens -> ``"length"``.

Finished-vs-step is therefore exact. Costs are honest: ``n_tokens`` of a generated
proposal is the token count (wrapped model's tokenizer) of *all* text generated for
it, pending part included; a proposal served from a pending continuation has
``n_tokens=0`` because those tokens were already counted. ``prefill_tokens`` counts
the prefix once per request sent (lm-eval models re-run the prompt per request).

Strategies: a model that continues text (``hf``/``hf-auto``, ``vllm``, ``sglang``,
``local-completions``, ...) runs every strategy, step-level ones (``beam``, ``mcts``,
``particle_filter``, ``dvts``) included, since every request continues an arbitrary
prefix and the steps are cut here. A chat-completions model (``local-chat-completions``,
``openai-chat-completions``, ``anthropic-chat``, ``litellm``: any class with ``Chat`` in
its name) answers a conversation and cannot continue a partial answer, so it is a
whole-solutions policy (``whole_solutions``): ``bon``, ``majority`` and ``greedy`` only,
step-level strategies are refused (``prm_plugin.strategy.check_policy``).
``policy.whole_solutions=true|false`` overrides the detection.

Limits: lm-eval models take no per-request seed; with ``seed`` set, the global
``random``/``numpy``/``torch`` seeds are set before each call, which makes a run
reproducible but not invariant to batch composition. Greedy (``temperature=0``)
sends one request per prefix and repeats its proposal (the copies have ``n_tokens=0``).
"""

from __future__ import annotations

import inspect
import random
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from prm_plugin.search import PrefixProposals, Proposal, StopReason

_PendingKey = tuple[str, float, float, int, tuple[str, ...], tuple[str, ...]]


class LMEvalPolicy:
    """Proposals from a wrapped lm-eval ``LM``.

    Args:
        lm: an lm-eval model instance (``HFLM``, ``VLLM``, an API model, ...). It must
            tokenize (``tok_encode`` or ``tokenizer.encode``) so costs are counted.
        max_pending: bound on kept pending continuations (oldest dropped first).
        whole_solutions: whether the model can only answer whole solutions (see the
            module docstring); None detects a chat-completions model by its class name.
    """

    def __init__(self, lm: Any, max_pending: int = 20_000, whole_solutions: bool | None = None) -> None:
        self.lm = lm
        self.whole_solutions = is_chat_model(lm) if whole_solutions is None else bool(whole_solutions)
        self.max_pending = max_pending
        self._pending: OrderedDict[_PendingKey, list[tuple[str, bool]]] = OrderedDict()
        self._encode = _token_counter(lm)
        params = inspect.signature(lm.generate_until).parameters
        self._quiet = {"disable_tqdm": True} if "disable_tqdm" in params else {}

    @property
    def label(self) -> str:
        return f"lm-eval {type(self.lm).__name__}"

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text)) if text else 0

    def propose(
        self,
        prefixes: Sequence[str],
        *,
        n: int,
        stop: Sequence[str],
        final_stop: Sequence[str] = (),
        max_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[PrefixProposals]:
        if n < 1:
            raise ValueError(f"propose() needs n >= 1, got {n}.")
        stops = tuple(s for s in stop if s)
        finals = tuple(final_stop)
        out: list[list[Proposal]] = [[] for _ in prefixes]
        requests: list[tuple[int, str]] = []  # (prefix index, prefix)
        for i, prefix in enumerate(prefixes):
            key = (prefix, temperature, top_p, max_tokens, stops, finals)
            while len(out[i]) < n and self._pending.get(key):
                text, natural_end = self._pending[key].pop(0)
                out[i].append(self._split(text, natural_end, 0, key))
            missing = n - len(out[i])
            if missing:
                requests += [(i, prefix)] * (1 if temperature == 0 else missing)
        texts = self._generate([p for _, p in requests], finals, max_tokens, temperature, top_p, seed)
        sent = [0] * len(prefixes)
        for (i, prefix), text in zip(requests, texts, strict=True):
            sent[i] += 1
            n_tok = self.count_tokens(text)
            key = (prefix, temperature, top_p, max_tokens, stops, finals)
            proposal = self._split(text, n_tok < max_tokens, n_tok, key)
            copies = n - len(out[i]) if temperature == 0 else 1
            out[i].append(proposal)
            out[i] += [Proposal(proposal.text, 0, proposal.stop_reason)] * (copies - 1)
        return [
            PrefixProposals(tuple(props), prefill_tokens=sent[i] * self.count_tokens(prefixes[i]))
            for i, props in enumerate(out)
        ]

    def _split(self, text: str, natural_end: bool, n_tokens: int, key: _PendingKey) -> Proposal:
        """One proposal from a continuation; keeps the part after a step as pending."""
        prefix, temperature, top_p, max_tokens, stops, finals = key
        cut = _first_stop(text, stops)
        if cut is None:
            reason: StopReason = "final" if natural_end else "length"
            return Proposal(text, n_tokens, reason)
        at, delim = cut
        step, rest = text[:at], text[at + len(delim):]
        if rest or natural_end:
            self._remember((prefix + step + delim, temperature, top_p, max_tokens, stops, finals), rest, natural_end)
        return Proposal(step, n_tokens, "step")

    def _remember(self, key: _PendingKey, text: str, natural_end: bool) -> None:
        # A continuation cut by the token cap with no further step boundary is not a
        # sample of anything complete: drop it rather than serve a truncated answer.
        if not natural_end and _first_stop(text, key[4]) is None:
            return
        self._pending.setdefault(key, []).append((text, natural_end))
        self._pending.move_to_end(key)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)

    def _generate(self, contexts: list[str], finals: tuple[str, ...], max_tokens: int,
                  temperature: float, top_p: float, seed: int | None) -> list[str]:
        if not contexts:
            return []
        from lm_eval.api.instance import Instance

        gen_kwargs: dict[str, Any] = {
            "until": list(finals), "max_gen_toks": max_tokens,
            "do_sample": temperature > 0, "temperature": temperature,
        }
        if temperature > 0 and top_p < 1.0:
            gen_kwargs["top_p"] = top_p
        requests = [
            Instance("generate_until", doc={}, arguments=(ctx, dict(gen_kwargs)), idx=i,
                     metadata=("prm_guided_policy", i, 1))
            for i, ctx in enumerate(contexts)
        ]
        if seed is not None:
            _seed_everything(seed)
        texts = self.lm.generate_until(requests, **self._quiet)
        if len(texts) != len(requests):
            raise RuntimeError(
                f"{type(self.lm).__name__}.generate_until returned {len(texts)} texts for {len(requests)} requests."
            )
        return [str(t) for t in texts]


def is_chat_model(lm: Any) -> bool:
    """Whether ``lm`` is a chat-completions model (lm-eval names those classes ``*Chat*``:
    ``LocalChatCompletion``, ``OpenAIChatCompletion``, ``AnthropicChat``, ...)."""
    return any("Chat" in cls.__name__ for cls in type(lm).__mro__)


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for s in stops:
        at = text.find(s)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, s)
    return best


def _token_counter(lm: Any) -> Any:
    if callable(getattr(lm, "tok_encode", None)):
        return lambda text: lm.tok_encode(text, add_special_tokens=False)
    tok = getattr(lm, "tokenizer", None)
    if tok is not None and callable(getattr(tok, "encode", None)):
        return lambda text: tok.encode(text, add_special_tokens=False)
    raise ValueError(
        f"policy={type(lm).__name__} has no tokenizer (tok_encode or tokenizer.encode), so its token "
        "costs cannot be measured. Give the model a tokenizer (e.g. tokenizer=... in model_args) "
        "or use policy=hf / policy=vllm."
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
