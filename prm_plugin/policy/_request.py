"""Checking a ``propose`` request and matching stop strings: shared by every backend.

Pure Python (no torch), so the vLLM backend and tests use it without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prm_plugin.search import StopReason


@dataclass(frozen=True)
class StopMatch:
    """Where a stop string starts in a text, which string it was and what it means."""

    start: int
    string: str
    reason: StopReason


@dataclass(frozen=True)
class StopSet:
    """Step-boundary and end-of-solution stop strings of one request.

    ``find`` returns the earliest stop in a text; at equal start positions the longer
    string wins (the text really contains it, and it is the more specific one).

    >>> s = StopSet(step=("\\n\\n",), final=("The answer",))
    >>> s.find("a\\n\\nThe answer")
    StopMatch(start=1, string='\\n\\n', reason='step')
    >>> s.find("The answer\\n\\n").reason
    'final'
    """

    step: tuple[str, ...] = ()
    final: tuple[str, ...] = ()

    @property
    def max_len(self) -> int:
        return max((len(s) for s in self.step + self.final), default=0)

    def reason_of(self, string: str) -> StopReason:
        """``"final"`` for a final stop string, ``"step"`` for a step stop string."""
        return "final" if string in self.final else "step"

    def find(self, text: str, start: int = 0) -> StopMatch | None:
        """The earliest stop string in ``text[start:]`` (positions are in ``text``)."""
        best: StopMatch | None = None
        for reason, strings in (("step", self.step), ("final", self.final)):
            for s in strings:
                i = text.find(s, start)
                if i < 0:
                    continue
                if best is None or i < best.start or (i == best.start and len(s) > len(best.string)):
                    best = StopMatch(i, s, reason)  # type: ignore[arg-type]
        return best


def _check_strings(name: str, strings: Sequence[str]) -> tuple[str, ...]:
    if isinstance(strings, str):
        raise TypeError(f"{name} must be a list of strings, not a string; write {name}=[{strings!r}].")
    out = tuple(strings)
    for s in out:
        if not isinstance(s, str) or not s:
            raise ValueError(f"{name} holds {s!r}; every stop string must be a non-empty str.")
    return out


def check_request(
    prefixes: Sequence[str],
    *,
    n: int,
    stop: Sequence[str],
    final_stop: Sequence[str],
    max_tokens: int | Sequence[int],
    temperature: float,
    top_p: float,
    seed: int | None,
) -> StopSet:
    """Validate the arguments of ``Policy.propose`` and return its stop strings.

    ``max_tokens`` may be one cap for every prefix or one cap per prefix (for policies
    that declare ``per_prefix_max_tokens``; see ``token_caps``).

    Raises:
        TypeError / ValueError: naming the bad argument, its value and the allowed range.
    """
    if isinstance(prefixes, str):
        raise TypeError("prefixes must be a list of strings, not one string; wrap it: [prefix].")
    for i, p in enumerate(prefixes):
        if not isinstance(p, str):
            raise TypeError(f"prefixes[{i}] is a {type(p).__name__}; every prefix must be a str.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1 (continuations per prefix), got {n!r}.")
    token_caps(max_tokens, len(prefixes))
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}.")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {seed!r}.")
    step, final = _check_strings("stop", stop), _check_strings("final_stop", final_stop)
    both = sorted(set(step) & set(final))
    if both:
        raise ValueError(
            f"{both!r} appear in both stop (step boundaries) and final_stop (end of solution); "
            "a string can mean only one of them: remove it from one list."
        )
    return StopSet(step=step, final=final)


def token_caps(max_tokens: int | Sequence[int], count: int) -> list[int]:
    """The cap of each of ``count`` prefixes: ``max_tokens`` is one int for all, or one per prefix.

    >>> token_caps(8, 2), token_caps([8, 3], 2)
    ([8, 8], [8, 3])
    """
    caps = [max_tokens] * count if isinstance(max_tokens, int) else list(max_tokens)
    if len(caps) != count:
        raise ValueError(f"max_tokens holds {len(caps)} caps for {count} prefixes; give one int, or one per prefix.")
    for cap in caps:
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"max_tokens must be an int >= 1 (or a list of them, one per prefix), got {cap!r}.")
    return caps
