"""``PRMConfig``: training arguments for the value-head PRM trainer.

Like TRL's trainer configs (``RewardConfig``, ``SFTConfig``) it subclasses
``transformers.TrainingArguments`` and adds only PRM fields, each with a help text, so
it works as a command line through ``trl.TrlParser`` / ``HfArgumentParser``.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from transformers.activations import ACT2FN

LABEL_TYPES = ("auto", "hard", "soft")


class PRMConfigError(ValueError):
    """A training argument is invalid; the message says which and how to fix it."""


def unescape_separator(text: str) -> str:
    r"""Turn a separator typed on a command line (``\n\n``) into the real string.

    >>> unescape_separator("\\n\\n") == "\n\n", unescape_separator("\n") == "\n"
    (True, True)
    """
    if "\\" not in text:
        return text
    return codecs.decode(text, "unicode_escape")


@dataclass
class PRMConfig(TrainingArguments):
    r"""Configuration of ``PRMTrainer``.

    Only the PRM-specific fields are listed; every ``TrainingArguments`` field works too.
    Defaults that differ from ``TrainingArguments``: ``learning_rate=1e-5``,
    ``logging_steps=10``, ``remove_unused_columns=False`` (the trainer builds its own
    columns).

    Args:
        model_init_kwargs: keyword arguments for ``from_pretrained`` when the trainer's
            ``model`` is a path or Hub id (e.g. ``{"dtype": "bfloat16"}``).
        step_separator: the string that ends every step; the label of a step sits on the
            last token of the separator that closes it (``prm_plugin.prm.layout``).
            ``"\n\n"`` typed on a command line is unescaped.
        max_length: cap on the tokens of one row (question + steps). Steps that do not fit
            are dropped whole, with their labels; ``None`` means no cap.
        max_prompt_length: cap on the question segment; longer questions keep their last
            tokens (the question's ask) and the separator. ``None`` means no cap.
        max_completion_length: cap on the tokens of the steps; whole steps only.
        train_on_last_step_only: keep only the label of the last (kept) step of each row
            (outcome-style supervision).
        label_type: ``"hard"`` (labels must be bool or 0/1), ``"soft"`` (any value in
            [0, 1], e.g. Monte-Carlo fractions) or ``"auto"`` (detected from the data).
            The loss is binary cross-entropy either way.
        dataset_num_proc: processes for tokenising the datasets.
        pad_to_multiple_of: pad batches to a multiple of this length.
        head_hidden_size: width of the value head's hidden layer (default: the
            backbone's hidden size). Only used when a fresh head is created.
        head_activation: activation between the head's two linear layers. ``"relu"``
            (the default) makes the checkpoint exportable exactly to vLLM's
            ``Qwen2ForProcessRewardModel`` head (``prm-plugin export-prm``).
        disable_dropout: set every dropout probability of the model to 0.
        metric_threshold: a step is predicted correct when sigmoid(logit) > threshold;
            a label counts as correct when it is >= 0.5.
    """

    # JSON strings given for these fields on a command line are parsed into dicts.
    _VALID_DICT_FIELDS = [*TrainingArguments._VALID_DICT_FIELDS, "model_init_kwargs"]

    learning_rate: float = field(default=1e-5, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(
        default=10,
        metadata={"help": "Log every X update steps (an integer, or a float in [0, 1) as a ratio of all steps)."},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the trainer replaces the dataset columns with its own."},
    )
    model_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments for `from_pretrained` when `model` is a path or Hub id, e.g. "
                  "'{\"dtype\": \"bfloat16\"}'."},
    )
    step_separator: str = field(
        default="\n\n",
        metadata={"help": "String that ends every step; the step's label sits on its last token. "
                  "Escapes such as '\\n\\n' are decoded."},
    )
    max_length: int | None = field(
        default=1024,
        metadata={"help": "Maximum tokens per row; steps that do not fit are dropped whole. None: no cap."},
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "Maximum tokens of the question segment (its last tokens are kept). None: no cap."},
    )
    max_completion_length: int | None = field(
        default=None,
        metadata={"help": "Maximum tokens of the steps (whole steps only). None: no cap."},
    )
    train_on_last_step_only: bool = field(
        default=False,
        metadata={"help": "Train only on the label of the last kept step of each row."},
    )
    label_type: str = field(
        default="auto",
        metadata={"help": "'hard' (0/1), 'soft' (values in [0, 1]) or 'auto' (detected from the data).",
                  "choices": list(LABEL_TYPES)},
    )
    dataset_num_proc: int | None = field(
        default=None, metadata={"help": "Number of processes used to tokenise the datasets."}
    )
    pad_to_multiple_of: int | None = field(
        default=None, metadata={"help": "Pad every batch to a multiple of this many tokens."}
    )
    head_hidden_size: int | None = field(
        default=None,
        metadata={"help": "Hidden width of a freshly created value head (default: backbone hidden size)."},
    )
    head_activation: str = field(
        default="relu",
        metadata={"help": "Activation between the value head's two linear layers ('relu' exports exactly "
                  "to vLLM's Qwen2ForProcessRewardModel)."},
    )
    disable_dropout: bool = field(
        default=True, metadata={"help": "Set all dropout probabilities of the model to 0."}
    )
    metric_threshold: float = field(
        default=0.5,
        metadata={"help": "A step is predicted correct when sigmoid(logit) > this threshold (eval metrics)."},
    )

    def __post_init__(self) -> None:
        self.step_separator = unescape_separator(self.step_separator)
        check_prm_fields(self)
        super().__post_init__()


def check_prm_fields(cfg: PRMConfig) -> None:
    """Early checks with fix-it messages (called by ``PRMConfig.__post_init__``)."""
    if not cfg.step_separator:
        raise PRMConfigError("step_separator is empty; set it to the string that ends each step, e.g. '\\n\\n'.")
    for name in ("max_length", "max_prompt_length", "max_completion_length", "pad_to_multiple_of",
                 "head_hidden_size", "dataset_num_proc"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise PRMConfigError(f"{name} must be a positive integer or None, got {value}.")
    if (cfg.max_length is not None and cfg.max_prompt_length is not None
            and cfg.max_prompt_length >= cfg.max_length):
        raise PRMConfigError(
            f"max_prompt_length ({cfg.max_prompt_length}) must be smaller than max_length "
            f"({cfg.max_length}) to leave room for at least one step; lower max_prompt_length or "
            "raise max_length."
        )
    if cfg.label_type not in LABEL_TYPES:
        raise PRMConfigError(f"label_type must be one of {', '.join(LABEL_TYPES)}, got {cfg.label_type!r}.")
    if cfg.head_activation not in ACT2FN:
        raise PRMConfigError(
            f"head_activation={cfg.head_activation!r} is not a transformers activation; use e.g. "
            "'relu' (exportable to vLLM), 'gelu' or 'silu'."
        )
    if not 0.0 < cfg.metric_threshold < 1.0:
        raise PRMConfigError(f"metric_threshold must be in (0, 1), got {cfg.metric_threshold}.")
