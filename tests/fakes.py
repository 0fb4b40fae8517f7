"""Fakes for strategy tests: a policy that serves a known tree, a PRM with fixed step
scores, and a clock that only moves when told. Every call is recorded.

The policy's tree maps a prefix (prompt plus the steps so far, each followed by the
delimiter) to its choices ``(text, n_tokens, stop_reason)``. Sample ``i`` of a call
takes choice ``i % len(choices)`` (choice 0 at temperature 0). When the caller does not
stop at the delimiter, the fake keeps going down the tree along the same choice index,
so one tree serves step-by-step searches and whole-solution sampling alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prm_plugin.search import PrefixProposals, PRMQuery, Proposal, StepScores

Choice = tuple[str, int, str]


class FakeClock:
    """A clock for ``Strategy.clock`` that advances only when ``advance`` is called."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class PolicyCall:
    prefixes: tuple[str, ...]
    n: int
    stop: tuple[str, ...]
    final_stop: tuple[str, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None


class FakePolicy:
    """Serves continuations from ``tree``; records each call in ``calls``.

    Args:
        tree: prefix -> choices. A missing prefix raises ``KeyError`` naming it.
        delimiter: the step delimiter the tree's prefixes use.
        clock / seconds_per_call: advance a ``FakeClock`` on every call.
        rotate_by_seed: sample ``i`` takes choice ``(i + seed) % len`` (so calls with
            different seeds differ, as with a real policy); off, the seed is ignored.
        distinct_repeats: the ``k``-th occurrence of a prefix in one call starts at choice
            ``k * n`` (as the HF and vLLM policies draw more, different samples for a
            repeated prefix); off, every occurrence gets the same proposals.
    """

    def __init__(
        self, tree: Mapping[str, Sequence[Choice]], *, delimiter: str = "\n\n",
        clock: FakeClock | None = None, seconds_per_call: float = 0.0, rotate_by_seed: bool = False,
        distinct_repeats: bool = False,
    ) -> None:
        self.rotate_by_seed = rotate_by_seed
        self.distinct_repeats = distinct_repeats
        self.tree = tree
        self.delimiter = delimiter
        self.clock = clock
        self.seconds_per_call = seconds_per_call
        self.calls: list[PolicyCall] = []

    def propose(
        self, prefixes: Sequence[str], *, n: int, stop: Sequence[str], final_stop: Sequence[str] = (),
        max_tokens: int, temperature: float, top_p: float = 1.0, seed: int | None = None,
    ) -> list[PrefixProposals]:
        self.calls.append(PolicyCall(tuple(prefixes), n, tuple(stop), tuple(final_stop), max_tokens,
                                     temperature, top_p, seed))
        if self.clock is not None:
            self.clock.advance(self.seconds_per_call)
        offset = (seed or 0) if self.rotate_by_seed else 0
        seen: dict[str, int] = {}
        out = []
        for p in prefixes:
            first = seen.get(p, 0) * n if self.distinct_repeats else 0
            seen[p] = seen.get(p, 0) + 1
            out.append(PrefixProposals(
                tuple(self._sample(p, 0 if temperature == 0 else first + i + offset, stop, final_stop, max_tokens)
                      for i in range(n)),
                prefill_tokens=self.count_tokens(p),
            ))
        return out

    def _sample(
        self, prefix: str, index: int, stop: Sequence[str], final_stop: Sequence[str], max_tokens: int
    ) -> Proposal:
        text, tokens = "", 0
        while True:
            if prefix not in self.tree:
                raise KeyError(f"FakePolicy has no continuation for prefix {prefix!r}")
            choices = self.tree[prefix]
            piece, n_tokens, reason = choices[index % len(choices)]
            text, tokens = text + piece, tokens + n_tokens
            if tokens > max_tokens:
                return Proposal(text, max_tokens, "length")
            if reason == "final" and not final_stop:
                raise AssertionError("FakePolicy: a 'final' choice was reached but no final_stop was passed")
            if reason == "step" and self.delimiter not in stop:
                text, prefix = text + self.delimiter, prefix + piece + self.delimiter
                continue
            return Proposal(text, tokens, reason)  # type: ignore[arg-type]

    def count_tokens(self, text: str) -> int:
        return len(text)


class FakePRM:
    """Deterministic step scores; ``tokens`` counts characters (question + each step + 1).

    Args:
        scores: step text -> score, or a function ``(question, steps) -> scores``.
        default: score for a step text missing from the dict (None: ``KeyError``).
        cache: report only the tokens of steps not scored before (as a caching PRM would).
    """

    step_separator = "\n\n"

    def __init__(
        self, scores: Mapping[str, float] | Callable[[str, tuple[str, ...]], Sequence[float]],
        *, default: float | None = None, cache: bool = False,
    ) -> None:
        self.scores = scores
        self.default = default
        self.cache = cache
        self.seen: set[tuple[str, tuple[str, ...]]] = set()
        self.calls: list[list[PRMQuery]] = []

    def score(self, queries: Sequence[PRMQuery]) -> list[StepScores]:
        self.calls.append(list(queries))
        return [StepScores(tuple(self._scores(q)), self._tokens(q)) for q in queries]

    def _scores(self, q: PRMQuery) -> list[float]:
        if callable(self.scores):
            return [float(s) for s in self.scores(q.question, q.steps)]
        out = []
        for step in q.steps:
            if step in self.scores:
                out.append(self.scores[step])
            elif self.default is not None:
                out.append(self.default)
            else:
                raise KeyError(f"FakePRM has no score for step {step!r}")
        return out

    def _tokens(self, q: PRMQuery) -> int:
        if not self.cache:
            return self.count_tokens(q)
        k = len(q.steps)  # the longest prefix scored before (-1: not even the question)
        while k >= 0 and (q.question, q.steps[:k]) not in self.seen:
            k -= 1
        self.seen.update((q.question, q.steps[:j]) for j in range(len(q.steps) + 1))
        done = self.count_tokens(PRMQuery(q.question, q.steps[:k])) if k >= 0 else 0
        return self.count_tokens(q) - done

    def count_tokens(self, query: PRMQuery) -> int:
        return len(query.question) + sum(len(s) + 1 for s in query.steps)


def as_json_roundtrip(obj: Any) -> Any:
    """``obj`` through JSON (asserts it is serialisable)."""
    import json

    return json.loads(json.dumps(obj))
