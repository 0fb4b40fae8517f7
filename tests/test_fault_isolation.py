"""One bad problem never ends a harness run: a fault while searching one problem is
recorded for it (empty answer, ``error`` in its trace, ``failures`` in the cost summary,
left out of the resume store), the other problems' answers are those of a clean run,
``strict=true`` fails fast, and strategy bugs still stop the run with their traceback."""

from __future__ import annotations

import json
from pathlib import Path

import lm_eval
import pytest
from fakes import FakePolicy, FakePRM
from lm_eval.tasks import TaskManager
from lm_eval_fakes import ArithPolicy, ArithPRM

from prm_plugin.integrations.faults import FAILURES, describe, is_fault
from prm_plugin.integrations.lm_eval import PRMGuidedLM
from prm_plugin.integrations.search_session import SearchSession
from prm_plugin.sandbox import SandboxError
from prm_plugin.search import Problem
from prm_plugin.search_run import BackendError
from prm_plugin.strategies.bon import BestOfN

TASKS = str(Path(__file__).parent / "fixtures" / "tasks")
QUESTIONS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]


def problems() -> list[Problem]:
    return [Problem(prompt=f"Q: What is {a} + {b}?\nA:", question=f"What is {a} + {b}?", uid=f"p{k}")
            for k, (a, b) in enumerate(QUESTIONS)]


def session(policy, **args) -> SearchSession:
    return SearchSession.build({"strategy": "bon", "n": "3", **args}, harness="test", policy=policy, prm=ArithPRM())


def test_the_faulty_problem_is_isolated_and_the_others_match_a_clean_run() -> None:
    clean = session(ArithPolicy()).search(problems())
    failing = ArithPolicy(fail_on="5 + 6")
    s = session(failing)
    got = s.search(problems())
    assert [r.text for k, r in enumerate(got) if k != 2] == [r.text for k, r in enumerate(clean) if k != 2]
    assert [r.to_json()["candidates"] for k, r in enumerate(got) if k != 2] == \
        [r.to_json()["candidates"] for k, r in enumerate(clean) if k != 2]
    bad = got[2]
    assert bad.text == "" and bad.chosen is None and bad.candidates == []
    assert bad.error is not None and bad.error["where"] == "policy" and bad.error["type"] == "RuntimeError"
    assert "simulated backend failure" in bad.error["message"] and "Traceback" in bad.error["traceback"]
    assert json.loads(json.dumps(bad.to_json()))["error"]["message"] == bad.error["message"]
    assert [f["uid"] for f in s.failures] == ["p2"]
    # isolated by halving: [0..4] fails, [0, 1] passes, [2, 3, 4] fails, [2] fails, [3, 4] passes
    assert [len(c) for c in failing.calls] == [5, 2, 3, 1, 2]


def test_strict_reraises_the_first_fault() -> None:
    with pytest.raises(BackendError, match="policy failed.*simulated backend failure"):
        session(ArithPolicy(fail_on="5 + 6"), strict="true").search(problems())


def test_a_strategy_bug_stops_the_run_with_its_own_exception() -> None:
    class Broken(BestOfN):
        def search(self, problems, policy, prm, budget):
            raise KeyError("a bug in the strategy")

    s = SearchSession.build({}, harness="test", policy=ArithPolicy(), prm=ArithPRM(), strategy=Broken())
    with pytest.raises(KeyError, match="a bug in the strategy"):
        s.search(problems())
    assert s.failures == []


def test_which_errors_are_faults() -> None:
    cause = ValueError("bad input")
    wrapped = BackendError("prm", [0], [], cause)
    wrapped.__cause__ = cause
    assert is_fault(wrapped) and is_fault(SandboxError("zygote gone"))
    assert not any(is_fault(e) for e in (TypeError("x"), AttributeError("x"), AssertionError(), KeyError("k"),
                                          ValueError("beam needs Budget.n to be a multiple"), RuntimeError("x")))
    assert describe(wrapped)["type"] == "ValueError" and describe(wrapped)["where"] == "prm"


def test_a_fault_in_a_later_round_is_isolated_too() -> None:
    """The fake policy serves a tree; one problem's step-2 prefix is missing (KeyError inside
    propose, in the second round of a beam search)."""
    tree = {"A:": [("a", 1, "step")], "A:a\n\n": [("a2", 1, "eos")], "B:": [("b", 1, "step")]}
    s = SearchSession.build({"strategy": "beam", "n": "1", "beam_width": "1"}, harness="test",
                            policy=FakePolicy(tree), prm=FakePRM({}, default=0.5))
    a, b = s.search([Problem(prompt="A:", question="a", uid="A"), Problem(prompt="B:", question="b", uid="B")])
    assert a.text == "a\n\na2" and a.error is None
    assert b.text == "" and b.error["type"] == "KeyError" and "B:b" in b.error["message"]


def _evaluate(lm: PRMGuidedLM) -> dict:
    out = lm_eval.simple_evaluate(model=lm, tasks=["tiny_prm"], task_manager=TaskManager(include_path=TASKS),
                                  bootstrap_iters=0, log_samples=True)
    assert out is not None
    return out


def _answers(out: dict) -> dict[int, str]:
    return {s["doc_id"]: s["resps"][0][0] for s in out["samples"]["tiny_prm"]}


def test_lm_eval_run_records_the_failure_and_resume_retries_only_it(tmp_path) -> None:
    before = len(FAILURES.failures)
    clean = _answers(_evaluate(PRMGuidedLM(policy=ArithPolicy(), prm=ArithPRM(), n=3, search_batch_size=4)))
    lm = PRMGuidedLM(policy=ArithPolicy(fail_on="5 + 6"), prm=ArithPRM(), n=3, search_batch_size=4,
                     trace_path=str(tmp_path))
    out = _evaluate(lm)
    got = _answers(out)
    assert got[2] == "" and {k: v for k, v in got.items() if k != 2} == {k: v for k, v in clean.items() if k != 2}
    summary = lm.get_model_info()["prm_guided"]["cost_summary"]["tiny_prm"]
    assert summary["failures"] == 1 and summary["problems"] == 6
    traces = [json.loads(x) for x in (tmp_path / "tiny_prm.traces.jsonl").read_text().splitlines()]
    [failed] = [t for t in traces if "error" in t]
    assert failed["doc_id"] == 2 and failed["error"]["where"] == "policy" and failed["text"] == ""
    assert len(lm.store) == 5 and [f["uid"] for f in FAILURES.failures[before:]] == ["tiny_prm/2/0"]
    assert FAILURES.exit_status(before) == 3 and FAILURES.exit_status(len(FAILURES.failures)) == 0

    fixed = ArithPolicy()
    resumed = _evaluate(PRMGuidedLM(policy=fixed, prm=ArithPRM(), n=3, search_batch_size=4,
                                    trace_path=str(tmp_path)))
    assert _answers(resumed) == clean
    assert [len(c) for c in fixed.calls] == [1] and "5 + 6" in fixed.calls[0][0]  # only the failed one ran


def test_sigterm_is_an_interrupt_deferred_past_critical_writes() -> None:
    import os
    import signal

    from prm_plugin.integrations.faults import interruptible

    written = []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), interruptible() as guard:
        with guard.critical():
            os.kill(os.getpid(), signal.SIGTERM)
            written.append("the whole batch")  # the signal waits for the write to finish
        written.append("never")
    assert written == ["the whole batch"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_cli_flags_map_onto_the_settings() -> None:
    from prm_plugin.integrations._cli_common import search_args
    from prm_plugin.integrations.lcb_cli import build_parser

    ns = build_parser().parse_args(["--output", "x", "--on-overflow", "skip", "--strict"])
    assert search_args(ns) == {"on_overflow": "skip", "strict": True}
    assert search_args(build_parser().parse_args(["--output", "x"])) == {}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--output", "x", "--on-overflow", "drop"])


def test_worked_examples_in_the_docstrings() -> None:
    import doctest

    from prm_plugin import search
    from prm_plugin.integrations import lm_eval_config, lm_eval_jobs

    for module in (search, lm_eval_config, lm_eval_jobs):
        assert doctest.testmod(module).failed == 0, module.__name__
