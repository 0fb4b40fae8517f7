"""A third-party prm-plugin strategy: sample n solutions, keep the shortest finished one.

The whole author API in one example: ``self.start`` opens a ``SearchRun`` (it batches
the policy calls over problems, applies the budget caps and measures the cost),
``run.sample`` files each problem's solutions in its search tree, ``run.finish``
turns the chosen one into a ``SearchResult`` with its ``Cost`` and trace.
"""

from dataclasses import dataclass

import prm_plugin
from prm_plugin.strategy import Strategy, StrategyParams


@dataclass
class ShortestParams(StrategyParams):
    temperature: float = 0.7


class Shortest(Strategy):
    """Budget mapping: n solutions per problem; the finished one with fewest tokens wins."""

    name = "shortest"
    Params = ShortestParams
    needs_prm = False

    def search(self, problems, policy, prm, budget):
        run = self.start(problems, policy, prm, budget)
        results = []
        for i, ends in enumerate(run.sample(budget.n)):
            nodes = [run.trees[i].nodes[k] for k in ends]
            # solutions cut by the token cap last, then fewest tokens, then the first sampled
            order = sorted(range(len(ends)), key=lambda k: (nodes[k].stop_reason == "length",
                                                            nodes[k].total_tokens, k))
            trace = {"tokens": [node.total_tokens for node in nodes]}
            results.append(run.finish(i, ends, order[0], trace, scored=False))
        return results


@prm_plugin.hookimpl
def register_strategies(register):
    register(Shortest)
