"""Tree arithmetic for MCTS: selection scores, priors, backup. Pure functions on a
``SearchTree`` so tests can check them by hand."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping

from prm_plugin.tree import Node, SearchTree


def ucb(child: Node, parent_visits: int, rule: str, c: float, virtual: Mapping[int, int] | None = None,
        virtual_loss: float = 0.0) -> float:
    """PUCT ``Q + c P sqrt(N_parent) / (1 + N)`` or UCT ``Q + c sqrt(ln N_parent / N)``.

    Pending (virtual) visits count as visits that each lost ``virtual_loss``.

    >>> n = Node(id=1, parent=0, text="a", depth=1, visits=1, value_sum=0.5, prior=0.25)
    >>> round(ucb(n, 4, "puct", 2.0), 6), round(ucb(n, 1, "uct", 2.0), 6)
    (1.0, 0.5)
    """
    pending = (virtual or {}).get(child.id, 0)
    n = child.visits + pending
    q = (child.value_sum - virtual_loss * pending) / n if n else 0.0
    if rule == "puct":
        return q + c * (child.prior or 0.0) * math.sqrt(parent_visits) / (1 + n)
    if n == 0:
        return math.inf
    return q + c * math.sqrt(math.log(max(parent_visits, 1)) / n)


def select(
    tree: SearchTree, virtual: Mapping[int, int], rule: str, c: float, virtual_loss: float,
    terminal: Callable[[int], bool],
) -> list[int]:
    """The path from the root (id 0) to a leaf: a terminal node or one without children.
    At each node the child with the highest ``ucb`` wins; ties go to the older child."""
    path, node = [0], 0
    while not terminal(node) and (kids := tree.children(node)):
        parent_visits = tree.nodes[node].visits + virtual.get(node, 0)
        node = max(kids, key=lambda ch: (ucb(ch, parent_visits, rule, c, virtual, virtual_loss), -ch.id)).id
        path.append(node)
    return path


def backup(tree: SearchTree, path: list[int], value: float) -> None:
    """Mean backup: one visit carrying ``value`` for every node on ``path``."""
    for k in path:
        tree.nodes[k].visits += 1
        tree.nodes[k].value_sum += value


def set_priors(
    tree: SearchTree, node_id: int, noise: tuple[random.Random, float, float] | None = None
) -> None:
    """Priors of ``node_id``'s children: PRM step scores normalised to sum 1 (uniform if
    all are 0), mixed with Dirichlet(alpha) noise as ``(1 - eps) P + eps eta`` when
    ``noise = (rng, alpha, eps)`` is given."""
    kids = tree.children(node_id)
    if not kids:
        return
    scores = [k.score or 0.0 for k in kids]
    total = sum(scores)
    priors = [s / total for s in scores] if total > 0 else [1 / len(kids)] * len(kids)
    if noise is not None and noise[2] > 0:
        rng, alpha, eps = noise
        draws = [rng.gammavariate(alpha, 1.0) for _ in kids]
        norm = sum(draws) or 1.0
        priors = [(1 - eps) * p + eps * d / norm for p, d in zip(priors, draws, strict=True)]
    for kid, prior in zip(kids, priors, strict=True):
        kid.prior = prior


def best_child(kids: list[Node]) -> Node:
    """The most visited child; then the higher value; then the older."""
    return max(kids, key=lambda k: (k.visits, k.value or 0.0, -k.id))
