"""Any EvalPlus model as a whole-solution policy (``policy=evalplus:<backend>``).

EvalPlus drives many models through one interface, ``DecoderBase.codegen(prompt,
do_sample, num_samples)``: its ``hf`` and ``vllm`` backends, ``openai`` (any
OpenAI-compatible chat server through ``base_url``: vLLM, SGLang, Ollama's ``/v1``),
``anthropic`` and ``google``. ``EvalPlusPolicy`` wraps such a decoder, built with
EvalPlus's own ``make_model``, so ``bon``, ``majority`` (plain or ``weighted=true``)
and ``greedy`` run with any model EvalPlus can reach::

    lm_eval --model prm_guided --tasks humaneval_plus_prm \\
        --model_args policy=evalplus:openai,pretrained=gpt-4o-mini,base_url=https://api.openai.com/v1,prm=my/prm

How the ``Policy`` contract maps onto ``codegen`` (EvalPlus 0.3.1):

* whole solutions only (``whole_solutions = True``): ``codegen`` takes a task prompt and
  returns finished answers, so there are no step boundaries and no continuation of a
  partial solution; step-level strategies are refused before anything runs
  (``prm_plugin.strategy.check_policy``), and a call with step stops raises;
* the prompt: each prefix is given to ``codegen`` as EvalPlus's task prompt, and the
  decoder formats it its own way: chat models get EvalPlus's instruction prompt
  (``instruction_prefix`` / ``response_prefix``, EvalPlus's defaults unless given),
  ``hf``/``vllm`` models without a chat template (or with ``force_base_prompt=true``)
  continue it directly;
* ``n``: ``codegen`` is called until ``n`` solutions are in (each call returns up to the
  decoder's ``batch_size``; default: all ``n`` in one call); temperature 0 asks for one
  greedy solution and repeats it (copies count no tokens);
* ``temperature`` and ``max_tokens`` are set on the decoder for each call (its
  ``temperature`` / ``max_new_tokens`` attributes, which every EvalPlus decoder reads at
  call time); ``final_stop`` strings join the decoder's own stop strings (EvalPlus's
  ``eos``) for the call and cut the returned text; ``top_p`` is EvalPlus's own (0.95
  when sampling), so only the default 1.0 ("the backend's own") or 0.95 are accepted;
  ``seed`` is not honoured (EvalPlus decoders take none): only greedy runs repeat;
* tokens: EvalPlus returns text only. With a tokenizer (the decoder's own for ``hf`` /
  ``vllm``; ``tokenizer=<local path>`` for the API backends) ``n_tokens`` is the token
  count of the returned text (tokens generated past a stop string EvalPlus cut are not
  seen) and ``stop_reason`` is ``"length"`` when that count reaches ``max_tokens``,
  else ``"final"``; ``prefill_tokens`` counts the prompt the decoder runs (its chat
  formatting included for ``hf`` / ``vllm``; the task prompt for API backends) once per
  ``codegen`` call. Without a tokenizer every count is 0 and ``counts_tokens`` is False:
  the harness records the counts as unknown and refuses ``max_policy_tokens``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prm_plugin.search import PrefixProposals, Proposal

#: EvalPlus's ``codegen`` prompt texts for chat models (``evalplus.codegen.run_codegen``).
INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem in a "
                      "markdown code block:")
RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                   "corresponding tests:")
#: The backends of EvalPlus 0.3.1's ``make_model``, when its source cannot be read.
KNOWN_BACKENDS = ("vllm", "hf", "openai", "anthropic", "google")
#: The ``top_p`` values that mean EvalPlus's own (see the module docstring).
_OWN_TOP_P = (1.0, 0.95)


def evalplus_backends() -> tuple[str, ...]:
    """The backends the installed EvalPlus's ``make_model`` builds (read from its source,
    since EvalPlus keeps no registry), less this plugin's own ``prm_guided``."""
    make_model = _make_model()
    try:
        found = re.findall(r"backend\s*==\s*[\"'](\w+)[\"']", inspect.getsource(make_model))
    except (OSError, TypeError):
        found = []
    return tuple(b for b in dict.fromkeys(found or KNOWN_BACKENDS) if b != "prm_guided")


class EvalPlusPolicy:
    """A ``Policy`` over an EvalPlus decoder (see the module docstring).

    Args:
        decoder: an EvalPlus ``DecoderBase`` (``evalplus.provider.make_model``'s result).
        backend: its EvalPlus backend name (for messages and the run's record).
        tokenizer: counts tokens; default the decoder's own (``hf``, ``vllm``), else None
            (counts unknown).
        batch_size: solutions per ``codegen`` call; None asks for all ``n`` at once.
    """

    whole_solutions = True
    per_prefix_max_tokens = True

    def __init__(self, decoder: Any, backend: str, tokenizer: Any = None, batch_size: int | None = None) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, or None for all n solutions per codegen call; got {batch_size}.")
        self.decoder, self.backend, self.batch_size = decoder, backend, batch_size
        self.tokenizer = tokenizer if tokenizer is not None else getattr(decoder, "tokenizer", None)
        self.counts_tokens = self.tokenizer is not None

    @classmethod
    def from_settings(cls, backend: str, model: str | None, *, tokenizer: str | None = None,
                      api_key: str | None = None, **settings: Any) -> EvalPlusPolicy:
        """Build EvalPlus's decoder for ``backend`` serving ``model``.

        Args:
            backend: an EvalPlus backend (``evalplus_backends()``).
            model: the model (``--model`` of EvalPlus: a Hub id or path, an API model name).
            tokenizer: a local tokenizer (path or Hub id) for token counts; the ``hf`` and
                ``vllm`` decoders bring their own.
            api_key: ``openai`` only: the key (default: EvalPlus reads ``$OPENAI_API_KEY``).
            **settings: ``make_model``'s other arguments (``base_url``, ``dataset``,
                ``batch_size``, ``force_base_prompt``, ``instruction_prefix``, ``dtype``,
                ``tp``, ...). ``batch_size`` defaults to ``n`` per call; ``dataset`` to
                ``humaneval`` (it only picks the stop strings of direct completion).

        Raises:
            ValueError: an unknown backend or setting, or a missing model, before anything loads.
        """
        backends = evalplus_backends()
        if backend not in backends:
            hint = " (Ollama: evalplus:openai with base_url=http://localhost:11434/v1)" if backend == "ollama" else ""
            raise ValueError(f"Unknown EvalPlus backend {backend!r} in policy=evalplus:{backend}{hint}. "
                             f"EvalPlus's backends: {', '.join(backends)}.")
        if not model:
            raise ValueError(f"policy=evalplus:{backend} needs pretrained=<the model EvalPlus should run>.")
        if api_key is not None and backend != "openai":
            raise ValueError(f"api_key applies to evalplus:openai only; EvalPlus's {backend} backend reads its key "
                             "from the environment.")
        make_model = _make_model()
        accepted = set(inspect.signature(make_model).parameters) - {"model", "backend"}
        unknown = sorted(set(settings) - accepted)
        if unknown:
            raise ValueError(f"EvalPlus's make_model takes no {', '.join(unknown)} (policy.<key>= settings of "
                             f"policy=evalplus:{backend}); it takes: {', '.join(sorted(accepted))}.")
        chat = {"instruction_prefix": INSTRUCTION_PREFIX, "response_prefix": RESPONSE_PREFIX}
        kwargs = {"dataset": "humaneval", **{k: v for k, v in chat.items() if k in accepted}, **settings}
        decoder = make_model(model=model, backend=backend, **kwargs)
        if decoder is None:  # make_model falls through on a backend it does not build
            raise ValueError(f"EvalPlus's make_model built nothing for backend {backend!r}.")
        if api_key is not None:
            decoder.client.api_key = api_key
        tok = None
        if tokenizer is not None:
            from prm_plugin._hf_compat import load_tokenizer

            tok = load_tokenizer(tokenizer)
        return cls(decoder, backend, tok, batch_size=settings.get("batch_size"))

    @property
    def label(self) -> str:
        return f"evalplus:{self.backend} ({self.decoder.name})"

    @property
    def formats_prompt(self) -> bool:
        """Whether the decoder wraps the prompt in its own chat prompt (so a harness must
        not apply a chat template first)."""
        direct = getattr(self.decoder, "is_direct_completion", None)
        return not (callable(direct) and direct())

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the counting tokenizer; 0 when there is none."""
        if not text or self.tokenizer is None:
            return 0
        return len(self.tokenizer.encode(text, add_special_tokens=False))

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
        if n < 1:
            raise ValueError(f"propose() needs n >= 1, got {n}.")
        if any(stop):
            raise ValueError(f"{self.label} returns whole solutions only: it cannot stop at step boundaries "
                             f"{list(stop)!r}. Use bon, majority or greedy with it.")
        if top_p not in _OWN_TOP_P:
            raise ValueError(f"{self.label} samples with EvalPlus's own top_p (0.95); top_p={top_p} cannot be "
                             "honoured. Drop the setting (or give top_p=0.95).")
        caps = [max_tokens] * len(prefixes) if isinstance(max_tokens, int) else list(max_tokens)
        return [self._one(prefix, n, list(final_stop), cap, temperature) for prefix, cap in zip(prefixes, caps,
                                                                                                 strict=True)]

    def _one(self, prompt: str, n: int, final_stop: list[str], max_tokens: int, temperature: float) -> PrefixProposals:
        greedy = temperature == 0
        wanted = 1 if greedy else n  # greedy solutions are all equal: one, repeated
        texts: list[str] = []
        calls = 0
        with self._configured(temperature, max_tokens, final_stop, wanted):
            while len(texts) < wanted:
                got = self.decoder.codegen(prompt, do_sample=not greedy, num_samples=wanted - len(texts))
                calls += 1
                if not got:
                    raise RuntimeError(f"{self.label}: codegen returned no solution.")
                texts += [str(t) for t in got][: wanted - len(texts)]
        proposals = [self._proposal(_cut(t, final_stop), max_tokens) for t in texts]
        if greedy:
            proposals += [Proposal(proposals[0].text, 0, proposals[0].stop_reason)] * (n - 1)
        return PrefixProposals(tuple(proposals), prefill_tokens=calls * self.count_tokens(self._sent(prompt)))

    def _proposal(self, text: str, max_tokens: int) -> Proposal:
        n_tokens = self.count_tokens(text)
        return Proposal(text, n_tokens, "length" if self.counts_tokens and n_tokens >= max_tokens else "final")

    def _sent(self, prompt: str) -> str:
        """The text the decoder runs for ``prompt``: EvalPlus's chat prompt where an
        ``hf`` / ``vllm`` decoder applies one (API backends: the task prompt)."""
        if self.backend in ("hf", "vllm") and self.formats_prompt:
            from evalplus.provider.utility import make_raw_chat_prompt

            d = self.decoder
            return str(make_raw_chat_prompt(prompt, d.instruction_prefix, d.response_prefix, d.tokenizer))
        return prompt

    @contextmanager
    def _configured(self, temperature: float, max_tokens: int, final_stop: list[str], n: int) -> Iterator[None]:
        """The decoder set up for one call (EvalPlus decoders read these at call time)."""
        d = self.decoder
        saved = d.temperature, d.max_new_tokens, d.eos, d.batch_size
        d.temperature, d.max_new_tokens = temperature, max_tokens
        d.eos = list(d.eos) + [s for s in final_stop if s not in d.eos]
        d.batch_size = self.batch_size or n
        try:
            yield
        finally:
            d.temperature, d.max_new_tokens, d.eos, d.batch_size = saved

    def __repr__(self) -> str:
        return f"EvalPlusPolicy({self.label})"


def _cut(text: str, stops: Sequence[str]) -> str:
    """``text`` before the first of ``stops`` (API backends do not stop on them)."""
    at = min((text.index(s) for s in stops if s and s in text), default=len(text))
    return text[:at]


def _make_model() -> Any:
    try:
        from evalplus.provider import make_model
    except ImportError as exc:
        raise ValueError(f"policy=evalplus:<backend> needs EvalPlus: pip install 'prm-plugin[evalplus]' ({exc}).") from exc
    return make_model
