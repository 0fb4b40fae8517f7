"""prm-plugin: reward-guided test-time scaling for lm-eval, EvalPlus and TRL.

Plugins write ``@prm_plugin.hookimpl`` on ``register_strategies``,
``register_reward_models`` or ``register_answer_keys`` (see ``prm_plugin.hookspecs``).
This module stays light: it imports neither torch nor a harness.
"""

from prm_plugin.hookspecs import hookimpl
from prm_plugin.plugins import get_answer_key, get_registry, get_reward_model_family, get_strategy
from prm_plugin.search import (
    Budget,
    Candidate,
    Cost,
    PrefixProposals,
    PRMQuery,
    Problem,
    Proposal,
    SearchResult,
    StepScores,
)

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "Candidate",
    "Cost",
    "PRMQuery",
    "PrefixProposals",
    "Problem",
    "Proposal",
    "SearchResult",
    "StepScores",
    "__version__",
    "get_answer_key",
    "get_registry",
    "get_reward_model_family",
    "get_strategy",
    "hookimpl",
]
