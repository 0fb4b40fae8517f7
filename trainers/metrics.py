"""Evaluation metrics of a PRM on labelled steps.

- ``step_accuracy``: predicted vs true correctness of every labelled step.
- ``step_f1``: F1 with the *correct* step as the positive class; ``error_step_f1``: F1
  with the *incorrect* step as the positive class (the one a verifier must catch).
- ``first_error_f1`` (ProcessBench, Zheng et al. 2024): per row, the index of the first
  incorrect step (or -1 when every step is correct), predicted as the first step scored
  below the threshold. Accuracy is measured separately on erroneous rows (true index
  != -1) and on correct rows, and the F1 is their harmonic mean.

Soft labels count as correct when >= 0.5. Predictions: sigmoid(logit) > threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from prm_plugin.trainers.tokenize import IGNORE


def first_error(correct: Sequence[bool]) -> int:
    """Index of the first ``False``, or -1 when there is none.

    >>> first_error([True, False, False]), first_error([True, True])
    (1, -1)
    """
    for i, ok in enumerate(correct):
        if not ok:
            return i
    return -1


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan


def _harmonic(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 2 * a * b / (a + b) if a + b else 0.0


def step_metrics(
    rows: Sequence[tuple[Sequence[float], Sequence[float]]], threshold: float = 0.5
) -> dict[str, float]:
    """Metrics from per-row ``(probabilities, labels)`` of the labelled steps.

    >>> m = step_metrics([([0.9, 0.2], [1, 0]), ([0.8, 0.7], [1, 1]), ([0.1], [1])])
    >>> m["step_accuracy"], m["first_error_acc_erroneous"], m["first_error_acc_correct"]
    (0.8, 1.0, 0.5)
    >>> round(m["first_error_f1"], 4)
    0.6667
    """
    tp = fp = fn = tn = 0
    hits = {True: [0, 0], False: [0, 0]}  # erroneous? -> [right, total]
    for probs, labels in rows:
        pred = [p > threshold for p in probs]
        true = [y >= 0.5 for y in labels]
        for p, t in zip(pred, true, strict=True):
            tp += p and t
            fp += p and not t
            fn += t and not p
            tn += not p and not t
        erroneous = first_error(true) != -1
        hits[erroneous][0] += first_error(pred) == first_error(true)
        hits[erroneous][1] += 1
    total = tp + fp + fn + tn
    acc_err = hits[True][0] / hits[True][1] if hits[True][1] else math.nan
    acc_ok = hits[False][0] / hits[False][1] if hits[False][1] else math.nan
    return {
        "step_accuracy": (tp + tn) / total if total else math.nan,
        "step_f1": _f1(tp, fp, fn),
        "error_step_f1": _f1(tn, fn, fp),
        "first_error_acc_erroneous": acc_err,
        "first_error_acc_correct": acc_ok,
        "first_error_f1": _harmonic(acc_err, acc_ok),
        "n_steps": float(total),
        "n_rows": float(len(rows)),
    }


def rows_from_arrays(logits: Any, labels: Any) -> list[tuple[list[float], list[float]]]:
    """Split padded ``(batch, seq)`` logits/labels into per-row labelled steps."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    out = []
    for row_logits, row_labels in zip(logits, labels, strict=True):
        mask = row_labels != IGNORE
        if mask.any():
            probs = 1.0 / (1.0 + np.exp(-row_logits[mask]))
            out.append((probs.tolist(), row_labels[mask].tolist()))
    return out


def make_compute_metrics(threshold: float = 0.5) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for ``transformers.Trainer`` (value-head logits and labels)."""

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return step_metrics(rows_from_arrays(logits, labels), threshold)

    return compute_metrics
