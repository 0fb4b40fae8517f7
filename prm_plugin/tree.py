"""Search trees over reasoning steps and the per-batch accounting strategies share.

``SearchTree`` is a trie of step texts under one problem's prompt: a child whose text
equals an existing sibling's is the same node, so duplicates are merged and every
node is a unique prefix. Nodes carry what traces need (policy tokens, stop reason,
PRM step score, visits and value for MCTS) and a ``role``: ``"step"`` for nodes the
search itself created, ``"lookahead"`` / ``"rollout"`` for steps generated only to
score or value a node. Roles matter to the search; accounting counts every node once.

A node is finished when its proposal ended the solution (``stop_reason`` other than
``"step"``) or its path reached ``Problem.max_tokens``; finished nodes are never
extended. A step cut by the per-step token cap (``"length"``) therefore ends its
candidate, as in search-and-learn: cutting a runaway step at an arbitrary token and
carrying on would invent a step boundary.

A node is ``unscorable`` when the PRM could not score the path to it (the input did
not fit the PRM's context and it skips such inputs): its ``aggregate`` is None, so it
never wins on score, and ``children`` leaves it out, so a tree search does not walk into
a branch it cannot value.

Strategies grow trees through ``prm_plugin.search_run.SearchRun`` and read them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prm_plugin.policy.base import Policy
from prm_plugin.prm.base import RewardModel, aggregate
from prm_plugin.search import Candidate, PRMQuery, Problem


@dataclass
class Node:
    """One step in a search tree (the root, id 0, is the prompt and has no text).

    ``n_tokens`` are the policy tokens sampled for this step; a proposal that spans
    several steps (a rollout or a whole solution) books its tokens on its last step.
    ``total_tokens`` sums them along the path and is checked against
    ``Problem.max_tokens``. ``visits``/``value_sum``/``prior`` are used by MCTS.
    ``unscorable``: the PRM could not score the path to this node (see the module doc).
    """

    id: int
    parent: int | None
    text: str
    depth: int
    role: str = "step"
    n_tokens: int = 0
    total_tokens: int = 0
    stop_reason: str | None = None
    finished: bool = False
    score: float | None = None
    extended: bool = False
    visits: int = 0
    value_sum: float = 0.0
    prior: float | None = None
    kids: dict[str, int] = field(default_factory=dict)
    unscorable: bool = False

    @property
    def value(self) -> float | None:
        return self.value_sum / self.visits if self.visits else None


class SearchTree:
    """A trie of steps for one problem.

    >>> tree = SearchTree(Problem(prompt="Q: 1+1?\\n", question="1+1?"), "\\n\\n")
    >>> a, _ = tree.add(0, "1+1 = 2", n_tokens=4, stop_reason="step")
    >>> b, _ = tree.add(a.id, "\\\\boxed{2}", n_tokens=3, stop_reason="eos")
    >>> tree.prefix(b.id), tree.text(b.id), b.finished, b.total_tokens
    ('Q: 1+1?\\n1+1 = 2\\n\\n\\\\boxed{2}\\n\\n', '1+1 = 2\\n\\n\\\\boxed{2}', True, 7)
    """

    def __init__(self, problem: Problem, delimiter: str) -> None:
        self.problem = problem
        self.delimiter = delimiter
        self.nodes: list[Node] = [Node(id=0, parent=None, text="", depth=0)]

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(
        self, parent: int, text: str, *, role: str = "step", n_tokens: int = 0,
        stop_reason: str | None = "step",
    ) -> tuple[Node, bool]:
        """Add (or find) the child of ``parent`` with ``text``.

        Returns the node and whether it is new *in this role*: a duplicate sibling
        gives ``False``; a step that matches an earlier lookahead/rollout node turns
        that node into a step (keeping its score) and gives ``True``.
        """
        up = self.nodes[parent]
        if text in up.kids:
            node = self.nodes[up.kids[text]]
            if role != "step" or node.role == "step":
                return node, False
            node.role = "step"
            node.n_tokens = n_tokens
            node.total_tokens = up.total_tokens + n_tokens
            node.stop_reason = stop_reason
            node.finished = self._finished(node)
            return node, True
        node = Node(
            id=len(self.nodes), parent=parent, text=text, depth=up.depth + 1, role=role,
            n_tokens=n_tokens, total_tokens=up.total_tokens + n_tokens, stop_reason=stop_reason,
        )
        node.finished = self._finished(node)
        self.nodes.append(node)
        up.kids[text] = node.id
        return node, True

    def add_path(
        self, parent: int, texts: Sequence[str], *, role: str, n_tokens: int, stop_reason: str
    ) -> Node:
        """Add a multi-step proposal as a chain; its tokens and stop reason go on the last step."""
        node = self.nodes[parent]
        for k, text in enumerate(texts):
            last = k == len(texts) - 1
            node, _ = self.add(
                node.id, text, role=role, n_tokens=n_tokens if last else 0,
                stop_reason=stop_reason if last else "step",
            )
        return node

    def _finished(self, node: Node) -> bool:
        return node.stop_reason != "step" or node.total_tokens >= self.problem.max_tokens

    def children(self, node_id: int) -> list[Node]:
        """The step-role children that can be searched (not ``unscorable``), in creation order."""
        return [self.nodes[k] for k in self.nodes[node_id].kids.values()
                if self.nodes[k].role == "step" and not self.nodes[k].unscorable]

    def path(self, node_id: int) -> list[int]:
        """Node ids from the first step down to ``node_id`` (the root excluded)."""
        ids: list[int] = []
        while node_id:
            ids.append(node_id)
            node_id = self.nodes[node_id].parent or 0
        return ids[::-1]

    def steps(self, node_id: int) -> tuple[str, ...]:
        return tuple(self.nodes[k].text for k in self.path(node_id))

    def text(self, node_id: int) -> str:
        """The candidate text: steps joined by the delimiter (lossless)."""
        return self.delimiter.join(self.steps(node_id))

    def prefix(self, node_id: int) -> str:
        """What the policy continues: the prompt, then every step followed by the delimiter."""
        return self.problem.prompt + "".join(s + self.delimiter for s in self.steps(node_id))

    def remaining_tokens(self, node_id: int) -> int:
        return self.problem.max_tokens - self.nodes[node_id].total_tokens

    def query(self, node_id: int) -> PRMQuery:
        return PRMQuery(self.problem.question, self.steps(node_id))

    def set_scores(self, node_id: int, scores: Sequence[float]) -> None:
        """Store a PRM result for the path to ``node_id`` on each node of the path."""
        for k, s in zip(self.path(node_id), scores, strict=True):
            self.nodes[k].score = float(s)

    def set_unscorable(self, node_id: int) -> None:
        """Mark the path to ``node_id`` as one the PRM could not score."""
        self.nodes[node_id].unscorable = True

    def step_scores(self, node_id: int) -> list[float] | None:
        """The PRM's score of each step on the path; None when the path is unscorable.

        Raises:
            RuntimeError: the path was never scored.
        """
        if self.nodes[node_id].unscorable:
            return None
        scores = [self.nodes[k].score for k in self.path(node_id)]
        if any(s is None for s in scores):
            raise RuntimeError(f"Node {node_id} has unscored steps on its path; score it first.")
        return [float(s) for s in scores if s is not None]

    def aggregate(self, node_id: int, how: str) -> float | None:
        """The path's aggregated score (``how``: min, last, prod, mean); None when unscorable."""
        scores = self.step_scores(node_id)
        return None if scores is None else aggregate(scores, how)

    def candidate(self, node_id: int, aggregation: str | None) -> Candidate:
        """The path to ``node_id`` as a candidate (scored when ``aggregation`` is given and
        the path is not unscorable)."""
        node = self.nodes[node_id]
        scores = self.step_scores(node_id) if aggregation else None
        return Candidate(
            steps=list(self.steps(node_id)), step_scores=scores,
            score=aggregate(scores, aggregation) if scores and aggregation else None,
            finished=node.finished, n_tokens=node.total_tokens, node_id=node_id,
        )

    def unique_prm_tokens(self, prm: RewardModel) -> int:
        """U: the question's tokens plus each scored node's own share, in PRM tokens.

        ``count(q, path) - count(q, parent path)`` is a node's share; pieces are additive.
        """
        q = self.problem.question
        counts = {0: prm.count_tokens(PRMQuery(q, ()))}
        total = counts[0]
        for node in self.nodes[1:]:  # parents precede children
            counts[node.id] = prm.count_tokens(self.query(node.id))
            if node.score is not None:
                total += counts[node.id] - counts[node.parent or 0]
        return total

    def unique_policy_tokens(self, policy: Policy) -> int:
        """The tree's size in policy tokens (used when no PRM scored it): the prompt plus
        every node's text, with the delimiter where the node has children."""
        total = policy.count_tokens(self.problem.prompt)
        for node in self.nodes[1:]:
            total += policy.count_tokens(node.text + (self.delimiter if node.kids else ""))
        return total

    def extended_prompt_tokens(self, policy: Policy) -> int:
        """Unique prompt-side policy tokens: the prompt, plus text + delimiter of every
        node the policy was asked to continue."""
        total = policy.count_tokens(self.problem.prompt)
        for node in self.nodes[1:]:
            if node.extended:
                total += policy.count_tokens(node.text + self.delimiter)
        return total

    def to_json(self, mcts: bool = False) -> list[dict[str, Any]]:
        """The nodes as JSON rows (``visits``, ``value`` and ``prior`` when ``mcts``)."""
        rows = []
        for n in self.nodes:
            row: dict[str, Any] = {
                "id": n.id, "parent": n.parent, "text": n.text, "role": n.role,
                "n_tokens": n.n_tokens, "score": n.score, "finished": n.finished,
                "stop_reason": n.stop_reason,
            }
            if n.unscorable:
                row["unscorable"] = True
            if mcts:
                row.update(visits=n.visits, value=n.value, prior=n.prior)
            rows.append(row)
        return rows


def best_index(scores: Sequence[float | None]) -> int | None:
    """Index of the highest score, the lowest index on ties; None when nothing is scored
    (None entries, such as unscorable candidates, never win).

    >>> best_index([0.2, 0.9, 0.9, None])
    1
    """
    best: int | None = None
    best_score = 0.0
    for k, s in enumerate(scores):
        if s is not None and (best is None or s > best_score):
            best, best_score = k, s
    return best
