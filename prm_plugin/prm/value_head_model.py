"""The value-head PRM model: any ``AutoModel`` backbone plus a two-layer scalar head.

This is the checkpoint format the project's trainer writes and the ``value_head``
family reads. It saves and loads with ``save_pretrained`` / ``from_pretrained``; its
config records the backbone's config, the head's shape, the step separator and what
the head's output means. Importing this module registers it with ``AutoConfig`` and
``AutoModel`` (model type ``prm_value_head``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from prm_plugin._hf_compat import output_cache

LABEL_SEMANTICS = "sigmoid(logit) = P(step is correct | question, steps so far)"


class ValueHeadPRMConfig(PretrainedConfig):
    """Config of a value-head PRM.

    Args:
        backbone_config: the backbone's config (a ``PretrainedConfig`` or its dict).
        head_hidden_size: width of the head's hidden layer (default: backbone hidden size).
        head_activation: activation between the head's two linear layers.
        step_separator: the string that ends every step; its last token carries the score.
        label_semantics: what the head's output means (recorded for users of the checkpoint).
    """

    model_type = "prm_value_head"
    sub_configs = {"backbone_config": AutoConfig}

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | None = None,
        head_hidden_size: int | None = None,
        head_activation: str = "gelu",
        step_separator: str = "\n\n",
        label_semantics: str = LABEL_SEMANTICS,
        **kwargs: Any,
    ) -> None:
        if isinstance(backbone_config, dict):
            backbone_config = dict(backbone_config)
            backbone_config = AutoConfig.for_model(backbone_config.pop("model_type"), **backbone_config)
        self.backbone_config = backbone_config
        hidden = getattr(backbone_config, "hidden_size", None)
        self.head_hidden_size = head_hidden_size or hidden
        self.head_activation = head_activation
        self.step_separator = step_separator
        self.label_semantics = label_semantics
        super().__init__(**kwargs)
        if backbone_config is not None and head_activation not in ACT2FN:
            raise ValueError(
                f"head_activation={head_activation!r} is not a transformers activation; "
                f"use one of: {', '.join(sorted(ACT2FN))}."
            )


@dataclass
class ValueHeadPRMOutput(ModelOutput):
    """``logits``: (batch, seq) scalar logit per token; ``loss`` when labels were given;
    ``cache``: the backbone's KV cache when ``use_cache`` was on."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Any = None


class ValueHead(nn.Module):
    """``Linear(h, h') -> activation -> Linear(h', 1)``."""

    def __init__(self, hidden_size: int, head_hidden_size: int, activation: str) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, head_hidden_size)
        self.act = ACT2FN[activation]
        self.out = nn.Linear(head_hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.dense(hidden))).squeeze(-1)


class ValueHeadPRM(PreTrainedModel):
    """Backbone + value head; ``forward`` returns one logit per token.

    Labels (float, same shape as ``input_ids``; ``-100`` = no label) give a binary
    cross-entropy loss over the labelled positions (hard 0/1 or soft MC labels).
    """

    config_class = ValueHeadPRMConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: ValueHeadPRMConfig) -> None:
        super().__init__(config)
        if config.backbone_config is None:
            raise ValueError("ValueHeadPRMConfig.backbone_config is required.")
        self.backbone = AutoModel.from_config(config.backbone_config)
        hidden = int(config.backbone_config.hidden_size)
        self.head = ValueHead(hidden, int(config.head_hidden_size or hidden), config.head_activation)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, ValueHead):
            std = getattr(self.config.backbone_config, "initializer_range", 0.02)
            for layer in (module.dense, module.out):
                nn.init.normal_(layer.weight, mean=0.0, std=std)
                nn.init.zeros_(layer.bias)
        elif hasattr(self.backbone, "_init_weights"):
            self.backbone._init_weights(module)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> ValueHeadPRMOutput:
        """Run the backbone (extra kwargs such as ``position_ids`` or the KV cache pass
        through under the backbone's own names) and the head on every position."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = out.last_hidden_state
        logits = self.head(hidden.to(self.head.dense.weight.dtype))
        loss = value_head_bce(logits, labels) if labels is not None else None
        return ValueHeadPRMOutput(loss=loss, logits=logits, cache=output_cache(out))

    @classmethod
    def from_backbone(
        cls,
        backbone: PreTrainedModel | str,
        *,
        step_separator: str,
        head_hidden_size: int | None = None,
        head_activation: str = "gelu",
        **from_pretrained_kwargs: Any,
    ) -> ValueHeadPRM:
        """A fresh head on a pretrained backbone (a model, a path or a Hub id).

        A causal-LM checkpoint works: ``AutoModel`` drops its LM head.
        """
        loaded: Any = backbone
        if isinstance(loaded, str):
            loaded = AutoModel.from_pretrained(loaded, **from_pretrained_kwargs)
        elif hasattr(loaded, "get_decoder") and type(loaded).__name__.endswith("ForCausalLM"):
            loaded = loaded.get_decoder()
        config = ValueHeadPRMConfig(
            backbone_config=loaded.config,
            head_hidden_size=head_hidden_size,
            head_activation=head_activation,
            step_separator=step_separator,
        )
        with torch.device("meta"):
            model = cls(config)
        model.backbone = loaded
        ref = next(loaded.parameters())
        hidden = int(loaded.config.hidden_size)
        model.head = ValueHead(hidden, int(config.head_hidden_size or hidden), head_activation).to(
            device=ref.device, dtype=ref.dtype
        )
        model._init_weights(model.head)
        return model


def value_head_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over labelled positions (``labels != -100``).

    >>> value_head_bce(torch.tensor([[0.0, 0.0]]), torch.tensor([[-100.0, 1.0]])).item()
    0.6931471824645996
    """
    mask = labels != -100
    if not bool(mask.any()):
        return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
    target = labels[mask].to(logits.dtype)
    return nn.functional.binary_cross_entropy_with_logits(logits[mask], target)


AutoConfig.register(ValueHeadPRMConfig.model_type, ValueHeadPRMConfig, exist_ok=True)
AutoModel.register(ValueHeadPRMConfig, ValueHeadPRM, exist_ok=True)
