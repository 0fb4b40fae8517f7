"""Fakes for the prm_guided lm-eval tests: a strategy that answers arithmetic questions
and records what it saw, a policy that must not be called, and a scripted lm-eval LM."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lm_eval.api.model import LM

from prm_plugin.search import Budget, Candidate, Cost, Problem, SearchResult
from prm_plugin.strategy import Strategy, StrategyParams


@dataclass
class AddParams(StrategyParams):
    """``wrong``: answer every question off by one (to check metrics can fail)."""

    wrong: bool = False


class AddStrategy(Strategy):
    """Answers "What is a + b?" questions; records every batch it is given.

    With ``PRM_TEST_SLOW_SECONDS`` set it sleeps that long per batch (kill tests), and
    it appends one line per solved problem to ``PRM_TEST_SOLVED_LOG`` if set.
    """

    name = "add"
    Params = AddParams
    needs_prm = False
    batches: list[list[Problem]] = []

    def search(self, problems: Sequence[Problem], policy: Any, prm: Any, budget: Budget) -> list[SearchResult]:
        type(self).batches.append(list(problems))
        delay = float(os.environ.get("PRM_TEST_SLOW_SECONDS", "0"))
        if delay:
            time.sleep(delay)
        out = []
        for p in problems:
            a, b = (int(x) for x in re.findall(r"-?\d+", p.question)[:2])
            answer = a + b + (1 if self.params.wrong else 0)  # type: ignore[attr-defined]
            steps = [f"{a} + {b} = {answer}", f"The answer is {answer}"]
            cost = Cost(policy_prefill_tokens=len(p.prompt), policy_generated_tokens=7 * budget.n,
                        prm_tokens=11, unique_tokens=22, seconds=0.0)
            out.append(SearchResult(
                text=" " + "\n\n".join(steps), candidates=[Candidate(steps=steps, score=0.9)], chosen=0,
                cost=cost, trace={"seed": self.params.seed, "temperature": self.params.temperature},
                strategy=self.name,
            ))
        log = os.environ.get("PRM_TEST_SOLVED_LOG")
        if log:
            with open(log, "a") as f:
                f.writelines(f"{p.uid}\n" for p in problems)
        return out


class NoCallPolicy:
    """A policy for strategies that never call it."""

    def propose(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the policy should not be called")

    def count_tokens(self, text: str) -> int:
        return len(text)


class SeparatorPRM:
    """A PRM that only carries a step separator (for the separator check)."""

    def __init__(self, step_separator: str) -> None:
        self.step_separator = step_separator

    def score(self, queries: Any) -> Any:
        raise AssertionError("not scored in these tests")

    def count_tokens(self, query: Any) -> int:
        return 0


class WrappedLM(LM):
    """A minimal lm-eval model for policy=<lm-eval name>: records its args, answers
    loglikelihood with fixed values and generate_until with "7"."""

    instances: list[WrappedLM] = []

    def __init__(self, flavour: str = "plain", batch_size: Any = None, device: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.flavour, self.batch_size, self.kwargs = flavour, batch_size, kwargs
        type(self).instances.append(self)

    def tok_encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        return [ord(c) for c in text]

    def loglikelihood(self, requests: Any, disable_tqdm: bool = False) -> Any:
        return [(-1.5, True) for _ in requests]

    def loglikelihood_rolling(self, requests: Any, disable_tqdm: bool = False) -> Any:
        return [-2.5 for _ in requests]

    def generate_until(self, requests: Any, disable_tqdm: bool = False) -> Any:
        return ["7" for _ in requests]
