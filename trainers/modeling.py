"""Building the model the trainer trains: a value-head PRM from a path, a Hub id or a
model object, optionally wrapped in a PEFT (LoRA) adapter whose saved modules include
the head."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from transformers import AutoConfig, PreTrainedModel

from prm_plugin.prm.value_head_model import ValueHeadPRM, ValueHeadPRMConfig
from prm_plugin.trainers.config import PRMConfig, PRMConfigError

logger = logging.getLogger(__name__)

HEAD_MODULE = "head"


def load_value_head_model(model: str | PreTrainedModel, args: PRMConfig) -> ValueHeadPRM:
    """A ``ValueHeadPRM`` to train.

    ``model`` may be a ``ValueHeadPRM`` checkpoint (path/Hub id or object: training
    continues from it), or any causal-LM / base-model checkpoint (path/Hub id or object:
    a fresh value head is put on its backbone).
    """
    kwargs: dict[str, Any] = dict(args.model_init_kwargs or {})  # type: ignore[arg-type]
    if isinstance(model, str):
        config = AutoConfig.from_pretrained(model, **_config_kwargs(kwargs))
        if isinstance(config, ValueHeadPRMConfig):
            model = ValueHeadPRM.from_pretrained(model, **kwargs)
        else:
            return ValueHeadPRM.from_backbone(
                model,
                step_separator=args.step_separator,
                head_hidden_size=args.head_hidden_size,
                head_activation=args.head_activation,
                **kwargs,
            )
    elif kwargs:
        logger.warning("model_init_kwargs is ignored because `model` is already a model object.")
    if isinstance(model, ValueHeadPRM):
        _check_separator(model.config.step_separator, args.step_separator)
        return model
    if isinstance(model, PreTrainedModel):
        return ValueHeadPRM.from_backbone(
            model,
            step_separator=args.step_separator,
            head_hidden_size=args.head_hidden_size,
            head_activation=args.head_activation,
        )
    raise PRMConfigError(
        f"`model` must be a path, a Hub id or a transformers PreTrainedModel, got {type(model).__name__}."
    )


def hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The Hub-location arguments of ``model_init_kwargs`` (also used for the tokenizer)."""
    return _config_kwargs(kwargs)


def _config_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in ("revision", "trust_remote_code", "token", "cache_dir") if k in kwargs}


def _check_separator(checkpoint_sep: str, args_sep: str) -> None:
    if checkpoint_sep != args_sep:
        raise PRMConfigError(
            f"The checkpoint was trained with step_separator={checkpoint_sep!r} but the training "
            f"arguments say {args_sep!r}. Set step_separator={checkpoint_sep!r} to continue training "
            "it (labels must sit on the separator the model was trained with), or start from its "
            "backbone to train a new head."
        )


def load_tokenizer(
    model: str | PreTrainedModel, processing_class: Any | None, hub_kwargs: dict[str, Any] | None = None
) -> Any:
    """The tokenizer to use, with a pad token (EOS when the tokenizer has none).

    Loaded as the checkpoint saved it (``prm_plugin.prm.checkpoint.load_tokenizer``), the
    way the PRM families load it for scoring, so training and scoring tokenise alike.
    """
    from prm_plugin._hf_compat import load_tokenizer as load_saved_tokenizer

    tok = processing_class
    if tok is None:
        source = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "")
        if not source:
            raise PRMConfigError(
                "No tokenizer: pass `processing_class=` (the tokenizer) when `model` is a model object "
                "that was not loaded from a path."
            )
        tok = load_saved_tokenizer(source, hub_kwargs)
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise PRMConfigError(
                "The tokenizer has neither a pad nor an EOS token; set `tokenizer.pad_token` first."
            )
        tok.pad_token = tok.eos_token
    return tok


def apply_peft(model: ValueHeadPRM, peft_config: Any) -> Any:
    """Wrap ``model`` in a PEFT adapter. The value head is always trained in full and
    saved with the adapter (``modules_to_save`` gets ``"head"``); LoRA targets default to
    PEFT's choice for the backbone architecture (e.g. ``q_proj``, ``v_proj`` for Qwen2)."""
    try:
        from peft import PeftConfig, get_peft_model
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS
    except ImportError as exc:  # pragma: no cover - peft is in the `train` extra
        raise PRMConfigError("peft_config needs the `peft` package: pip install 'prm-plugin[train]'.") from exc
    if not isinstance(peft_config, PeftConfig):
        raise PRMConfigError(
            f"peft_config must be a peft.PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}."
        )
    if getattr(peft_config, "task_type", None) is not None:
        # Task-specific PEFT wrappers assume an LM or classifier head; ours is the value head.
        logger.info("Ignoring peft task_type=%s: the value-head PRM uses a plain PeftModel.",
                    peft_config.task_type)
        peft_config.task_type = None
    saved = list(getattr(peft_config, "modules_to_save", None) or [])
    if HEAD_MODULE not in saved:
        peft_config.modules_to_save = [*saved, HEAD_MODULE]  # type: ignore[attr-defined]
    if getattr(peft_config, "target_modules", None) is None and hasattr(peft_config, "target_modules"):
        backbone_type = model.config.backbone_config.model_type
        if backbone_type not in TARGETS:
            raise PRMConfigError(
                f"PEFT has no default LoRA target modules for backbone type {backbone_type!r}; set "
                "lora_target_modules (e.g. ['q_proj', 'v_proj'])."
            )
        peft_config.target_modules = list(TARGETS[backbone_type])
    return get_peft_model(model, peft_config)


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (steady logits for a regression-like target)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
