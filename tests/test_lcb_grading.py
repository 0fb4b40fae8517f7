"""LiveCodeBench verdicts from the project's sandboxed grader on known-good and known-bad
programs (stdin and functional, pickled and JSON private tests), cross-checked against
LiveCodeBench's own codegen_metrics when nvidia-livecodebench is installed, and pass@k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prm_plugin.grading import livecodebench as _code
from prm_plugin.integrations import livecodebench as lcb

FIXTURES = Path(__file__).parent / "fixtures" / "lcb"
SOLUTIONS: dict[str, dict[str, list[str]]] = json.loads((FIXTURES / "solutions.json").read_text())


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return lcb.load_problems(lcb.Source(data_files=[str(FIXTURES / "code_generation_lite.jsonl")], trust_pickle=True))


def _codes(problems: list[dict]) -> list[list[str]]:
    return [SOLUTIONS[str(p["question_id"])]["good"] + SOLUTIONS[str(p["question_id"])]["bad"] for p in problems]


def _expected(problems: list[dict]) -> list[list[bool]]:
    return [[True] * len(SOLUTIONS[str(p["question_id"])]["good"]) + [False] * len(SOLUTIONS[str(p["question_id"])]["bad"])
            for p in problems]


def test_known_good_and_bad_programs(problems):
    # bad ones: wrong answer, crash, empty output, wrong method name, i<=j, unsquared, n*n, print(2);
    # good ones include a functional answer returned as a tuple and stdout with trailing spaces
    assert lcb.grade(problems, _codes(problems), workers=2) == _expected(problems)


def test_verdicts_match_livecodebench_codegen_metrics(problems):
    metrics_module = pytest.importorskip(
        "livecodebench.evaluation",
        reason="nvidia-livecodebench is not installed (pip install --no-deps nvidia-livecodebench)")
    samples, generations, owners = [], [], []
    for i, p in enumerate(problems):
        tests = json.loads(p["public_test_cases"]) + _code.decode_private_tests(p["private_test_cases"])
        sample = {"input_output": json.dumps({"inputs": [t["input"] for t in tests],
                                              "outputs": [t["output"] for t in tests],
                                              "fn_name": json.loads(p["metadata"]).get("func_name")})}
        for code in _codes([p])[0]:  # one generation per entry: codegen_metrics wants equal-length lists
            samples.append(sample)
            generations.append([code])
            owners.append(i)
    _, results, _ = metrics_module.codegen_metrics(samples, generations, k_list=[1], num_process_evaluate=2,
                                                   timeout=int(_code.LCB_TIMEOUT_S))
    theirs: list[list[bool]] = [[] for _ in problems]
    for k, owner in enumerate(owners):
        theirs[owner].append(all(r is True or (not isinstance(r, bool) and r > 0) for r in results[k][0]))
    assert theirs == lcb.grade(problems, _codes(problems), workers=2) == _expected(problems)


def test_metrics_pass_at_k_and_difficulty(problems):
    graded = [[True, False], [False, False], [True, True], [False, True], [True, True]]
    m = lcb.metrics(problems, graded)
    assert m["pass@1"] == pytest.approx((0.5 + 0 + 1 + 0.5 + 1) / 5)
    assert "pass@5" not in m  # only 2 samples per problem
    assert m["detail"]["pass@1"]["3580"] == 0.0
    # difficulty: abc380_a easy, 3580 medium, 3581 easy, 2033C medium, abc300_a easy
    assert m["pass@1_by_difficulty"] == pytest.approx({"easy": (0.5 + 1 + 1) / 3, "medium": 0.25})
    with pytest.raises(ValueError, match="No problems to score"):
        lcb.metrics([], [])


def test_custom_output_format_round_trip(tmp_path):
    outputs = lcb.custom_outputs(["b2", "a1", "10"], [["x"], ["y", "z"], []])
    assert [o["question_id"] for o in outputs] == ["10", "a1", "b2"]  # sorted as LiveCodeBench sorts
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(outputs))
    assert lcb.read_custom_outputs(path) == {"10": [], "a1": ["y", "z"], "b2": ["x"]}
    path.write_text(json.dumps([{"question_id": "a1", "code": "y"}]))
    with pytest.raises(ValueError, match="code_list"):
        lcb.read_custom_outputs(path)
