"""Export a value-head PRM as a two-class token-classification checkpoint.

The value head is ``Linear(h, h') -> act -> Linear(h', 1)``: two layers with a
nonlinearity, which cannot be folded into the single ``Linear(h, 2)`` of a plain
``*ForTokenClassification``. The export therefore targets the two-layer step head that
Qwen2.5-Math-PRM and vLLM's ``Qwen2ForProcessRewardModel`` use:
``score = Sequential(Linear(h, h), ReLU, Linear(h, 2))`` on a ``Qwen2Model``
(weights ``model.*``, ``score.0.*``, ``score.2.*``). The mapping is exact when:

- the backbone is Qwen2 (Qwen2.5 / Qwen2.5-Math),
- the head activation is ReLU (``PRMConfig.head_activation``'s default), and
- ``h' <= h``: extra hidden units are padded with zero rows/columns (ReLU(0) = 0 adds
  nothing);
- the two-class output layer gets row 0 = 0 and row 1 = the value head's output layer,
  so the logits are ``[0, z]`` and ``softmax([0, z])[1] = sigmoid(z)``.

Anything else is refused with the reason; such a checkpoint is scored with the
``value_head`` family instead.

Serving with vLLM (pooling runner, STEP pooling; flag names vary across vLLM releases)::

    vllm serve OUT_DIR --runner pooling \\
        --pooler-config '{"pooling_type": "STEP", "returned_token_ids": [0, 1]}'

Without ``step_tag_id`` the STEP pooler returns the two-class probabilities of every
token; the client picks each step's score at the last separator token of the
``prm_plugin.prm.layout`` layout (``prm_config.json`` records the separator and layout).
``step_tag_id`` (the separator's token id, also recorded) is usable only when the
separator is one token that never occurs inside questions or steps; note the layout
also puts a separator after the question, whose score is not a step's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Qwen2Config
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model, Qwen2PreTrainedModel

from prm_plugin._hf_compat import load_tokenizer
from prm_plugin.prm.layout import encode_piece
from prm_plugin.prm.value_head_model import ValueHeadPRM, ValueHeadPRMConfig

FORMATS = ("token_classification",)
LAYOUT = "prm_plugin.prm.layout"


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    """Qwen2 with the two-layer, two-class step head of Qwen2.5-Math-PRM / vLLM.

    Loads the exported checkpoints with plain ``from_pretrained`` (no remote code);
    ``forward`` returns ``logits`` of shape (batch, seq, 2), class 1 = step correct.
    """

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = Qwen2Model(config)
        h, labels = int(config.hidden_size), int(config.num_labels or 2)
        self.score = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, labels))
        self.post_init()

    def forward(
        self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> TokenClassifierOutput:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return TokenClassifierOutput(logits=self.score(hidden))


class ExportError(ValueError):
    """The checkpoint cannot be exported exactly; the message says why and what to do."""


def check_exportable(config: Any) -> None:
    """Raise ``ExportError`` unless ``config`` (a ``ValueHeadPRMConfig``) maps exactly."""
    if not isinstance(config, ValueHeadPRMConfig):
        raise ExportError(f"Not a value-head PRM checkpoint (model_type={getattr(config, 'model_type', None)!r}); "
                          "export-prm converts checkpoints written by `prm-plugin train`.")
    backbone: Any = config.backbone_config
    if backbone.model_type != "qwen2":
        raise ExportError(
            f"The backbone is {backbone.model_type!r}; the two-layer token-classification head exists "
            "natively only for Qwen2 (vLLM's Qwen2ForProcessRewardModel). Serve this checkpoint with the "
            "value_head family (prm_plugin.prm.load_prm) instead."
        )
    if config.head_activation != "relu":
        raise ExportError(
            f"The value head uses {config.head_activation!r}; the exported head applies ReLU, so scores would "
            "change. Train with head_activation='relu' (PRMConfig's default) to export, or keep serving "
            "with the value_head family."
        )
    if config.head_hidden_size > backbone.hidden_size:
        raise ExportError(
            f"head_hidden_size={config.head_hidden_size} exceeds the hidden size {backbone.hidden_size}; "
            "the exported head's hidden layer has exactly hidden_size units."
        )


def score_weights(prm: ValueHeadPRM) -> dict[str, torch.Tensor]:
    """The ``score.0`` / ``score.2`` weights equivalent to ``prm.head`` (see module doc)."""
    dense, out = prm.head.dense, prm.head.out
    backbone: Any = prm.config.backbone_config
    h, h_head = backbone.hidden_size, dense.out_features
    w0 = dense.weight.new_zeros((h, h))
    b0 = dense.bias.new_zeros((h,))
    w0[:h_head], b0[:h_head] = dense.weight.detach(), dense.bias.detach()
    w2 = out.weight.new_zeros((2, h))
    b2 = out.bias.new_zeros((2,))
    w2[1, :h_head], b2[1] = out.weight.detach()[0], out.bias.detach()[0]
    return {"score.0.weight": w0, "score.0.bias": b0, "score.2.weight": w2, "score.2.bias": b2}


def export_token_classification(checkpoint: str, output_dir: str | Path) -> Path:
    """Write ``checkpoint`` (a value-head PRM) as a ``Qwen2ForProcessRewardModel``
    checkpoint, with its tokenizer and a ``prm_config.json`` naming the separator and
    layout, to ``output_dir``. Returns the output path."""
    prm = ValueHeadPRM.from_pretrained(checkpoint, dtype="auto")
    check_exportable(prm.config)
    separator = prm.config.step_separator
    backbone: Any = prm.config.backbone_config
    config = Qwen2Config.from_dict(backbone.to_dict())
    config.num_labels = 2
    config.id2label, config.label2id = {0: "incorrect", 1: "correct"}, {"incorrect": 0, "correct": 1}
    config.step_separator = separator
    config.prm_layout = LAYOUT
    state = {f"model.{k}": v for k, v in prm.backbone.state_dict().items()}
    state.update(score_weights(prm))
    with torch.device("meta"):
        exported = Qwen2ForProcessRewardModel(config)
    exported.load_state_dict(state, strict=True, assign=True)
    out = Path(output_dir)
    exported.save_pretrained(out)
    tokenizer = load_tokenizer(checkpoint)  # as saved, like the PRM families load it
    tokenizer.save_pretrained(out)
    sep_ids = encode_piece(tokenizer, separator)
    (out / "prm_config.json").write_text(json.dumps({
        "family": "token_classification",
        "step_separator": separator,
        "layout": LAYOUT,
        "positive_label": 1,
        "score_position": "last token of the separator closing each step",
        "step_tag_id": sep_ids[-1],
        "exported_from": "value_head",
    }, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: Sequence[str]) -> int:
    """``prm-plugin export-prm CKPT --format token_classification --output DIR``."""
    parser = argparse.ArgumentParser(
        prog="prm-plugin export-prm",
        description="Export a value-head PRM checkpoint as an equivalent two-class token-classification "
                    "(Qwen2ForProcessRewardModel) checkpoint that vLLM serves natively.",
    )
    parser.add_argument("checkpoint", help="path (or Hub id) of a checkpoint written by `prm-plugin train`")
    parser.add_argument("--format", choices=FORMATS, default="token_classification")
    parser.add_argument("--output", required=True, help="directory to write the exported checkpoint to")
    args = parser.parse_args(list(argv))
    try:
        out = export_token_classification(args.checkpoint, args.output)
    except ExportError as exc:
        print(f"prm-plugin export-prm: error: {exc}", file=sys.stderr)
        return 2
    print(f"Exported {args.checkpoint} -> {out} (format: {args.format})")
    return 0
