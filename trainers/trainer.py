"""``PRMTrainer``: trains a value-head PRM on TRL stepwise-supervision data.

Binary cross-entropy on the head's logit at each step's last separator token (hard 0/1
or soft Monte-Carlo labels), built on ``transformers.Trainer`` in the shape of TRL's
trainers: a default ``PRMConfig`` when none is given, the model given as a path, a Hub
id or an object, PEFT/LoRA and gradient checkpointing passed through, metrics on the
eval split (``trainers.metrics``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import enable_full_determinism, set_seed

from prm_plugin.trainers.config import PRMConfig, PRMConfigError
from prm_plugin.trainers.metrics import make_compute_metrics
from prm_plugin.trainers.modeling import (
    apply_peft,
    disable_dropout,
    hub_kwargs,
    load_tokenizer,
    load_value_head_model,
)
from prm_plugin.trainers.tokenize import (
    IGNORE,
    StepwiseCollator,
    StepwiseDataError,
    check_row,
    detect_label_type,
    tokenize_row,
)

logger = logging.getLogger(__name__)

STEPWISE_COLUMNS = ("prompt", "completions", "labels")


def _tokenised_features() -> Any:
    # Explicit types: otherwise `labels` would keep the input's type (bool) and lose -100.
    import datasets

    seq = getattr(datasets, "List", None) or datasets.Sequence
    return datasets.Features({
        "input_ids": seq(datasets.Value("int32")),
        "labels": seq(datasets.Value("float32")),
        "n_steps": seq(datasets.Value("int64")),
    })


class PRMTrainer(Trainer):
    """Trainer for value-head process reward models.

    Args:
        model: a ``ValueHeadPRM`` (checkpoint path, Hub id or object: training continues),
            or any causal-LM / base checkpoint or model (a fresh two-layer head is added).
        args: a ``PRMConfig``; ``None`` builds the default one (output in
            ``<model name>-PRM``).
        train_dataset / eval_dataset: stepwise datasets (``prompt``, ``completions``,
            ``labels``) as ``datasets.Dataset`` or lists of dicts; checked row by row
            (errors name the row) and tokenised with ``trainers.tokenize.tokenize_row``.
        processing_class: the tokenizer (default: loaded from ``model``'s path).
        peft_config: a ``peft.PeftConfig`` (e.g. ``LoraConfig``); the head is saved with
            the adapter. ``save_prm`` merges it so the output loads as a plain checkpoint.
        compute_metrics: defaults to step accuracy / F1 / first-error F1.
        **kwargs: passed to ``transformers.Trainer`` (callbacks, optimizers, ...).

    Example::

        trainer = PRMTrainer(model="Qwen/Qwen2.5-Math-1.5B", train_dataset=rows)
        trainer.train()
        trainer.save_prm("my-prm")   # loads with prm_plugin.prm.load_prm("my-prm")
    """

    _tag_names = ["trl", "prm", "prm-plugin"]

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: PRMConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        peft_config: Any = None,
        compute_metrics: Callable[[Any], dict[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = PRMConfig(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-PRM")
        elif not isinstance(args, PRMConfig):
            raise PRMConfigError(
                f"args must be a PRMConfig, got {type(args).__name__}; build one with "
                "PRMConfig(output_dir=..., **training_arguments)."
            )
        init_kwargs = args.model_init_kwargs if isinstance(args.model_init_kwargs, dict) else {}
        tokenizer = load_tokenizer(model, processing_class, hub_kwargs(init_kwargs))
        # A fresh value head is drawn from the global RNG: seed it here, as Trainer seeds before
        # model_init, so the same args.seed gives the same head whatever ran before.
        enable_full_determinism(args.seed) if args.full_determinism else set_seed(args.seed)
        prm = load_value_head_model(model, args)
        if args.disable_dropout:
            disable_dropout(prm)
        self.label_type = args.label_type
        train_dataset = self._prepare(train_dataset, tokenizer, args, "train")
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self._prepare(v, tokenizer, args, f"eval/{k}") for k, v in eval_dataset.items()}
        else:
            eval_dataset = self._prepare(eval_dataset, tokenizer, args, "eval")
        prm.config.training_label_type = self.label_type  # recorded in the checkpoint's config
        wrapped = apply_peft(prm, peft_config) if peft_config is not None else prm
        if peft_config is not None and args.gradient_checkpointing:
            # PEFT freezes the embeddings; checkpointed blocks then need grad-requiring inputs.
            wrapped.enable_input_require_grads()
        super().__init__(
            model=wrapped,
            args=args,
            data_collator=StepwiseCollator(tokenizer.pad_token_id, args.pad_to_multiple_of),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            compute_metrics=compute_metrics or make_compute_metrics(args.metric_threshold),
            **kwargs,
        )

    # ---------------------------------------------------------------- data
    def _prepare(self, dataset: Any, tokenizer: Any, args: PRMConfig, name: str) -> Any:
        """Check and tokenise a stepwise dataset (already tokenised ones pass through)."""
        if dataset is None:
            return None
        import datasets

        if isinstance(dataset, list):
            dataset = datasets.Dataset.from_list(dataset)
        columns = set(dataset.column_names or [])
        if {"input_ids", "labels"} <= columns and "completions" not in columns:
            return dataset
        missing = [c for c in STEPWISE_COLUMNS if c not in columns]
        if missing:
            raise StepwiseDataError(
                f"The {name} dataset lacks column(s) {missing}; stepwise rows need 'prompt' (question), "
                "'completions' (list of steps) and 'labels' (one per step). Its columns: "
                f"{sorted(columns)}."
            )
        if isinstance(dataset, datasets.Dataset):
            self._resolve_label_type(dataset, args, name)
        sep, label_type = args.step_separator, args.label_type

        def encode(row: dict[str, Any], index: int) -> dict[str, Any]:
            check_row(row, index, sep, label_type)
            return tokenize_row(
                row, tokenizer, step_separator=sep, max_length=args.max_length,
                max_prompt_length=args.max_prompt_length,
                max_completion_length=args.max_completion_length,
                train_on_last_step_only=args.train_on_last_step_only,
            )

        map_kwargs: dict[str, Any] = {
            "with_indices": True, "remove_columns": list(columns), "features": _tokenised_features(),
        }
        if isinstance(dataset, datasets.Dataset):
            map_kwargs.update(num_proc=args.dataset_num_proc, desc=f"Tokenising {name} dataset")
        dataset = dataset.map(encode, **map_kwargs)
        return self._drop_unlabelled(dataset, name)

    def _resolve_label_type(self, dataset: Any, args: PRMConfig, name: str) -> None:
        # A "hard" request meeting soft data is reported per row by check_row.
        if self.label_type == "auto":
            self.label_type = detect_label_type(dataset["labels"])
            logger.info("label_type: %s labels detected in the %s dataset.", self.label_type, name)

    @staticmethod
    def _drop_unlabelled(dataset: Any, name: str) -> Any:
        import datasets

        if not isinstance(dataset, datasets.Dataset):
            return dataset.filter(lambda r: r["n_steps"][0] > 0).remove_columns("n_steps")
        kept = [i for i, n in enumerate(dataset["n_steps"]) if n[0] > 0]
        dropped = len(dataset) - len(kept)
        if dropped == len(dataset):
            raise StepwiseDataError(
                f"Every row of the {name} dataset lost all its steps to truncation; raise max_length "
                "(or max_completion_length) or lower max_prompt_length."
            )
        if dropped:
            logger.warning(
                "%d of %d %s rows dropped: not even their first step fits max_length / "
                "max_completion_length after the question.", dropped, len(dataset), name,
            )
            dataset = dataset.select(kept)
        return dataset.remove_columns("n_steps")

    # ---------------------------------------------------------------- loss
    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """BCE at labelled positions, averaged over the labelled steps of the whole
        (gradient-accumulated) batch when ``num_items_in_batch`` is given."""
        labels = inputs["labels"]
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        logits = out["logits"]
        mask = labels != IGNORE
        loss_sum = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[mask].float(), labels[mask].float(), reduction="sum"
        )
        if num_items_in_batch is None:
            denominator: Any = mask.sum().clamp(min=1)
        else:
            denominator = num_items_in_batch
            if torch.is_tensor(denominator):
                denominator = denominator.to(loss_sum.device)
        loss = loss_sum / denominator
        return (loss, {"logits": logits}) if return_outputs else loss

    # ---------------------------------------------------------------- saving
    def save_prm(self, output_dir: str | None = None) -> str:
        """Save a self-contained checkpoint (weights, config with separator, tokenizer)
        that ``prm_plugin.prm.load_prm`` loads with no other argument. A PEFT adapter is
        merged into the weights first (this ends adapter training on this trainer)."""
        output_dir = output_dir or self.args.output_dir or "."
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
            self.model = model
        if self.args.should_save:
            model.save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
        return output_dir
