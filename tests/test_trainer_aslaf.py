"""Monte-Carlo step labels and consensus filtering with scripted annotator policies."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from prm_plugin.grading.code import code_checker
from prm_plugin.grading.math import math_checker
from prm_plugin.search import PrefixProposals, Proposal
from prm_plugin.trainers.aslaf import ConsensusConfig, first_error, label_and_filter

RIGHT, WRONG = "so \\boxed{4}", "so \\boxed{7}"


class ScriptedAnnotator:
    """Rollouts are known in advance: a prefix containing one of ``wrong_markers`` never
    recovers; otherwise the first ``good`` of the k rollouts reach the answer 4."""

    def __init__(self, name: str, wrong_markers: Sequence[str], good: int) -> None:
        self.name = name
        self.wrong_markers = tuple(wrong_markers)
        self.good = good
        self.calls: list[list[str]] = []

    def propose(self, prefixes, *, n, stop, final_stop=(), max_tokens, temperature, top_p=1.0, seed=None):
        self.calls.append(list(prefixes))
        out = []
        for prefix in prefixes:
            bad = any(m in prefix for m in self.wrong_markers)
            texts = [WRONG if bad or j >= self.good else RIGHT for j in range(n)]
            out.append(PrefixProposals(tuple(Proposal(t, 3, "eos") for t in texts), prefill_tokens=len(prefix)))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text)


ROWS = [
    {"prompt": "What is 2+2?", "completions": ["2 + 2 = 4", "so \\boxed{4}"], "answer": "4"},
    {"prompt": "What is 2+2?", "completions": ["2 + 2 = 5 ERR", "so \\boxed{5}"], "answer": "4"},
    # annotator B also distrusts 'ODD' steps: the annotators disagree on this row
    {"prompt": "What is 2+2?", "completions": ["2 * 2 = 4 ODD", "4 is even", "so \\boxed{4}"], "answer": "4"},
    {"prompt": "What is 2+2?", "completions": ["2 + 2 = 4", "so 4 + 0 = 3 ERR", "so \\boxed{3}"], "answer": "4"},
]


@pytest.fixture
def annotators() -> tuple[ScriptedAnnotator, ScriptedAnnotator]:
    return ScriptedAnnotator("A", ["ERR"], good=3), ScriptedAnnotator("B", ["ERR", "ODD"], good=4)


def test_consensus_keeps_exactly_the_agreed_rows(annotators) -> None:
    a, b = annotators
    kept, report = label_and_filter(ROWS, [a, b], config=ConsensusConfig(k=4, batch_size=3), checker=math_checker)
    assert [r["completions"] for r in kept] == [ROWS[0]["completions"], ROWS[1]["completions"],
                                                ROWS[3]["completions"]]
    assert report.dropped_indices == [2]
    assert (report.total, report.kept, report.dropped) == (4, 3, 1)
    assert report.all_agree_rate == 0.75
    assert report.pairwise_agreement == {"A~B": 0.75}
    # steps where both annotators give the same verdict: all but the first two of row 2
    assert report.step_agreement_rate == pytest.approx(8 / 10)
    first = {tuple(r["completions"]): r["first_error"] for r in kept}
    assert list(first.values()) == [-1, 0, 1]


def test_soft_labels_are_pooled_rollout_fractions(annotators) -> None:
    a, b = annotators
    kept, _ = label_and_filter(ROWS, [a, b], config=ConsensusConfig(k=4), checker=math_checker)
    # row 0, step 0: A reaches the answer in 3 of 4 rollouts, B in 4 of 4; the last step is
    # labelled by the solution's own answer (correct)
    assert kept[0]["labels"] == pytest.approx([(3 / 4 + 1) / 2, 1.0])
    assert kept[0]["annotator_labels"] == [[0.75, 1.0], [1.0, 1.0]]
    assert kept[2]["labels"] == pytest.approx([(3 / 4 + 1) / 2, 0.0, 0.0])


def test_hard_labels_follow_the_agreed_first_error(annotators) -> None:
    a, b = annotators
    kept, _ = label_and_filter(ROWS, [a, b], config=ConsensusConfig(k=4, labels="hard"), checker=math_checker)
    assert [r["labels"] for r in kept] == [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0, 0.0]]


def test_policy_calls_are_batched_over_solutions_and_prefixes(annotators) -> None:
    a, b = annotators
    label_and_filter(ROWS, [a, b], config=ConsensusConfig(k=2, batch_size=3), checker=math_checker)
    # rows 0-2 in one call (1 + 1 + 2 prefixes: the last step needs no rollouts), row 3 in another
    assert [len(c) for c in a.calls] == [4, 2] and [len(c) for c in b.calls] == [4, 2]
    assert a.calls[0][0] == "What is 2+2?\n\n2 + 2 = 4\n\n"
    assert a.calls[0][2] == "What is 2+2?\n\n2 * 2 = 4 ODD\n\n"
    assert a.calls[0][3] == "What is 2+2?\n\n2 * 2 = 4 ODD\n\n4 is even\n\n"


def test_rollouts_of_every_step_when_the_last_is_not_labelled_by_its_answer(annotators) -> None:
    a, _ = annotators
    label_and_filter(ROWS[:1], [a], config=ConsensusConfig(k=1, label_last_step_by_answer=False), checker=math_checker)
    assert len(a.calls[0]) == 2


def test_custom_checker_and_threshold() -> None:
    lenient = ScriptedAnnotator("L", [], good=1)
    rows = [{"prompt": "Q", "completions": ["a", "b", "c"], "answer": "4"}]
    checker_calls = []

    def checker(solution: str, reference: str) -> bool:
        checker_calls.append(solution)
        return "\\boxed{4}" in solution

    # 1 of 4 rollouts succeeds: correct under the default threshold 0, an error above 0.5
    kept, _ = label_and_filter(rows, [lenient], config=ConsensusConfig(k=4, label_last_step_by_answer=False),
                               checker=checker)
    assert kept[0]["first_error"] == -1 and kept[0]["labels"] == [0.25, 0.25, 0.25]
    kept, _ = label_and_filter(rows, [lenient], config=ConsensusConfig(
        k=4, correct_threshold=0.5, label_last_step_by_answer=False), checker=checker)
    assert kept[0]["first_error"] == 0
    assert checker_calls[0] == "a\n\n" + RIGHT  # the checker sees the solution, not the prompt


def test_contract_and_input_errors(annotators) -> None:
    a, _ = annotators

    class Broken(ScriptedAnnotator):
        def propose(self, prefixes, **kw):
            return super().propose(prefixes, **kw)[:-1]

    with pytest.raises(ValueError, match="Annotator 'X' returned 1 groups for 2 prefixes"):
        label_and_filter(ROWS[:2], [Broken("X", [], 1)], config=ConsensusConfig(k=1), checker=math_checker)
    with pytest.raises(ValueError, match="Row 0: needs non-empty 'completions' and a reference answer in 'answer'"):
        label_and_filter([{"prompt": "Q", "completions": ["a"]}], [a], checker=math_checker)
    with pytest.raises(ValueError, match="at least one annotator"):
        label_and_filter(ROWS, [], checker=math_checker)
    with pytest.raises(ValueError, match="labels must be 'soft' or 'hard'"):
        ConsensusConfig(labels="medium")
    assert first_error([0.5, 0.0, 1.0], 0.0) == 1


class CodeAnnotator:
    """Finishes any prefix with a program; a prefix that chose to subtract never recovers."""

    name = "coder"

    def propose(self, prefixes, *, n, stop, final_stop=(), max_tokens, temperature, top_p=1.0, seed=None):
        out = []
        for prefix in prefixes:
            op = "-" if "subtract" in prefix else "*"
            code = f"```python\nx = int(input())\nprint(x {op} 2)\n```"
            out.append(PrefixProposals(tuple(Proposal(code, 9, "eos") for _ in range(n)), prefill_tokens=1))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text)


def test_code_rows_are_labelled_by_running_tests_in_the_sandbox() -> None:
    rows = [
        {"prompt": "Double a number.", "completions": ["Read x.", "Multiply it by 2."],
         "tests": [["3\n", "6\n"], ["5\n", "10\n"]]},
        {"prompt": "Double a number.", "completions": ["Read x.", "Then subtract 2."],
         "tests": [["3\n", "6\n"]]},
    ]
    cfg = ConsensusConfig(k=1, answer_key="tests", label_last_step_by_answer=False)
    kept, report = label_and_filter(rows, [CodeAnnotator()], config=cfg, checker=code_checker("stdio"))
    assert [r["labels"] for r in kept] == [[1.0, 1.0], [1.0, 0.0]]
    assert report.kept == 2


def test_stopping_at_the_first_error_gives_the_same_hard_labels_with_fewer_rollouts() -> None:
    rows = ROWS + [{"prompt": "What is 2+2?", "completions": ["2 + 2 = 9 ERR", "9 - 0 = 9", "9 + 0 = 9",
                                                              "so \\boxed{9}"], "answer": "4"}]
    full_a, full_b = ScriptedAnnotator("A", ["ERR"], good=3), ScriptedAnnotator("B", ["ERR", "ODD"], good=4)
    lazy_a, lazy_b = ScriptedAnnotator("A", ["ERR"], good=3), ScriptedAnnotator("B", ["ERR", "ODD"], good=4)
    full, full_report = label_and_filter(rows, [full_a, full_b], config=ConsensusConfig(k=4, labels="hard"), checker=math_checker)
    lazy, lazy_report = label_and_filter(
        rows, [lazy_a, lazy_b], config=ConsensusConfig(k=4, labels="hard", stop_at_first_error=True)
    , checker=math_checker)
    assert [(r["labels"], r["first_error"]) for r in lazy] == [(r["labels"], r["first_error"]) for r in full]
    assert lazy_report.dropped_indices == full_report.dropped_indices == [2]
    # the last row errs at step 0: its steps 1 and 2 are never rolled out, by either annotator
    lazy_prefixes = [p for call in lazy_a.calls + lazy_b.calls for p in call]
    full_prefixes = [p for call in full_a.calls + full_b.calls for p in call]
    assert not any("9 - 0 = 9" in p for p in lazy_prefixes)
    assert sum("9 - 0 = 9" in p for p in full_prefixes) == 4  # 2 prefixes x 2 annotators
    assert len(lazy_prefixes) < len(full_prefixes)
