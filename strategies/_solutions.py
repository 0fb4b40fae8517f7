"""Whole-solution sampling shared by greedy, best-of-N and majority voting."""

from __future__ import annotations

from prm_plugin.search import Proposal
from prm_plugin.steps import split_steps
from prm_plugin.tree import Request, SearchRun, SearchTree


def sample_solutions(
    run: SearchRun, n: int, *, temperature: float, per_call: int | None = None
) -> list[list[Proposal]]:
    """``n`` whole solutions per problem, ``per_call`` samples per policy call (all by default).

    Every call carries all problems still running; the budget caps are checked
    before each call, so with ``per_call < n`` a cap can stop sampling early.
    """
    out: list[list[Proposal]] = [[] for _ in run.problems]
    per_call = per_call or n
    wave = 0
    while True:
        live = run.live([i for i in range(len(run.problems)) if len(out[i]) < n])
        if not live:
            return out
        # Live problems advance in lockstep, so they all still need the same number.
        k = min(per_call, n - len(out[live[0]]))
        requests = [Request(i, run.problems[i].prompt, run.problems[i].max_tokens) for i in live]
        got = run.propose(requests, n=k, step=False, temperature=temperature, round_index=wave)
        for i, group in zip(live, got, strict=True):
            out[i].extend(group)
        wave += 1


def solution_trees(
    run: SearchRun, samples: list[list[Proposal]]
) -> tuple[list[SearchTree], list[list[int]]]:
    """Split each solution into steps and file it in its problem's tree.

    Returns the trees and, per problem, the node id of each solution in sample order
    (identical solutions share a node but stay separate samples).
    """
    trees, nodes = [], []
    for i, proposals in enumerate(samples):
        tree = run.tree(i)
        tree.root.extended = True
        ids = []
        for p in proposals:
            steps = split_steps(p.text, run.problems[i].domain, tree.delimiter)
            ids.append(tree.add_path(0, steps, role="step", n_tokens=p.n_tokens, stop_reason=p.stop_reason).id)
        trees.append(tree)
        nodes.append(ids)
    return trees, nodes
