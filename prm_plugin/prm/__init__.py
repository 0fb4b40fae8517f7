"""Process reward models: the contract, aggregation, and (lazily) ``load_prm``.

``load_prm(path_or_hub_id)`` reads the checkpoint's config, ``prm_config.json`` and
tokenizer, asks every registered family's ``detect`` and loads the one that matches:

- ``value_head`` — this project's checkpoints (``prm_plugin.prm.value_head_model``),
  layout ``prm_plugin.prm.layout``;
- ``token_classification`` — Qwen2.5-Math-PRM (``<extra_0>`` after each step, loaded
  without remote code), TRL-style 2-label ``*ForTokenClassification`` checkpoints, and
  ``prm-plugin export-prm`` output;
- ``lm_head`` — Math-Shepherd-style causal LMs (P(``+``) vs P(``-``) at `` ки``).

All of them score through ``prm_plugin.prm.scorer.StepScorer``: batched across
questions, exact under padding, with a byte-bounded prefix KV cache so a search pays
each unique token once (``StepScores.tokens`` reports what actually ran).

Importing this package does not import torch; ``load_prm`` and the families do.
"""

from __future__ import annotations

from typing import Any

from prm_plugin.prm.base import AGGREGATIONS, RewardModel, aggregate

__all__ = ["AGGREGATIONS", "RewardModel", "aggregate", "detect_family", "load_prm"]


def __getattr__(name: str) -> Any:
    if name in ("load_prm", "detect_family"):
        from prm_plugin.prm import load

        return getattr(load, name)
    raise AttributeError(f"module 'prm_plugin.prm' has no attribute {name!r}")
