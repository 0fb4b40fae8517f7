"""The built-in PRM families, registered like any third-party plugin (entry point
``prm_families`` in the ``prm_plugin`` group).

Importing this module stays light: the family classes import torch and transformers
only when ``load`` (or the modules holding them) run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prm_plugin.hookspecs import hookimpl


@hookimpl
def register_reward_models(register: Callable[[Any], None]) -> None:
    from prm_plugin.prm.lm_head import LMHeadFamily
    from prm_plugin.prm.token_classification import TokenClassificationFamily
    from prm_plugin.prm.value_head import ValueHeadFamily

    register(ValueHeadFamily)
    register(TokenClassificationFamily)
    register(LMHeadFamily)
