"""A policy that answers any prompt, and a server around it, for the ``prm-plugin serve``
logic tests (the real models are tested in test_serve_world.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from prm_plugin.integrations.search_session import SearchSession
from prm_plugin.search import PrefixProposals, PRMQuery, Proposal, StepScores
from prm_plugin.serve import ServeConfig, ServerThread, create_app


class AnyPolicy:
    """Sample ``k`` of a prompt is ``"answer k to <prompt's last 12 chars>"``, finished.

    Records every call (``calls``: the prefixes, n, temperature, seed). A prompt holding
    ``boom`` makes the whole call raise; with ``gate`` set, calls wait for it to open.
    """

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[tuple[str, ...], int, float, int | None]] = []
        self.gate = gate
        self.busy = threading.Event()

    def propose(self, prefixes: Sequence[str], *, n: int, stop: Sequence[str], final_stop: Sequence[str] = (),
                max_tokens: int, temperature: float, top_p: float = 1.0,
                seed: int | None = None) -> list[PrefixProposals]:
        self.calls.append((tuple(prefixes), n, temperature, seed))
        self.busy.set()
        if self.gate is not None:
            self.gate.wait(30)
        if any("boom" in p for p in prefixes):
            raise RuntimeError("the policy blew up on a 'boom' prompt")
        return [PrefixProposals(tuple(Proposal(f"answer {k} to {p[-12:]}", 3, "eos") for k in range(n)),
                                prefill_tokens=self.count_tokens(p)) for p in prefixes]

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))

    def prompts(self) -> list[str]:
        return [p for call in self.calls for p in call[0]]


class PreferOnePRM:
    """P(correct) 0.9 for a step of sample 1 (``answer 1 ...``), 0.2 otherwise: best-of-N must pick sample 1."""

    step_separator = "\n\n"

    def score(self, queries: Sequence[PRMQuery]) -> list[StepScores]:
        return [StepScores(tuple(0.9 if s.startswith("answer 1 ") else 0.2 for s in q.steps), self.count_tokens(q))
                for q in queries]

    def count_tokens(self, query: PRMQuery) -> int:
        return len(query.question.split()) + sum(len(s.split()) for s in query.steps)


def fake_session(policy: AnyPolicy | None = None, **settings: Any) -> SearchSession:
    args = {"strategy": "bon", "n": 2, **settings}
    return SearchSession.build(args, harness="test", policy=policy or AnyPolicy(), prm=PreferOnePRM())


@contextmanager
def serving(session: SearchSession, **config: Any) -> Iterator[ServerThread]:
    """The app on a free loopback port for the duration of the block."""
    with ServerThread(create_app(session, ServeConfig(**{"batch_wait_s": 0.01, "batch_max_wait_s": 0.1, **config}))) as server:
        yield server


def metric(url: str, name: str, headers: dict[str, str] | None = None) -> float:
    """One sample's value from ``/metrics`` (``name`` with its labels, as exposed)."""
    text = httpx.get(url + "/metrics", headers=headers).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(f"{name} not in /metrics:\n{text}")


def wait_for(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
