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


class ArithPolicy:
    """A policy for "What is a + b?" prompts: sample ``j`` answers ``a + b + d`` with ``d``
    in {-1, 0, 1} drawn from (seed, prompt, j), so samples are batch-independent and
    reproducible. Whole solutions only (bon, majority, greedy).

    Args:
        fail_on: a prompt substring (or ``PRM_TEST_FAIL_ON``): a call holding such a
            prompt raises ``RuntimeError`` (a backend fault on that input).
        slow: seconds to sleep per call (or ``PRM_TEST_SLOW_SECONDS``; kill tests).
        log: a file that gets one line per prompt searched (or ``PRM_TEST_SOLVED_LOG``).
    """

    def __init__(self, fail_on: str | None = None, slow: float | None = None, log: str | None = None) -> None:
        self.fail_on = fail_on if fail_on is not None else os.environ.get("PRM_TEST_FAIL_ON") or None
        self.slow = float(slow if slow is not None else os.environ.get("PRM_TEST_SLOW_SECONDS", "0"))
        self.log = log or os.environ.get("PRM_TEST_SOLVED_LOG")
        self.calls: list[tuple[str, ...]] = []

    def propose(self, prefixes: Sequence[str], *, n: int, stop: Sequence[str], final_stop: Sequence[str] = (),
                max_tokens: int, temperature: float, top_p: float = 1.0, seed: int | None = None) -> list[Any]:
        from prm_plugin.search import PrefixProposals, Proposal

        if stop:
            raise NotImplementedError("ArithPolicy serves whole solutions: use bon, majority or greedy")
        self.calls.append(tuple(prefixes))
        if self.slow:
            time.sleep(self.slow)
        if self.fail_on and any(self.fail_on in p for p in prefixes):
            raise RuntimeError(f"ArithPolicy: simulated backend failure on a prompt with {self.fail_on!r}")
        if self.log:
            with open(self.log, "a") as f:
                f.writelines(p.replace("\n", " ") + "\n" for p in prefixes)
        out = []
        for p in prefixes:
            a, b = (int(x) for x in re.findall(r"-?\d+", p)[:2])
            props = []
            for j in range(n):
                d = (hash_int(f"{seed}|{p}|{j}") % 3) - 1
                text = f" {a} + {b} = {a + b + d}\n\nThe answer is {a + b + d}"
                props.append(Proposal(text, len(text.split()), "eos"))
            out.append(PrefixProposals(tuple(props), prefill_tokens=self.count_tokens(p)))
        return out

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))


class ArithPRM:
    """Scores a step "a + b = c" 0.9 when right, 0.2 when wrong (other steps 0.5)."""

    step_separator = "\n\n"

    def score(self, queries: Sequence[Any]) -> list[Any]:
        from prm_plugin.search import StepScores

        return [StepScores(tuple(self._one(s) for s in q.steps), self.count_tokens(q)) for q in queries]

    @staticmethod
    def _one(step: str) -> float:
        m = re.fullmatch(r"\s*(-?\d+) \+ (-?\d+) = (-?\d+)\s*", step)
        if not m:
            return 0.5
        a, b, c = (int(x) for x in m.groups())
        return 0.9 if a + b == c else 0.2

    def count_tokens(self, query: Any) -> int:
        return len(query.question.split()) + sum(len(s.split()) for s in query.steps)


def hash_int(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
