"""The data model every strategy, policy, PRM and integration shares.

Nothing here imports torch or a harness: these are plain typed dataclasses whose
``to_json()`` output is what traces and result files hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StopReason = Literal["step", "final", "eos", "length"]


@dataclass
class Problem:
    """One question to solve.

    Attributes:
        prompt: the exact policy prompt (chat template already applied).
        question: the raw problem text shown to the PRM.
        stop: final stop strings (e.g. lm-eval's ``until``); hitting one ends the solution.
        max_tokens: cap on generated tokens for the whole solution.
        domain: ``"math"``, ``"code"`` or any domain an answer key is registered for.
        doc: the harness's raw record (answer keys may read tests or examples from it).
        uid: a stable identifier used in traces.
    """

    prompt: str
    question: str
    stop: list[str] = field(default_factory=list)
    max_tokens: int = 1024
    domain: str = "math"
    doc: dict[str, Any] | None = None
    uid: str | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"Problem.max_tokens must be >= 1, got {self.max_tokens}.")


@dataclass(frozen=True)
class Proposal:
    """One continuation sampled by a policy.

    ``text`` excludes the stop string or EOS that ended it. ``finished`` is true when
    the model ended the solution (EOS, a final stop string, or the token cap) and
    false when it stopped at a step boundary.
    """

    text: str
    n_tokens: int
    stop_reason: StopReason

    @property
    def finished(self) -> bool:
        return self.stop_reason != "step"


@dataclass(frozen=True)
class PrefixProposals(Sequence[Proposal]):
    """The ``n`` proposals for one prefix, plus the prompt tokens the policy prefilled
    for that prefix (after any prefix-cache reuse). Reads like a list of proposals."""

    proposals: tuple[Proposal, ...]
    prefill_tokens: int

    def __len__(self) -> int:
        return len(self.proposals)

    def __iter__(self) -> Iterator[Proposal]:
        return iter(self.proposals)

    def __getitem__(self, i: int) -> Proposal:  # type: ignore[override]
        return self.proposals[i]


@dataclass(frozen=True)
class PRMQuery:
    """A step list to score for a question."""

    question: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class StepScores:
    """Per-step P(correct) for one query, and the PRM tokens actually run to get them."""

    scores: tuple[float, ...]
    tokens: int


@dataclass
class Budget:
    """The compute a strategy may spend per problem.

    ``n`` is the one knob every strategy maps onto its own shape (leaf candidates or
    rollouts; each strategy documents its mapping). The optional caps stop the search
    gracefully with the best answer found so far.
    """

    n: int = 16
    max_policy_tokens: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"Budget.n must be >= 1 (the number of candidates), got {self.n}.")
        if self.max_policy_tokens is not None and self.max_policy_tokens < 1:
            raise ValueError(
                f"Budget.max_policy_tokens must be >= 1 or None (no cap), got {self.max_policy_tokens}."
            )
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"Budget.max_seconds must be > 0 or None (no cap), got {self.max_seconds}.")


@dataclass
class Cost:
    """Measured cost of solving one problem. Counts, never estimates.

    Attributes:
        policy_prefill_tokens: prompt-side tokens the policy ran through its model.
        policy_generated_tokens: tokens the policy sampled.
        prm_tokens: tokens the PRM ran through its model (T_R).
        unique_tokens: unique tokens in the search tree, prompt included (U).
        unique_prompt_tokens: unique prompt-side tokens (prompt + every node extended).
        policy_calls / prm_calls: batched calls this problem took part in.
        seconds: wall-clock seconds of the search that solved this problem.
        stopped_by: the budget cap that ended the search early, if any.
    """

    policy_prefill_tokens: int = 0
    policy_generated_tokens: int = 0
    prm_tokens: int = 0
    unique_tokens: int = 0
    unique_prompt_tokens: int = 0
    policy_calls: int = 0
    prm_calls: int = 0
    seconds: float = 0.0
    stopped_by: str | None = None

    def add_proposals(self, group: PrefixProposals) -> None:
        self.policy_prefill_tokens += group.prefill_tokens
        self.policy_generated_tokens += sum(p.n_tokens for p in group)

    @property
    def prm_over_unique(self) -> float:
        return self.prm_tokens / self.unique_tokens if self.unique_tokens else math.nan

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """A (possibly unfinished) solution: its steps, their PRM scores and aggregate."""

    steps: list[str]
    step_scores: list[float] | None = None
    score: float | None = None
    finished: bool = True
    n_tokens: int = 0
    answer: str | None = None
    node_id: int | None = None

    def text(self, delimiter: str) -> str:
        return delimiter.join(self.steps)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """What a strategy returns for one problem."""

    text: str
    candidates: list[Candidate]
    chosen: int | None
    cost: Cost
    trace: dict[str, Any] = field(default_factory=dict)
    strategy: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "text": self.text,
            "chosen": self.chosen,
            "candidates": [c.to_json() for c in self.candidates],
            "cost": self.cost.to_json(),
            "trace": self.trace,
        }
