"""One registered strategy at one budget on world problems: accuracy and measured cost.

The shared piece of ``benchmarks/strategies.py`` and the paper experiments: every run
starts cold (no PRM or policy prefix cache left over from the previous one) and reports
per-problem means of the strategies' own ``Cost``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

#: The strategies of the budget experiment with the settings the README's table uses.
#: ``weighted_majority`` is ``majority`` with PRM-summed votes.
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "bon": ("bon", {}),
    "beam": ("beam", {"beam_width": 4}),
    "mcts": ("mcts", {"expansion_width": 4}),
    "particle_filter": ("particle_filter", {}),
    "dvts": ("dvts", {"subtree_width": 4}),
    "majority": ("majority", {}),
    "weighted_majority": ("majority", {"weighted": True}),
}


def run_strategy(
    label: str, budget: int, problems: Sequence[Any], sproblems: Sequence[Any], policy: Any, prm: Any,
    *, temperature: float = 0.5, seed: int = 0, batch: int = 50,
) -> dict[str, Any]:
    """Run the strategy ``label`` (a key of ``SETTINGS``) with ``Budget(n=budget)``.

    Returns one row: ``strategy``, ``budget``, ``accuracy``, ``generated_tokens``,
    ``prm_tokens`` and ``seconds_per_problem`` (means over the problems).
    """
    from prm_plugin.plugins import get_strategy
    from prm_plugin.search import Budget
    from prm_plugin.strategy import requires_prm
    from prm_plugin.world import is_correct

    name, params = SETTINGS[label]
    search = get_strategy(name)(seed=seed, temperature=temperature, **params)
    if hasattr(prm, "clear_cache"):
        prm.clear_cache()
    if getattr(policy, "prefix_cache", None) is not None:
        policy.prefix_cache.clear()
    results: list[Any] = []
    start = time.perf_counter()
    for i in range(0, len(sproblems), batch):
        results += search.search(list(sproblems[i:i + batch]), policy, prm if requires_prm(search) else None,
                                 Budget(n=budget))
    seconds = time.perf_counter() - start
    k = len(problems)
    return {
        "strategy": label, "budget": budget,
        "accuracy": sum(is_correct(p, r.text) for p, r in zip(problems, results)) / k,
        "generated_tokens": sum(r.cost.policy_generated_tokens for r in results) / k,
        "prm_tokens": sum(r.cost.prm_tokens for r in results) / k,
        "seconds_per_problem": seconds / k,
    }
