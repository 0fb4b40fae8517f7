"""The ``lm_head`` family: a causal LM that answers ``+`` / ``-`` at a step tag.

Math-Shepherd layout (``peiyi9979/math-shepherd-mistral-7b-prm``): the input is
``question + " " + step1 + " ки\\n" + step2 + " ки\\n" + ... + stepN + " ки"``, tokenised
with the tokenizer's own BOS, and a step's score is ``softmax(logits[[+, -]])[0]`` at
the position of its ``ки`` tag token (the logits there predict the label that
replaces the tag in training data).

Segments, so that positions are exact and the prefix cache works: the question with
its BOS; step 1 as ``" " + step1`` then the tag; step k > 1 as ``"\\n" + step_k`` then
the tag. Each step piece is tokenised *in context* (after an anchor that ends the
way the real preceding text does, then the anchor's ids are dropped), which is what
keeps sentencepiece tokenizers (Mistral, Llama) from inventing a word-start marker
at every piece. Tag and labels can be overridden (``step_tag=``, ``good_token=``,
``bad_token=``) or recorded in ``prm_config.json``; each must be a single token.

The RLHFlow chat format (each step a user turn, the assistant answers ``+``/``-``;
``prm_plugin.prm.chat_steps``) is the same head over another layout: chosen by
``format="rlhflow"``, ``prm_config.json`` ``{"format": "rlhflow"}``, or a checkpoint
path containing "rlhflow".
"""

from __future__ import annotations

from typing import Any

import torch

from prm_plugin.prm.chat_steps import RLHFlowSegmenter
from prm_plugin.prm.checkpoint import (
    CheckpointInfo,
    max_positions,
    place,
    read_checkpoint,
    require_tokenizer,
    resolve_device,
    resolve_dtype,
    split_options,
)
from prm_plugin.prm.kv_cache import Segment
from prm_plugin.prm.layout import encode_after, encode_piece

STEP_TAG = " ки"
GOOD_TOKEN, BAD_TOKEN = "+", "-"
FORMATS = ("math_shepherd", "rlhflow")


def tag_token_id(tokenizer: Any, tag: str) -> int | None:
    """The single token ``tag`` becomes after a word, or None if it is not one token."""
    ids = encode_after(tokenizer, "x", tag)
    return ids[0] if len(ids) == 1 else None


class MathShepherdSegmenter:
    """``[bos] question | " " step1 ки | "\\n" step2 ки | ...`` (see the module docstring)."""

    def __init__(self, tokenizer: Any, tag: str, tag_id: int) -> None:
        self.tokenizer = tokenizer
        self.tag = tag
        self.tag_id = tag_id
        bos = getattr(tokenizer, "bos_token_id", None)
        self.bos: list[int] = []
        if bos is not None and tokenizer("x", add_special_tokens=True)["input_ids"][:1] == [bos]:
            self.bos = [int(bos)]

    def question_segment(self, question: str) -> Segment:
        return (*self.bos, *encode_piece(self.tokenizer, question))

    def step_segment(self, step: str, index: int) -> Segment:
        if index == 0:
            ids = encode_after(self.tokenizer, "x", " " + step)
        else:
            ids = encode_after(self.tokenizer, "x" + self.tag, "\n" + step)
        return (*ids, self.tag_id)


class LMHeadFamily:
    """Causal-LM PRMs that answer ``+`` / ``-`` at a one-token step tag (Math-Shepherd).

    Detection needs the tag to be one token *and* a sign that the LM is a PRM:
    ``prm_config.json`` naming this family or a ``step_tag``, or a checkpoint name
    containing "prm" or "shepherd". Large vocabularies (Mistral's, Qwen's) hold ``ки``
    anyway, so a plain chat model is never taken for a PRM; load one explicitly with
    ``family="lm_head"``.
    """

    name = "lm_head"

    @staticmethod
    def detect(info: CheckpointInfo) -> bool:
        if not any(a.endswith("ForCausalLM") for a in info.architectures) or info.tokenizer is None:
            return False
        if _format(info, None) == "rlhflow":
            return bool(getattr(info.tokenizer, "chat_template", None))
        tag = info.setting("step_tag") or STEP_TAG
        if tag_token_id(info.tokenizer, tag) is None:
            return False
        declared = info.prm_config.get("family") == LMHeadFamily.name or "step_tag" in info.prm_config
        name = info.path.rstrip("/").rsplit("/", 1)[-1].lower()
        return declared or "prm" in name or "shepherd" in name

    @staticmethod
    def load(
        path: str,
        *,
        info: CheckpointInfo | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        step_separator: str | None = None,
        **options: Any,
    ) -> Any:
        """Load a Math-Shepherd-style (or, with ``format="rlhflow"``, RLHFlow) PRM.

        ``step_separator`` (or ``step_tag``) names the Math-Shepherd tag, default ``" ки"``.

        Raises:
            ValueError: the tag, ``+`` or ``-`` is not a single token, or the tag given
                contradicts the one the checkpoint records.
        """
        from transformers import AutoModelForCausalLM

        from prm_plugin.prm.scorer import StepScorer

        own_names = ("step_tag", "good_token", "bad_token", "format")
        scorer_opts, hub, own = split_options(LMHeadFamily.name, options, own_names)
        info = info or read_checkpoint(path, hub)
        tokenizer = require_tokenizer(info, LMHeadFamily.name)
        good, bad = _label_ids(info, tokenizer, own)
        segmenter: Any
        if _format(info, own.get("format")) == "rlhflow":
            if step_separator is not None or "step_tag" in own:
                raise ValueError("The RLHFlow format puts each step in its own chat turn; drop step_separator.")
            segmenter = RLHFlowSegmenter(tokenizer, good)
            separator = segmenter.turn_end_text
        else:
            tag = _check_tag(info, tokenizer, step_separator, own)
            segmenter = MathShepherdSegmenter(tokenizer, tag, tag_token_id(tokenizer, tag) or 0)
            separator = tag + "\n"
        dev = resolve_device(device)
        model = AutoModelForCausalLM.from_pretrained(
            info.path, dtype=resolve_dtype(dtype, dev), **info.hub_kwargs
        )
        place(model, dev)
        weight = model.get_output_embeddings().weight
        bias = getattr(model.get_output_embeddings(), "bias", None)
        # softmax over the (+, -) logits, P(+) = sigmoid(logit_+ - logit_-): one dot product.
        direction = (weight[good] - weight[bad]).detach().float()
        offset = float(bias[good] - bias[bad]) if bias is not None else 0.0

        def head(hidden: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(hidden.float() @ direction + offset)

        return StepScorer(
            model.get_decoder(),
            head,
            segmenter,
            step_separator=separator,
            max_length=max_positions(model.config),
            name=f"lm_head PRM {path}",
            **scorer_opts,
        )


def _format(info: CheckpointInfo, given: str | None) -> str:
    fmt = given or info.prm_config.get("format")
    if fmt is None:
        fmt = "rlhflow" if "rlhflow" in info.path.lower() else "math_shepherd"
    if fmt not in FORMATS:
        raise ValueError(f"Unknown lm_head format {fmt!r}; use one of: {', '.join(FORMATS)}.")
    return str(fmt)


def _check_tag(info: CheckpointInfo, tokenizer: Any, override: str | None, own: dict[str, Any]) -> str:
    """The Math-Shepherd step tag, checked to be one token in context."""
    given = own.get("step_tag", override)
    saved = info.setting("step_tag")
    if given is not None and saved is not None and given != saved:
        raise ValueError(
            f"step tag {given!r} does not match the tag recorded in {info.path!r} ({saved!r}). "
            "Drop the override."
        )
    tag = given or saved or STEP_TAG
    if tag_token_id(tokenizer, tag) is None:
        found = encode_after(tokenizer, "x", tag)
        raise ValueError(
            f"The step tag {tag!r} must be a single token of {info.path!r}'s tokenizer, but it encodes to "
            f"{len(found)} tokens {tokenizer.convert_ids_to_tokens(found)}. Use the PRM's own tokenizer, "
            "or pass step_tag= with the tag it was trained with."
        )
    return str(tag)


def _label_ids(info: CheckpointInfo, tokenizer: Any, own: dict[str, Any]) -> tuple[int, int]:
    """Ids of the good / bad label tokens, each checked to be one token."""
    ids = []
    for label, default in (("good_token", GOOD_TOKEN), ("bad_token", BAD_TOKEN)):
        text = own.get(label) or info.setting(label) or default
        found = encode_piece(tokenizer, text)
        if len(found) != 1:
            raise ValueError(
                f"The {label} {text!r} must be a single token, but {info.path!r}'s tokenizer gives "
                f"{len(found)}: {tokenizer.convert_ids_to_tokens(found)}. Pass {label}= with the label "
                "token the PRM was trained to predict."
            )
        ids.append(found[0])
    if ids[0] == ids[1]:
        raise ValueError(f"good_token and bad_token map to the same id {ids[0]}; they must differ.")
    return ids[0], ids[1]
