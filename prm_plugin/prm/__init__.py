"""Process reward models: the contract, aggregation, and (lazily) ``load_prm``.

Importing this package does not import torch; ``load_prm`` and the families do.
"""

from __future__ import annotations

from typing import Any

from prm_plugin.prm.base import AGGREGATIONS, RewardModel, aggregate

__all__ = ["AGGREGATIONS", "RewardModel", "aggregate", "load_prm"]


def __getattr__(name: str) -> Any:
    if name == "load_prm":
        from prm_plugin.prm.load import load_prm

        return load_prm
    raise AttributeError(f"module 'prm_plugin.prm' has no attribute {name!r}")
