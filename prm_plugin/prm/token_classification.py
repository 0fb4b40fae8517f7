"""The ``token_classification`` family: a 2-class head at each step's end token.

Three layouts:

* **Qwen2.5-Math-PRM** (config ``architectures == ["Qwen2ForProcessRewardModel"]``,
  whose own code is remote — we never run it). The input is the chat template with
  system ``QWEN_SYSTEM``, the question as the user turn and the assistant turn
  ``step1<extra_0>step2<extra_0>...``; the score is ``softmax(logits)[1]`` at each
  ``<extra_0>``. The model is a Qwen2 backbone plus ``score = Sequential(Linear(h, h),
  ReLU, Linear(h, 2))`` built here and loaded by weight name (``model.*``,
  ``score.0.*``, ``score.2.*``), without ``trust_remote_code``. Tokens after the last
  ``<extra_0>`` (the turn's end) cannot change any score in a causal model, so they
  are not run.
* **TRL-style** ``*ForTokenClassification`` checkpoints with 2 labels (positive class
  1): ``[bos] prompt | step1 sep | step2 sep ...`` with each piece tokenised alone
  (TRL's ``tokenize_row``); the score sits on the last separator token. The separator
  comes from ``prm_config.json`` / the config (``step_separator``) or the
  ``step_separator=`` argument; with neither, TRL's old default ``"\\n"`` is used and a
  warning says so. A checkpoint whose weights hold a two-layer ``score.0`` /
  ``score.2`` head (e.g. a value head exported by ``prm-plugin export-prm``) loads
  with that head; its activation is the config's ``score_activation`` (default relu).
* **This project's layout** (``prm_plugin.prm.layout``: question + separator, then
  step + separator) when ``prm_config.json`` says ``"layout": "prm_plugin.prm.layout"``
  (config ``prm_layout``): value-head checkpoints exported by ``prm-plugin export-prm``,
  whatever their architecture name. The score is ``softmax(logits)[1]`` at the last
  separator token, equal to the value head's ``sigmoid`` by construction.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN

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
from prm_plugin.prm.layout import encode_piece
from prm_plugin.prm.scorer import StepScorer
from prm_plugin.prm.value_head import ValueHeadSegmenter

QWEN_ARCH = "Qwen2ForProcessRewardModel"
QWEN_STEP_TOKEN = "<extra_0>"
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
TRL_DEFAULT_SEPARATOR = "\n"
PROJECT_LAYOUT = "prm_plugin.prm.layout"
_MARKER = "\u2063PRM_STEPS\u2063"


class TwoLayerTokenClassifier(PreTrainedModel):
    """Any ``AutoModel`` backbone (attribute ``model``) plus ``score = Sequential(Linear(h,
    h), act, Linear(h, num_labels))``: the Qwen2.5-Math-PRM head, loaded by weight name."""

    config_class = PretrainedConfig
    base_model_prefix = "model"
    _supports_sdpa = True

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.model = AutoModel.from_config(config)
        hidden = config.hidden_size
        act = getattr(config, "score_activation", "relu")
        labels = int(config.num_labels or 2)
        self.score = nn.Sequential(nn.Linear(hidden, hidden), ACT2FN[act], nn.Linear(hidden, labels))
        self.post_init()


class QwenPRMSegmenter:
    """Chat-template prompt, then ``step + <extra_0>`` per step."""

    def __init__(self, tokenizer: Any, step_token_id: int, system: str = QWEN_SYSTEM) -> None:
        self.tokenizer = tokenizer
        self.step_token_id = step_token_id
        self.system = system

    def question_segment(self, question: str) -> Segment:
        messages = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": question},
            {"role": "assistant", "content": _MARKER},
        ]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        if _MARKER not in text:
            raise ValueError("The PRM's chat template drops the assistant turn; cannot lay out the steps.")
        return tuple(encode_piece(self.tokenizer, text.split(_MARKER)[0]))

    def step_segment(self, step: str, index: int) -> Segment:
        return (*encode_piece(self.tokenizer, step), self.step_token_id)


class TRLSegmenter:
    """TRL's stepwise layout: ``[bos] prompt``, then ``step + separator`` per step."""

    def __init__(self, tokenizer: Any, separator: str) -> None:
        self.tokenizer = tokenizer
        self.separator_ids = tuple(encode_piece(tokenizer, separator))

    def question_segment(self, question: str) -> Segment:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return (*([bos] if bos is not None else []), *encode_piece(self.tokenizer, question))

    def step_segment(self, step: str, index: int) -> Segment:
        return (*encode_piece(self.tokenizer, step), *self.separator_ids)


class TokenClassificationFamily:
    """Qwen2.5-Math-PRM and TRL-style 2-label token-classification PRMs."""

    name = "token_classification"

    @staticmethod
    def detect(info: CheckpointInfo) -> bool:
        archs = info.architectures
        if QWEN_ARCH in archs or info.prm_config.get("family") == TokenClassificationFamily.name:
            return True
        return any(a.endswith("ForTokenClassification") for a in archs) and _num_labels(info.config) == 2

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
        """Load a Qwen2.5-Math-PRM-style or TRL-style token-classification PRM.

        Raises:
            ValueError: ``<extra_0>`` missing from a Qwen-style tokenizer, a separator that
                contradicts the checkpoint's, or a head without exactly 2 labels.
        """
        scorer_opts, hub, own = split_options(TokenClassificationFamily.name, options, ("system_prompt",))
        info = info or read_checkpoint(path, hub)
        tokenizer = require_tokenizer(info, TokenClassificationFamily.name)
        if _num_labels(info.config) != 2 and QWEN_ARCH not in info.architectures:
            raise ValueError(
                f"{path!r} has {_num_labels(info.config)} labels; the token_classification family "
                "reads 2-label heads (label 1 = correct step)."
            )
        dev = resolve_device(device)
        segmenter, separator = segmenter_for(info, tokenizer, step_separator, own.get("system_prompt"))
        torch_dtype = resolve_dtype(dtype, dev)
        model = _load_two_layer(info, torch_dtype) if QWEN_ARCH in info.architectures else _load_trl(info, torch_dtype)
        place(model, dev)
        score = cast(nn.Module, getattr(model, "score", None) or model.classifier)

        def head(hidden: torch.Tensor) -> torch.Tensor:
            logits = score(hidden.to(next(score.parameters()).dtype)).float()
            return torch.softmax(logits, dim=-1)[:, 1]

        return StepScorer(
            model.base_model,
            head,
            segmenter,
            step_separator=separator,
            max_length=max_positions(model.config),
            name=f"token_classification PRM {path}",
            **scorer_opts,
        )


def segmenter_for(info: CheckpointInfo, tokenizer: Any, override: str | None,
               system: str | None) -> tuple[Any, str]:
    """The layout the checkpoint declares (prm_config ``layout``) or implies (architecture)."""
    layout_name = info.prm_config.get("layout", info.config.get("prm_layout"))
    if layout_name not in (None, PROJECT_LAYOUT):
        raise ValueError(
            f"{info.path!r} names the layout {layout_name!r}, which this family does not know. Known: "
            f"{PROJECT_LAYOUT!r}, or none (Qwen2.5-Math-PRM / TRL layouts, chosen by architecture)."
        )
    if layout_name is None and QWEN_ARCH in info.architectures:
        return _qwen_segmenter(info, tokenizer, override, system), QWEN_STEP_TOKEN
    if layout_name == PROJECT_LAYOUT:
        separator = _recorded_separator(info, override)
        segmenter: Any = ValueHeadSegmenter(tokenizer, separator)
    else:
        separator = _trl_separator(info, override)
        segmenter = TRLSegmenter(tokenizer, separator)
    if not encode_piece(tokenizer, separator):
        raise ValueError(f"The step separator {separator!r} encodes to no tokens with this tokenizer.")
    return segmenter, separator


def _qwen_segmenter(info: CheckpointInfo, tokenizer: Any, override: str | None,
                    system: str | None) -> QwenPRMSegmenter:
    if override is not None and override != QWEN_STEP_TOKEN:
        raise ValueError(
            f"step_separator={override!r} does not match this Qwen2.5-Math-PRM-style checkpoint, which "
            f"scores each step at {QWEN_STEP_TOKEN!r}. Drop the override."
        )
    ids = encode_piece(tokenizer, QWEN_STEP_TOKEN)
    if len(ids) != 1:
        raise ValueError(
            f"{info.path!r} looks like Qwen2.5-Math-PRM ({QWEN_ARCH}) but its tokenizer has no single "
            f"{QWEN_STEP_TOKEN!r} token (it encodes to {len(ids)} tokens: {ids}). Load the PRM with its "
            "own tokenizer (the one saved in the checkpoint)."
        )
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{info.path!r}: the Qwen2.5-Math-PRM layout needs the tokenizer's chat template.")
    return QwenPRMSegmenter(tokenizer, ids[0], system or QWEN_SYSTEM)


def _recorded_separator(info: CheckpointInfo, override: str | None) -> Any:
    """The checkpoint's separator (None if unrecorded); an override must agree with it."""
    saved = info.setting("step_separator")
    if saved is not None and override is not None and saved != override:
        raise ValueError(
            f"step_separator={override!r} does not match the separator recorded in {info.path!r} "
            f"({saved!r}). Drop the override, or fix prm_config.json if the record is wrong."
        )
    separator = override if override is not None else saved
    if separator is None and info.prm_config.get("layout") == PROJECT_LAYOUT:
        raise ValueError(f"{info.path!r} uses the {PROJECT_LAYOUT} layout but records no step_separator.")
    return separator


def _trl_separator(info: CheckpointInfo, override: str | None) -> str:
    separator = _recorded_separator(info, override)
    if separator is None:
        warnings.warn(
            f"{info.path!r} records no step separator (prm_config.json or config 'step_separator'); "
            f"assuming TRL's old default {TRL_DEFAULT_SEPARATOR!r}. Pass step_separator=... if it was "
            "trained with another one.",
            stacklevel=3,
        )
        separator = TRL_DEFAULT_SEPARATOR
    if not isinstance(separator, str) or not separator:
        raise ValueError(f"The step separator must be a non-empty string, got {separator!r}.")
    return separator


def _config(info: CheckpointInfo) -> PretrainedConfig:
    raw = {k: v for k, v in info.config.items() if k not in ("auto_map", "architectures")}
    model_type = raw.pop("model_type", None)
    if model_type is None:
        raise ValueError(f"{info.path!r}: config.json has no model_type.")
    # Built from the dict, not AutoConfig.from_pretrained: an auto_map must not pull remote code.
    return AutoConfig.for_model(model_type, **raw)


def _load_two_layer(info: CheckpointInfo, dtype: torch.dtype) -> PreTrainedModel:
    config = _config(info)
    config.num_labels = 2
    return TwoLayerTokenClassifier.from_pretrained(info.path, config=config, dtype=dtype, **info.hub_kwargs)


def _load_trl(info: CheckpointInfo, dtype: torch.dtype) -> PreTrainedModel:
    if "score.0.weight" in info.weight_names():
        return _load_two_layer(info, dtype)
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(info.path, dtype=dtype, **info.hub_kwargs)


def _num_labels(config: dict[str, Any]) -> int:
    if "id2label" in config and config["id2label"]:
        return len(config["id2label"])
    return int(config.get("num_labels", 2))
