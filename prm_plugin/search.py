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
#: What a policy or PRM did with an input longer than its context (``on_overflow``):
#: ``"truncate"`` cuts it from the left (default), ``"skip"`` leaves it unprocessed,
#: ``"error"`` raises ``ContextOverflowError``.
OverflowPolicy = Literal["truncate", "skip", "error"]
OVERFLOW_POLICIES: tuple[str, ...] = ("truncate", "skip", "error")


class ContextOverflowError(ValueError):
    """An input is longer than the model's context and ``on_overflow="error"``."""


def check_overflow_policy(value: object, owner: str = "on_overflow") -> OverflowPolicy:
    """``value`` if it is one of ``OVERFLOW_POLICIES``, else a ``ValueError`` naming ``owner``.

    >>> check_overflow_policy("skip")
    'skip'
    """
    if value not in OVERFLOW_POLICIES:
        raise ValueError(
            f"{owner}={value!r} is not an overflow policy; use one of {', '.join(OVERFLOW_POLICIES)} "
            "(truncate: cut the input from the left to fit; skip: leave it unprocessed; error: raise)."
        )
    return value  # type: ignore[return-value]


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
        for name in ("prompt", "question", "domain"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Problem.{name} must be a str, got {type(getattr(self, name)).__name__}.")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise TypeError(f"Problem.stop must be a list of non-empty strings, got {self.stop!r}.")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"Problem.max_tokens must be an int >= 1, got {self.max_tokens!r}.")


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
    for that prefix (after any prefix-cache reuse). Reads like a list of proposals.

    ``overflow`` says what the policy did with a prefix longer than its context:
    ``"truncated"`` (``cut_tokens`` tokens cut from its left, the proposals continue what
    was left) or ``"skipped"`` (nothing was sampled: ``proposals`` is empty).
    """

    proposals: tuple[Proposal, ...]
    prefill_tokens: int
    overflow: Literal["truncated", "skipped"] | None = None
    cut_tokens: int = 0

    @property
    def skipped(self) -> bool:
        return self.overflow == "skipped"

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
    """Per-step P(correct) for one query, and the PRM tokens actually run to get them.

    ``scores`` is None when the query could not be scored: its input is longer than the
    PRM's context and the PRM's ``on_overflow`` is ``"skip"`` (``overflow == "skipped"``).
    ``overflow == "truncated"``: the input was cut to fit (``cut_tokens`` tokens of
    question, then oldest steps, are missing from the last step's context).
    """

    scores: tuple[float, ...] | None
    tokens: int
    overflow: Literal["truncated", "skipped"] | None = None
    cut_tokens: int = 0

    @property
    def skipped(self) -> bool:
        return self.scores is None


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
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"Budget.n must be >= 1 (an int: the number of candidates), got {self.n!r}.")
        if self.max_policy_tokens is not None and self.max_policy_tokens < 1:
            raise ValueError(
                f"Budget.max_policy_tokens must be >= 1 or None (no cap), got {self.max_policy_tokens}."
            )
        if self.max_seconds is not None and not (0 < self.max_seconds < math.inf):
            raise ValueError(f"Budget.max_seconds must be a finite number > 0 or None (no cap), got {self.max_seconds}.")


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
        stopped_by: the budget cap that ended the search early, if any, or
            ``"context"`` when the policy skipped a prefix longer than its context.
        policy_truncated / prm_truncated: prefixes / PRM queries cut to fit the model's
            context (``on_overflow="truncate"``), counted per call.
        policy_cut_tokens / prm_cut_tokens: the tokens those cuts removed.
        policy_skipped / prm_skipped: prefixes not continued / PRM queries left unscored
            because they did not fit (``on_overflow="skip"``).
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
    policy_truncated: int = 0
    policy_cut_tokens: int = 0
    policy_skipped: int = 0
    prm_truncated: int = 0
    prm_cut_tokens: int = 0
    prm_skipped: int = 0

    def add_proposals(self, group: PrefixProposals) -> None:
        self.policy_prefill_tokens += group.prefill_tokens
        self.policy_generated_tokens += sum(p.n_tokens for p in group)
        self.policy_truncated += group.overflow == "truncated"
        self.policy_cut_tokens += group.cut_tokens
        self.policy_skipped += group.overflow == "skipped"

    def add_scores(self, result: StepScores) -> None:
        self.prm_tokens += result.tokens
        self.prm_truncated += result.overflow == "truncated"
        self.prm_cut_tokens += result.cut_tokens
        self.prm_skipped += result.overflow == "skipped"

    @property
    def overflowed(self) -> bool:
        """Whether any input of this problem did not fit a model's context."""
        return bool(self.policy_truncated or self.policy_skipped or self.prm_truncated or self.prm_skipped)

    @property
    def prm_over_unique(self) -> float:
        return self.prm_tokens / self.unique_tokens if self.unique_tokens else math.nan

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """A (possibly unfinished) solution: its steps, their PRM scores and aggregate.

    ``step_scores`` and ``score`` are None when the candidate was not scored, or could
    not be (its PRM input did not fit and the PRM skips such inputs).
    """

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
    """What a strategy returns for one problem.

    ``error`` is set (by the harness session, never by a strategy) when searching this
    problem failed: ``{"type", "message", "where", "traceback"}``; the text is then empty.
    """

    text: str
    candidates: list[Candidate]
    chosen: int | None
    cost: Cost
    trace: dict[str, Any] = field(default_factory=dict)
    strategy: str = ""
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "strategy": self.strategy,
            "text": self.text,
            "chosen": self.chosen,
            "candidates": [c.to_json() for c in self.candidates],
            "cost": self.cost.to_json(),
            "trace": self.trace,
        }
        if self.error is not None:
            out["error"] = self.error
        return out
