"""A third-party prm-plugin strategy: sample n solutions, keep the shortest finished one.

No PRM needed. ``SearchRun`` batches the policy calls over problems and measures the
cost; ``SearchTree`` files each solution so traces and token accounting come for free.
"""

from dataclasses import dataclass

import prm_plugin
from prm_plugin.steps import split_steps
from prm_plugin.strategy import Strategy, StrategyParams
from prm_plugin.tree import Request, SearchRun


@dataclass
class ShortestParams(StrategyParams):
    temperature: float = 0.7


class Shortest(Strategy):
    """Budget mapping: n solutions per problem; the one with fewest tokens wins."""

    name = "shortest"
    Params = ShortestParams
    needs_prm = False

    def search(self, problems, policy, prm, budget):
        run = SearchRun(problems, policy, None, budget, self.params, clock=self.clock)
        requests = [Request(i, p.prompt, p.max_tokens) for i, p in enumerate(problems)]
        groups = run.propose(requests, n=budget.n, step=False, temperature=self.params.temperature, round_index=0)
        results = []
        for i, group in enumerate(groups):
            tree = run.tree(i)
            tree.root.extended = True
            ids = [tree.add_path(0, split_steps(p.text, problems[i].domain, tree.delimiter), role="step",
                                 n_tokens=p.n_tokens, stop_reason=p.stop_reason).id for p in group]
            candidates = [tree.candidate(k, None) for k in ids]
            order = sorted(range(len(group)), key=lambda k: (group[k].stop_reason == "length", group[k].n_tokens, k))
            results.append(run.result(i, candidates, order[0], {"tokens": [p.n_tokens for p in group]},
                                      self.name, tree))
        return results


@prm_plugin.hookimpl
def register_strategies(register):
    register(Shortest)
