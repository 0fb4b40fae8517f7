"""The TRL-based trainer of value-head process reward models.

- ``PRMConfig`` / ``PRMTrainer``: training arguments and trainer (``trainers.config``,
  ``trainers.trainer``) on TRL's stepwise-supervision format.
- ``tokenize_row`` / ``check_row``: the pure row -> ids/labels function and row checks.
- ``trainers.data``: PRM800K, Math-Shepherd and weighted mixtures in the stepwise format.
- ``trainers.aslaf``: Monte-Carlo step labels with multi-annotator consensus filtering.
- ``trainers.export``: value head -> two-class token-classification head (vLLM).
- ``trainers.cli``: ``prm-plugin train`` (TRL-style YAML recipes and flags).

Names are imported lazily so ``import prm_plugin.trainers`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PRMConfig": "prm_plugin.trainers.config",
    "PRMConfigError": "prm_plugin.trainers.config",
    "PRMTrainer": "prm_plugin.trainers.trainer",
    "StepwiseCollator": "prm_plugin.trainers.tokenize",
    "StepwiseDataError": "prm_plugin.trainers.tokenize",
    "check_row": "prm_plugin.trainers.tokenize",
    "tokenize_row": "prm_plugin.trainers.tokenize",
    "step_metrics": "prm_plugin.trainers.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")
