"""The strategies on the real path: HFPolicy and a value-head PRM from ``load_prm``, both
tiny random-init models built locally. Random models say nothing about accuracy; these
tests check what must hold for any model: reproducibility from the seed, the same
answer for a problem alone or in a batch, PRM scores stored where they belong, and
costs that add up to what the policy and PRM report."""

from __future__ import annotations

from typing import Any

import pytest
from tiny import build_causal_lm, build_value_head_prm

import prm_plugin
from prm_plugin.prm.base import aggregate
from prm_plugin.search import Budget, PRMQuery, Problem, SearchResult

pytest.importorskip("torch")

PROBLEMS = [
    Problem(prompt="Question: what is 12 - 5? Let's think step by step.\n\n", question="what is 12 - 5?",
            max_tokens=16, uid="p0"),
    Problem(prompt="x = [1, 2, 3]\n\n", question="print the squares", max_tokens=16, uid="p1"),
]
# A random model rarely writes "\n\n"; "e" makes multi-step solutions likely.
STEP = {"step_delimiter": "e", "max_step_tokens": 6, "seed": 3}
CASES = [
    ("bon", {"step_delimiter": "e", "seed": 3}, 3),
    ("beam", {"beam_width": 2, "max_steps": 3, **STEP}, 4),
    ("beam", {"beam_width": 2, "max_steps": 2, "lookahead": 1, **STEP}, 2),
    ("mcts", {"expansion_width": 2, "simulations": 3, **STEP}, 4),
    ("mcts", {"expansion_width": 2, "simulations": 2, "value": "rollout", "rollout": "sampled", **STEP}, 4),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """One policy and one PRM for the module: their prefix caches stay warm between
    runs, which must not change any result."""
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm

    root = tmp_path_factory.mktemp("strategy_hf")
    policy = HFPolicy.from_pretrained(str(build_causal_lm(root / "policy")), device="cpu")
    return policy, load_prm(str(build_value_head_prm(root / "prm")), device="cpu")


class Recorder:
    """Wraps a policy or PRM and totals what it reports."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.generated = self.prefill = self.prm_tokens = self.calls = 0
        # SearchRun batches different token caps in one call only where the policy says it can
        self.per_prefix_max_tokens = getattr(inner, "per_prefix_max_tokens", False)

    def propose(self, prefixes: Any, **kw: Any) -> Any:
        out = self.inner.propose(prefixes, **kw)
        self.calls += 1
        self.prefill += sum(g.prefill_tokens for g in out)
        self.generated += sum(p.n_tokens for g in out for p in g)
        return out

    def score(self, queries: Any) -> Any:
        out = self.inner.score(queries)
        self.calls += 1
        self.prm_tokens += sum(s.tokens for s in out)
        return out

    def count_tokens(self, x: Any) -> int:
        return self.inner.count_tokens(x)

    @property
    def step_separator(self) -> str:
        return self.inner.step_separator


def run(name: str, kwargs: dict, n: int, problems: list[Problem], models: tuple[Any, Any]
        ) -> tuple[list[SearchResult], Recorder, Recorder]:
    policy, prm = Recorder(models[0]), Recorder(models[1])
    strategy = prm_plugin.get_strategy(name)(**kwargs)
    return strategy.search(problems, policy, prm, Budget(n=n)), policy, prm  # type: ignore[arg-type]


def shape(res: SearchResult) -> tuple:
    return res.text, res.chosen, [(c.steps, c.finished, c.n_tokens) for c in res.candidates]


@pytest.mark.parametrize(("name", "kwargs", "n"), CASES)
def test_real_search_is_reproducible_batch_invariant_and_accounted(
    name: str, kwargs: dict, n: int, models: tuple[Any, Any]
) -> None:
    results, policy, prm = run(name, kwargs, n, PROBLEMS, models)
    again, _, _ = run(name, kwargs, n, PROBLEMS, models)
    solo, _, _ = run(name, kwargs, n, PROBLEMS[1:], models)
    assert [shape(r) for r in results] == [shape(r) for r in again]
    assert shape(results[1]) == shape(solo[0])
    for a, b in zip(results[1].candidates, solo[0].candidates, strict=True):
        assert a.step_scores == pytest.approx(b.step_scores, abs=1e-4)

    # costs add up to what the policy and PRM reported, and the calls were batched
    costs = [r.cost for r in results]
    assert sum(c.policy_generated_tokens for c in costs) == policy.generated
    assert sum(c.policy_prefill_tokens for c in costs) == policy.prefill
    assert sum(c.prm_tokens for c in costs) == prm.prm_tokens
    assert max(c.policy_calls for c in costs) == policy.calls
    assert max(c.prm_calls for c in costs) == prm.calls

    delimiter = kwargs.get("step_delimiter", "\n\n")
    for problem, res in zip(PROBLEMS, results, strict=True):
        chosen = res.candidates[res.chosen]
        assert res.text == delimiter.join(chosen.steps)
        # stored step scores are the PRM's scores of exactly those steps
        [check] = prm.inner.score([PRMQuery(problem.question, tuple(chosen.steps))])
        assert chosen.step_scores == pytest.approx(list(check.scores), abs=1e-4)
        assert chosen.score == pytest.approx(aggregate(check.scores, "min"), abs=1e-4)
        assert res.cost.unique_tokens > 0 and res.cost.unique_prompt_tokens >= policy.count_tokens(problem.prompt)
