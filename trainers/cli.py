"""``prm-plugin train``: train a value-head PRM from a YAML recipe and/or flags.

Parsed TRL-style with ``trl.TrlParser``: ``--config recipe.yaml`` sets defaults and any
flag overrides them. The recipe mixes the fields of ``PRMDataArguments`` (below),
``PRMConfig`` (PRM fields + every ``transformers.TrainingArguments`` field),
``trl.ModelConfig`` (``model_name_or_path``, ``dtype``, LoRA: ``use_peft``, ``lora_r``,
...) and ``trl.DatasetMixtureConfig`` (``datasets:``, TRL's mixture of datasets that are
already stepwise). See ``examples/training/`` for recipes.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class PRMDataArguments:
    """Where the stepwise training and evaluation rows come from (give exactly one of
    ``sources``, ``dataset_name`` or TRL's ``datasets``)."""

    sources: list[dict[str, Any]] | None = field(
        default=None,
        metadata={"help": "Raw-format sources to mix (YAML list): each {format: prm800k|math_shepherd|stepwise, "
                  "path, weight, split, name, data_files, options}."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "One dataset already in TRL's stepwise format (local JSON/JSONL, directory or Hub id)."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Config name of `dataset_name`."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split of `dataset_name` to train on."})
    eval_sources: list[dict[str, Any]] | None = field(
        default=None, metadata={"help": "Sources of the evaluation rows (same shape as `sources`)."}
    )
    eval_split_size: float | None = field(
        default=None,
        metadata={"help": "Hold out this fraction (or, if >= 1, this many rows) of the training rows for evaluation."},
    )
    mixture_size: int | None = field(
        default=None,
        metadata={"help": "Rows in the training mixture (default: the largest that repeats no source)."},
    )
    mixture_seed: int = field(default=0, metadata={"help": "Seed of the mixture's sampling and shuffling."})
    oversample: bool = field(
        default=False, metadata={"help": "Let a source too small for its weight repeat its rows."}
    )


def _specs(items: list[Any]) -> list[Any]:
    """Source specs from YAML mappings or, on a command line, JSON object strings."""
    from prm_plugin.trainers.data import SourceSpec

    specs = []
    for item in items:
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except json.JSONDecodeError as exc:
                raise ValueError(f"A source given on the command line must be a JSON object, e.g. "
                                 f"'{{\"format\": \"prm800k\", \"path\": \"train.jsonl\"}}'; got {item!r}.") from exc
        if not isinstance(item, dict):
            raise ValueError(f"Each source must be a mapping with 'format' and 'path'; got {item!r}.")
        specs.append(SourceSpec.from_dict(item))
    return specs


def build_datasets(data: PRMDataArguments, mixture: Any, step_separator: str) -> tuple[Any, Any]:
    """The training and (optional) evaluation datasets described by the arguments."""
    from prm_plugin.trainers.data import load_mixture, load_stepwise

    given = [n for n, v in (("sources", data.sources), ("dataset_name", data.dataset_name),
                            ("datasets", getattr(mixture, "datasets", None))) if v]
    if len(given) != 1:
        raise ValueError(
            f"Give exactly one source of training data: `sources` (raw PRM800K / Math-Shepherd / stepwise, "
            f"weighted), `dataset_name` (one stepwise dataset) or `datasets` (TRL mixture); got {given or 'none'}."
        )
    evaluation = None
    if data.sources:
        train = load_mixture(_specs(data.sources), size=data.mixture_size,
                             seed=data.mixture_seed, oversample=data.oversample, step_separator=step_separator)
    elif data.dataset_name:
        train = load_stepwise(data.dataset_name, split=data.dataset_train_split, name=data.dataset_config,
                              step_separator=step_separator)
    else:
        from trl import get_dataset

        loaded = get_dataset(mixture)
        train, evaluation = loaded["train"], loaded.get("test")
    if data.eval_sources:
        evaluation = load_mixture(_specs(data.eval_sources),
                                  seed=data.mixture_seed, step_separator=step_separator)
    elif data.eval_split_size:
        size = data.eval_split_size
        split = train.train_test_split(test_size=int(size) if size >= 1 else size, seed=data.mixture_seed)
        train, evaluation = split["train"], split["test"]
    return train, evaluation


def _parse(argv: Sequence[str]) -> tuple[Any, Any, Any, Any]:
    from trl import DatasetMixtureConfig, ModelConfig, TrlParser

    from prm_plugin.trainers.config import PRMConfig

    types: list[Any] = [PRMDataArguments, PRMConfig, ModelConfig, DatasetMixtureConfig]
    parser = TrlParser(types, prog="prm-plugin train")
    return tuple(parser.parse_args_and_config(list(argv)))  # type: ignore[return-value]


def _model_init_kwargs(model_args: Any, cfg: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"revision": model_args.model_revision}
    if model_args.dtype not in (None, "auto"):
        kwargs["dtype"] = model_args.dtype
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    kwargs.update(cfg.model_init_kwargs or {})
    return kwargs


def _setup_logging(level: int) -> None:
    pkg = logging.getLogger("trainers")
    pkg.setLevel(level)
    if not pkg.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(levelname)s] %(name)s: %(message)s"))
        pkg.addHandler(handler)


def main(argv: Sequence[str]) -> int:
    """Train from a recipe/flags; evaluates on the eval split and saves the final PRM
    (weights, config with separator, tokenizer) to ``output_dir``."""
    from trl import get_peft_config

    from prm_plugin.trainers.trainer import PRMTrainer

    try:
        data_args, cfg, model_args, mixture = _parse(argv)
        _setup_logging(logging.INFO if cfg.should_log else logging.WARNING)
        if not model_args.model_name_or_path:
            raise ValueError("No model: set `model_name_or_path` (a causal-LM or value-head PRM path or Hub id).")
        train, evaluation = build_datasets(data_args, mixture, cfg.step_separator)
        cfg.model_init_kwargs = _model_init_kwargs(model_args, cfg)
        trainer = PRMTrainer(model=model_args.model_name_or_path, args=cfg, train_dataset=train,
                             eval_dataset=evaluation, peft_config=get_peft_config(model_args))
    except ValueError as exc:
        print(f"prm-plugin train: error: {exc}", file=sys.stderr)
        return 2
    trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    if evaluation is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    out = trainer.save_prm(cfg.output_dir)
    print(f"Saved the PRM to {out}; score with prm_plugin.prm.load_prm({str(out)!r}).")
    return 0
