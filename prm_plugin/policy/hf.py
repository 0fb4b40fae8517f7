"""The Hugging Face transformers policy: batched sampling with prefix-KV reuse.

``HFPolicy.propose`` runs its own loop (prefill, then one token per step with the KV
cache) instead of ``model.generate``, because the search needs things ``generate`` does
not give:

* a private random stream per (seed, prefix text, sample index), so a continuation is
  the same whatever else shares the batch (a batched search and a one-problem-at-a-time
  reference pick the same answers);
* stop strings matched on incrementally decoded text, with the reason (step boundary,
  end of solution, EOS, token cap) and exact token counts;
* finished rows stop sampling at once and leave the batch once they are a quarter of it;
* keys/values appended in place (``GrowingLayer``), not re-concatenated every token;
* the samples of one prefix read its KV once instead of each holding a copy
  (``_shared_prefix``: cascade attention, where the model passes a probe);
* a KV cache that outlives the call (``PrefixKVCache``): a prefix extending an earlier
  prefix or generated step prefills only the tokens not cached.

Tokenisation and the prefix cache. A prefix is always tokenised canonically —
``tokenizer(prefix)`` exactly as if no cache existed — so outputs never depend on what
is cached (with or without reuse, greedy outputs are identical; sampled ones agree up to
float noise). The cache matches token ids (longest common prefix in a radix tree). When
the model sampled the canonical tokens of its own text (always with character-level
tokenizers, almost always with trained BPE models) the next call reuses the KV of the
whole generated step; where it sampled a non-canonical split, reuse stops at the first
differing token and the rest is prefilled again — that is counted, never hidden. The
token that contained the stop string was sampled but never run through the model, so the
step delimiter is always prefilled: at least one token per extended prefix, and always
the last prefix token (its logits start the sampling).

Context. A prefix must leave room to generate within the model's context
(``max_length``; default: the model config's position limit); one that does not is cut
from the left, skipped or refused by ``on_overflow`` (``prm_plugin.policy._context``),
and generation stops at the context's end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from prm_plugin.policy._context import Fit, fit_prefix
from prm_plugin.policy._decode import Decoder, Job, RowOut, RowSpec, Settings
from prm_plugin.policy._request import check_request, token_caps
from prm_plugin.policy._sampling import fresh_seed, row_stream
from prm_plugin.policy.prefix_cache import PrefixKVCache
from prm_plugin.search import PrefixProposals, Proposal, check_overflow_policy

log = logging.getLogger(__name__)

#: Prefix-cache size used on a CPU device when none is given.
DEFAULT_CPU_CACHE_BYTES = 1 << 30
#: Share of free accelerator memory the prefix cache may take when none is given.
DEFAULT_GPU_CACHE_SHARE = 0.3


class HFPolicy:
    """A ``Policy`` over a transformers causal LM.

    Args:
        model: a causal LM (``AutoModelForCausalLM``); put in eval mode here.
        tokenizer: its tokenizer (a fast tokenizer is strongly advised: decoding is
            incremental and batched).
        device: where to run; default: the model's device.
        batch_size: most rows (prefix samples) decoded together; larger requests are
            split into groups of this many rows.
        prefix_cache_bytes: bound on cached KV kept across calls. None: 30% of the free
            accelerator memory, or 1 GiB on CPU. 0 turns reuse off.
        add_bos: put the tokenizer's BOS token before each prefix (unless the prefix text
            already starts with it). None: do what ``tokenizer(text)`` does by default.
        shared_prefix_attention: the samples of a prefix read its KV once instead of each
            holding a copy (``_shared_prefix``; used where the model passes a probe).
            False: every row attends over its own copy, as ``generate`` does.
        max_length: the context in positions (prompt + generated tokens). None: the
            model config's ``max_position_embeddings`` (or ``n_positions`` / ``n_ctx``),
            else the tokenizer's ``model_max_length`` when set, else unlimited.
        on_overflow: a prefix longer than the context: ``"truncate"`` (cut from the
            left), ``"skip"`` (not continued) or ``"error"`` (see ``_context``).

    The policy keeps state (the prefix cache) between calls; it is not thread-safe.
    """

    #: ``propose`` takes one ``max_tokens`` per prefix (see ``Policy``).
    per_prefix_max_tokens = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        prefix_cache_bytes: int | None = None,
        add_bos: bool | None = None,
        shared_prefix_attention: bool = True,
        max_length: int | None = None,
        on_overflow: str = "truncate",
    ) -> None:
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 2):
            raise ValueError(f"max_length must be an int >= 2 (the context in tokens) or None, got {max_length!r}.")
        self.on_overflow = check_overflow_policy(on_overflow, "on_overflow (policy)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1 (rows decoded together), got {batch_size!r}.")
        if prefix_cache_bytes is not None and (
            isinstance(prefix_cache_bytes, bool) or not isinstance(prefix_cache_bytes, int) or prefix_cache_bytes < 0
        ):
            raise ValueError(
                f"prefix_cache_bytes must be >= 0 (0 disables reuse) or None (automatic), "
                f"got {prefix_cache_bytes!r}."
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if device is not None:
            self.model.to(self.device)
        self.batch_size = batch_size
        self.max_length = max_length if max_length is not None else _context_length(model, tokenizer)
        self.add_bos = _default_add_bos(tokenizer) if add_bos is None else add_bos
        if self.add_bos and tokenizer.bos_token_id is None:
            raise ValueError("add_bos=True but the tokenizer has no BOS token; pass add_bos=False.")
        self._warned_overflow = False
        size = _auto_cache_bytes(self.device) if prefix_cache_bytes is None else prefix_cache_bytes
        self.prefix_cache = PrefixKVCache(size)
        self._decoder = Decoder(
            self.model,
            tokenizer,
            device=self.device,
            eos_ids=_eos_ids(model, tokenizer),
            pad_id=_pad_id(model, tokenizer),
            prefix_cache=self.prefix_cache,
            shared_prefix=shared_prefix_attention,
        )
        if size and self._decoder.prefix_cache is None:
            log.warning(
                "%s has a KV layout other than plain full attention; prefix-KV reuse is off.",
                type(model).__name__,
            )

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 64,
        prefix_cache_bytes: int | None = None,
        add_bos: bool | None = None,
        shared_prefix_attention: bool = True,
        tokenizer: str | None = None,
        max_length: int | None = None,
        on_overflow: str = "truncate",
        **model_kwargs: Any,
    ) -> HFPolicy:
        """Load a causal LM and its tokenizer.

        Args:
            path_or_id: a local directory or a Hub id.
            device: default ``"cuda"`` when available, else ``"cpu"``.
            dtype: e.g. ``"bfloat16"``, ``torch.float16`` or ``"auto"``; default: transformers'.
            tokenizer: load the tokenizer from here instead of ``path_or_id``.
            **model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained``
                (``revision``, ``trust_remote_code``, ``attn_implementation``, ...).
            Other arguments: as for ``HFPolicy``.
        """
        from transformers import AutoModelForCausalLM

        from prm_plugin._hf_compat import load_tokenizer

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is not None:
            if isinstance(dtype, str) and dtype != "auto":
                if not isinstance(getattr(torch, dtype, None), torch.dtype):
                    raise ValueError(f"dtype={dtype!r} is not a torch dtype; use e.g. 'bfloat16' or 'auto'.")
                dtype = getattr(torch, dtype)
            model_kwargs["dtype"] = dtype
        trust = model_kwargs.get("trust_remote_code", False)
        hub = {"trust_remote_code": trust, "revision": model_kwargs.get("revision")}
        tok = load_tokenizer(tokenizer or path_or_id, {k: v for k, v in hub.items() if v is not None})
        model = AutoModelForCausalLM.from_pretrained(path_or_id, **model_kwargs)
        return cls(model, tok, device=device, batch_size=batch_size,
                   prefix_cache_bytes=prefix_cache_bytes, add_bos=add_bos,
                   shared_prefix_attention=shared_prefix_attention, max_length=max_length,
                   on_overflow=on_overflow)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this policy's tokenizer (no special tokens added)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, prefix: str) -> list[int]:
        """The token ids a prefix is run as (canonical tokenisation, BOS per ``add_bos``)."""
        ids = list(self.tokenizer(prefix, add_special_tokens=False)["input_ids"])
        bos = self.tokenizer.bos_token_id
        if self.add_bos and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        if not ids:
            raise ValueError(
                "An empty prefix gives the model nothing to continue and this tokenizer has no "
                "BOS token; pass a non-empty prompt."
            )
        return ids

    @torch.inference_mode()
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
        """Sample ``n`` continuations of every prefix (see ``Policy.propose``).

        Sample ``j`` of the ``k``-th occurrence of a prefix text in ``prefixes`` draws from
        the stream of (seed, text, ``k * n + j``): repeating a prefix asks for more,
        different samples, exactly as a larger ``n`` would. With ``temperature == 0`` the
        continuation is computed once per (text, cap) and repeated. ``prefill_tokens`` of a
        repeated text is charged to its first occurrence. ``max_tokens`` may give one cap
        per prefix; a row's cap never changes what it samples, only where it is cut.
        """
        stops = check_request(prefixes, n=n, stop=stop, final_stop=final_stop, max_tokens=max_tokens,
                              temperature=temperature, top_p=top_p, seed=seed)
        if not prefixes:
            return []
        caps = token_caps(max_tokens, len(prefixes))
        fits = self._fit(prefixes, caps)
        base = fresh_seed() if seed is None else seed
        greedy = temperature == 0
        jobs: dict[str, Job] = {}
        slots: list[list[tuple[Any, ...]]] = []  # per prefix: the row key of each proposal
        for text, cap in zip(prefixes, caps, strict=True):
            fit = fits[text]
            if fit.skipped:
                slots.append([])
                continue
            cap = min(cap, fit.cap)
            job = jobs.get(text)
            if job is None:
                job = jobs[text] = Job(fit.ids, [])
            if greedy:
                key = (text, "greedy", cap)
                if all(r.key != key for r in job.rows):
                    job.rows.append(RowSpec(key, None, cap))
                slots.append([key] * n)
                continue
            first = len(job.rows)
            job.rows.extend(RowSpec((text, k), row_stream(base, text, k), cap) for k in range(first, first + n))
            slots.append([(text, k) for k in range(first, first + n)])
        outs, prefilled = ({}, {}) if not jobs else self._run(
            list(jobs.values()), Settings(stops, max(r.max_tokens or 1 for j in jobs.values() for r in j.rows),
                                          float(temperature), float(top_p)))
        charged: set[str] = set()
        result = []
        for text, keys in zip(prefixes, slots, strict=True):
            fit = fits[text]
            props = tuple(Proposal(outs[k].text, outs[k].n_tokens, outs[k].stop_reason) for k in keys)
            paid = 0 if text in charged or fit.skipped else prefilled[text]
            result.append(PrefixProposals(props, paid, fit.overflow, fit.cut))
            charged.add(text)
        return result

    def _fit(self, prefixes: Sequence[str], caps: Sequence[int]) -> dict[str, Fit]:
        """Each unique prefix's ids, cut (or skipped) to leave room for its largest cap."""
        most: dict[str, int] = {}
        first: dict[str, int] = {}
        for i, (text, cap) in enumerate(zip(prefixes, caps, strict=True)):
            most[text] = max(cap, most.get(text, 0))
            first.setdefault(text, i)
        fits = {}
        for text, cap in most.items():
            ids = self.encode(text)
            keep_head = int(self.add_bos and ids[0] == self.tokenizer.bos_token_id)
            fits[text] = fit_prefix(ids, cap, self.max_length, self.on_overflow, keep_head=keep_head,
                                    index=first[text])
        cut = [f for f in fits.values() if f.overflow]
        if cut:
            log.log(logging.WARNING if not self._warned_overflow else logging.DEBUG,
                    "HF policy: %d prefix(es) of this call do not fit the context of %d positions; "
                    "on_overflow=%s (counted per problem in Cost.policy_truncated / policy_skipped%s).",
                    len(cut), self.max_length, self.on_overflow, "" if self._warned_overflow else "; warned once")
            self._warned_overflow = True
        return fits

    def _run(self, jobs: list[Job], s: Settings) -> tuple[dict[Any, RowOut], dict[str, int]]:
        """Split jobs into groups of at most ``batch_size`` rows (longest prefixes first, so a
        group's padding is small) and run them."""
        outs: dict[Any, RowOut] = {}
        prefilled: dict[str, int] = {}
        group: list[Job] = []
        rows = 0
        for job in sorted(jobs, key=lambda j: -len(j.ids)):
            text = job.rows[0].key[0]
            prefilled.setdefault(text, 0)
            pending = list(job.rows)
            while pending:
                take = pending[: self.batch_size - rows]
                pending = pending[len(take):]
                group.append(Job(job.ids, take))
                rows += len(take)
                if rows == self.batch_size:
                    self._run_group(group, s, outs, prefilled)
                    group, rows = [], 0
        if group:
            self._run_group(group, s, outs, prefilled)
        return outs, prefilled

    def _run_group(self, group: list[Job], s: Settings, outs: dict[Any, RowOut],
                   prefilled: dict[str, int]) -> None:
        got, counts = self._decoder.run(group, s)
        outs.update(got)
        for job, count in zip(group, counts, strict=True):
            prefilled[job.rows[0].key[0]] += count


def _context_length(model: Any, tokenizer: Any) -> int | None:
    """The model's context: its config's position limit, else the tokenizer's, else None."""
    config: Any = getattr(model, "config", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 1:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 1 < value < 10**8 else None


def _default_add_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """EOS ids from the tokenizer and the model's generation config (an int or a list)."""
    out: set[int] = set()
    candidates = [tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)]
    for value in candidates:
        if isinstance(value, int):
            out.add(value)
        elif isinstance(value, (list, tuple)):
            out.update(int(v) for v in value)
    return frozenset(out)


def _pad_id(model: Any, tokenizer: Any) -> int:
    """Any valid id works: padding is masked out."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, getattr(model.config, "pad_token_id", None)):
        if isinstance(value, int):
            return value
    return 0


def _auto_cache_bytes(device: torch.device) -> int:
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * DEFAULT_GPU_CACHE_SHARE)
    return DEFAULT_CPU_CACHE_BYTES
