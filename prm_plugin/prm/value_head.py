"""The ``value_head`` family: this project's checkpoints (``ValueHeadPRM``).

Input layout: ``prm_plugin.prm.layout`` (shared with the trainer) — the question and
the separator, then each step followed by the separator; a step's score is
``sigmoid(head(hidden))`` at the last token of the separator that closes it. The
separator travels in the checkpoint's config (``step_separator``).
"""

from __future__ import annotations

from typing import Any

import torch

from prm_plugin.prm import layout
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
from prm_plugin.prm.scorer import StepScorer

MODEL_TYPE = "prm_value_head"


class ValueHeadSegmenter:
    """``layout.question_ids`` / ``layout.step_ids`` as trie segments."""

    def __init__(self, tokenizer: Any, separator: str) -> None:
        self.tokenizer = tokenizer
        self.separator = separator

    def question_segment(self, question: str) -> Segment:
        return tuple(layout.question_ids(self.tokenizer, question, self.separator))

    def step_segment(self, step: str, index: int) -> Segment:
        return tuple(layout.step_ids(self.tokenizer, step, self.separator))


class ValueHeadFamily:
    """Checkpoints whose config has ``model_type == "prm_value_head"``."""

    name = "value_head"

    @staticmethod
    def detect(info: CheckpointInfo) -> bool:
        return info.model_type == MODEL_TYPE

    @staticmethod
    def load(
        path: str,
        *,
        info: CheckpointInfo | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        step_separator: str | None = None,
        **options: Any,
    ) -> StepScorer:
        """Load a value-head PRM; needs nothing beyond the path.

        Raises:
            ValueError: ``step_separator`` differs from the one the checkpoint was trained
                with, or the separator encodes to no tokens.
        """
        scorer_opts, hub, _ = split_options(ValueHeadFamily.name, options)
        info = info or read_checkpoint(path, hub)
        tokenizer = require_tokenizer(info, ValueHeadFamily.name)
        trained = info.setting("step_separator")
        if not isinstance(trained, str) or not trained:
            raise ValueError(
                f"Value-head PRM {path!r} records no step_separator in its config. Re-save it with "
                "ValueHeadPRMConfig(step_separator=...)."
            )
        if step_separator is not None and step_separator != trained:
            raise ValueError(
                f"step_separator={step_separator!r} does not match the separator this value-head PRM "
                f"was trained with ({trained!r}). Drop the override, or use a PRM trained with "
                f"{step_separator!r}."
            )
        if not layout.encode_piece(tokenizer, trained):
            raise ValueError(f"The PRM's step separator {trained!r} encodes to no tokens with its tokenizer.")

        from prm_plugin.prm.value_head_model import ValueHeadPRM

        dev = resolve_device(device)
        model = ValueHeadPRM.from_pretrained(info.path, dtype=resolve_dtype(dtype, dev), **info.hub_kwargs)
        place(model, dev)
        head_module = model.head

        def head(hidden: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(head_module(hidden.to(head_module.dense.weight.dtype)).float())

        return StepScorer(
            model.backbone,
            head,
            ValueHeadSegmenter(tokenizer, trained),
            step_separator=trained,
            max_length=max_positions(model.config.backbone_config),
            name=f"value_head PRM {path}",
            **scorer_opts,
        )
