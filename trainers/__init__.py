"""The TRL-based trainer of value-head process reward models.

- ``PRMConfig`` / ``PRMTrainer``: training arguments and trainer (``trainers.config``,
  ``trainers.trainer``) on TRL's stepwise-supervision format.
- ``tokenize_row`` / ``check_row``: the pure row -> ids/labels function and row checks.
- ``trainers.data``: PRM800K, Math-Shepherd and weighted mixtures in the stepwise format.
- ``trainers.aslaf``: Monte-Carlo step labels with multi-annotator consensus filtering.
- ``trainers.export``: value head -> two-class token-classification head (vLLM).
- ``trainers.cli``: ``prm-plugin train`` (TRL-style YAML recipes and flags).

Names are imported lazily so ``import trainers`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PRMConfig": "trainers.config",
    "PRMConfigError": "trainers.config",
    "PRMTrainer": "trainers.trainer",
    "StepwiseCollator": "trainers.tokenize",
    "StepwiseDataError": "trainers.tokenize",
    "check_row": "trainers.tokenize",
    "tokenize_row": "trainers.tokenize",
    "step_metrics": "trainers.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")
