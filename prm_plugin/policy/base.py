"""The policy contract: what a strategy may ask of a proposal backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from prm_plugin.search import PrefixProposals


@runtime_checkable
class Policy(Protocol):
    """A proposal backend (HF transformers, vLLM, any lm-eval model, a test fake).

    ``propose`` is batched: one call carries many prefixes, from many problems.

    Optional: a policy whose class sets ``per_prefix_max_tokens = True`` also accepts
    ``max_tokens`` as a sequence, one cap per prefix, so ``SearchRun`` can batch
    prefixes with different remaining budgets in one call; for any other policy it
    makes one call per distinct cap (a continuation never depends on its batch).

    Optional: a policy that sets ``whole_solutions = True`` (on its class or instance)
    only answers a problem's prompt with complete solutions: it takes no step stops and
    cannot continue a partial solution (EvalPlus's decoders, chat-completion APIs).
    Strategies that search step by step (``Strategy.needs_steps``) refuse it
    (``prm_plugin.strategy.check_policy``); ``bon``, ``majority`` and ``greedy`` run
    with it. Its ``label`` (optional, a string) names it in that message.
    """

    def propose(
        self,
        prefixes: Sequence[str],
        *,
        n: int,
        stop: Sequence[str],
        final_stop: Sequence[str] = (),
        max_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[PrefixProposals]:
        """Sample ``n`` continuations of every prefix.

        Args:
            prefixes: full texts to continue (prompt plus the steps so far).
            n: continuations per prefix.
            stop: step-boundary strings; stopping on one gives ``stop_reason="step"``.
            final_stop: strings that end the solution (``stop_reason="final"``).
            max_tokens: cap on tokens generated per continuation (``"length"``); one
                int per prefix where the policy sets ``per_prefix_max_tokens``.
            temperature: 0 means greedy (then all ``n`` continuations are equal).
            top_p: nucleus sampling mass.
            seed: makes the call reproducible; the same seed, prefix and sample index
                give the same continuation whatever else is in the batch.

        Returns:
            One ``PrefixProposals`` per prefix, in order, each holding ``n`` proposals
            whose text excludes the stop string (or EOS) that ended it.
        """
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this policy's tokenizer (for tree accounting)."""
        ...
