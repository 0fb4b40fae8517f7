"""Stepwise rows to token ids and per-token labels; checking rows; padding batches.

The row format is TRL's stepwise supervision: ``prompt`` (the question, a string),
``completions`` (the list of steps) and ``labels`` (one bool or float in [0, 1] per
step). Token positions follow ``prm_plugin.prm.layout``, the layout the ``value_head``
scorer uses, so a checkpoint is scored exactly the way it was trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prm_plugin.prm.layout import encode_piece, question_ids, step_ids

IGNORE = -100
_IGNORE_F = float(IGNORE)  # labels are floats throughout, so dataset columns get one type


class StepwiseDataError(ValueError):
    """A stepwise row is malformed; the message names the row and the reason."""


def check_row(row: Mapping[str, Any], index: int, separator: str, label_type: str = "auto") -> None:
    """Raise ``StepwiseDataError`` naming row ``index`` if it cannot be trained on.

    Checks: string prompt, a non-empty list of string steps, one label per step, labels
    bool or numbers in [0, 1] (0/1 only when ``label_type="hard"``), no step containing
    the separator (it would create a step boundary without a label).
    """
    def fail(reason: str) -> StepwiseDataError:
        return StepwiseDataError(f"Row {index}: {reason}")

    prompt, steps, labels = row.get("prompt"), row.get("completions"), row.get("labels")
    if not isinstance(prompt, str):
        raise fail(f"'prompt' must be a string (the question), got {type(prompt).__name__}. "
                   "Apply any chat template yourself and pass the raw question text.")
    if not isinstance(steps, (list, tuple)) or not steps:
        raise fail("'completions' is empty or missing; every row needs at least one step. "
                   "Remove the row or add its steps.")
    if not isinstance(labels, (list, tuple)) or len(labels) != len(steps):
        got = len(labels) if isinstance(labels, (list, tuple)) else type(labels).__name__
        raise fail(f"{len(steps)} completions but {got} labels; give exactly one label per step.")
    for j, (step, label) in enumerate(zip(steps, labels, strict=True)):
        if not isinstance(step, str):
            raise fail(f"step {j} is {type(step).__name__}, not a string.")
        if separator in step:
            raise fail(f"step {j} contains the step separator {separator!r}, which would add an "
                       "unlabelled step boundary. Split it into separate steps or replace the "
                       "separator inside it (the data loaders do this with `clean_step`).")
        _check_label(label, label_type, lambda reason, j=j: fail(f"label {j} {reason}"))


def _check_label(label: Any, label_type: str, fail: Any) -> None:
    if isinstance(label, bool):
        return
    if not isinstance(label, (int, float)) or isinstance(label, complex) or math.isnan(label):
        raise fail(f"is {label!r}; labels must be bool or a number in [0, 1].")
    if not 0.0 <= float(label) <= 1.0:
        raise fail(f"is {label!r}, outside [0, 1].")
    if label_type == "hard" and float(label) not in (0.0, 1.0):
        raise fail(f"is {label!r} but label_type='hard' needs 0/1 or bool; use label_type='soft' "
                   "(or 'auto') for Monte-Carlo fractions.")


def detect_label_type(label_lists: Sequence[Sequence[Any]]) -> str:
    """``"hard"`` if every label is a bool or exactly 0/1, else ``"soft"``.

    >>> detect_label_type([[True, False], [1, 0.0]]), detect_label_type([[1.0, 0.25]])
    ('hard', 'soft')
    """
    for labels in label_lists:
        for x in labels:
            if not isinstance(x, bool) and float(x) not in (0.0, 1.0):
                return "soft"
    return "hard"


def tokenize_row(
    row: Mapping[str, Any],
    tokenizer: Any,
    *,
    step_separator: str,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    max_completion_length: int | None = None,
    train_on_last_step_only: bool = False,
) -> dict[str, list[Any]]:
    r"""Token ids of one stepwise row and a float label on each step's last separator token.

    Layout (``prm_plugin.prm.layout``)::

        [bos?] question sep | step_1 sep | step_2 sep | ...

    All other positions get ``-100`` (ignored by the loss). Truncation never cuts inside a
    step: a question longer than ``max_prompt_length`` keeps its last tokens (plus any BOS
    and the separator); then steps are kept whole, in order, while they fit both
    ``max_completion_length`` and ``max_length``; the first step that does not fit is
    dropped with every step after it, labels included. ``n_steps`` reports the steps kept.

    Example, with a tokenizer mapping each character to one id::

        >>> class CharTok:
        ...     bos_token_id = None
        ...     def __call__(self, text, add_special_tokens=False):
        ...         return {"input_ids": [ord(c) for c in text]}
        >>> row = {"prompt": "Q", "completions": ["ab", "c"], "labels": [True, 0.25]}
        >>> out = tokenize_row(row, CharTok(), step_separator="||")
        >>> "".join(map(chr, out["input_ids"]))
        'Q||ab||c||'
        >>> [int(x) if x == -100 else x for x in out["labels"]]
        [-100, -100, -100, -100, -100, -100, 1.0, -100, -100, 0.25]
        >>> out = tokenize_row(row, CharTok(), step_separator="||", max_length=8)
        >>> "".join(map(chr, out["input_ids"])), out["labels"][-1], out["n_steps"]
        ('Q||ab||', 1.0, [1])
    """
    prefix = question_ids(tokenizer, row["prompt"], step_separator)
    if max_prompt_length is not None and len(prefix) > max_prompt_length:
        prefix = _truncate_question(prefix, tokenizer, step_separator, max_prompt_length)
    ids, labels = list(prefix), [_IGNORE_F] * len(prefix)
    budget = math.inf if max_completion_length is None else max_completion_length
    if max_length is not None:
        budget = min(budget, max_length - len(ids))
    kept: list[float] = []
    for step, label in zip(row["completions"], row["labels"], strict=True):
        piece = step_ids(tokenizer, step, step_separator)
        if len(piece) > budget:
            break
        budget -= len(piece)
        ids += piece
        labels += [_IGNORE_F] * (len(piece) - 1) + [float(label)]
        kept.append(float(label))
    if train_on_last_step_only and kept:
        last = max(i for i, x in enumerate(labels) if x != IGNORE)
        labels = [_IGNORE_F] * last + [labels[last]] + [_IGNORE_F] * (len(labels) - last - 1)
    return {"input_ids": ids, "labels": labels, "n_steps": [len(kept)]}


def _truncate_question(prefix: list[int], tokenizer: Any, separator: str, limit: int) -> list[int]:
    sep = encode_piece(tokenizer, separator)
    bos = prefix[:1] if prefix and prefix[0] == getattr(tokenizer, "bos_token_id", None) else []
    room = limit - len(sep) - len(bos)
    if room < 1:
        raise StepwiseDataError(
            f"max_prompt_length={limit} leaves no room for the question after BOS and the "
            f"{len(sep)}-token separator; raise max_prompt_length."
        )
    body = prefix[len(bos):len(prefix) - len(sep)]
    return bos + body[-room:] + sep


@dataclass
class StepwiseCollator:
    """Pads ``input_ids`` (right, with ``pad_token_id``) and ``labels`` (with -100) and
    builds the attention mask. Labels come out as float32."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        labels = torch.full((len(features), longest), float(IGNORE), dtype=torch.float32)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            mask[i, :n] = 1
            labels[i, :n] = torch.as_tensor(f["labels"], dtype=torch.float32)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
