"""`prm-plugin lcb` end to end: load, search, write LiveCodeBench's formats, grade, resume.

A scripted policy (tests/fixtures/evalplus/scripted.py) gives known answers, so pass@1 is
known; a run with the tiny HF policy and PRM covers the real model path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import build_causal_lm, build_value_head_prm

from prm_plugin import cli

FIXTURES = Path(__file__).parent / "fixtures"
DATA = str(FIXTURES / "lcb" / "code_generation_lite.jsonl")
SOLUTIONS: dict[str, dict[str, list[str]]] = json.loads((FIXTURES / "lcb" / "solutions.json").read_text())
WINDOW = ["--start-date", "2024-08-01", "--end-date", "2025-02-01"]  # drops abc300_a (2023)
KEYS = {"abc380_a": "You are given integers A and B", "3580": "Return the number of pairs",
        "3581": "return an array of the squares", "2033C": "the n-th triangular number"}


def fenced(code: str) -> str:
    return f"Here is the program.\n```python\n{code}\n```\n"


@pytest.fixture
def answers(tmp_path, monkeypatch) -> Path:
    """Per problem: a marked wrong answer and the right one (bon must pick the right one),
    except 3580, whose answers are both wrong."""
    monkeypatch.syspath_prepend(str(FIXTURES / "evalplus"))
    table = {}
    for qid, key in KEYS.items():
        good, bad = SOLUTIONS[qid]["good"][0], SOLUTIONS[qid]["bad"][0]
        table[key] = [fenced("# unverified\n" + bad), fenced(bad if qid == "3580" else good)]
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(table))
    return path


def scripted_args(answers: Path, out: Path, *extra: str) -> list[str]:
    return ["lcb", "--data-files", DATA, "--trust-pickle", *WINDOW, "--policy-backend", "scripted:ScriptedPolicy",
            "--prm", "scripted:MarkerPRM", "--strategy", "bon", "--n", "2", "--model-args",
            f"policy.answers={answers}", "--output", str(out), "--workers", "2", *extra]


def load(out: Path, name: str):
    return json.loads((out / name).read_text())


def test_generate_write_grade_and_resume(answers, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(scripted_args(answers, out)) == 0
    assert "pass@1 = 0.7500" in capsys.readouterr().out
    custom = load(out, "custom_outputs.json")
    assert [c["question_id"] for c in custom] == ["2033C", "3580", "3581", "abc380_a"]
    assert custom[3]["code_list"] == [SOLUTIONS["abc380_a"]["good"][0]]  # extracted from the fence
    report = load(out, "eval.json")
    assert report["pass@1"] == 0.75 and report["n_problems"] == 4 and report["num_samples"] == 1
    assert report["detail"]["pass@1"] == {"abc380_a": 1.0, "3580": 0.0, "3581": 1.0, "2033C": 1.0}
    assert report["config"]["strategy"] == "bon" and report["cost_summary"]["livecodebench"]["problems"] == 4
    per_problem = {p["question_id"]: p for p in load(out, "eval_all.json")}
    assert per_problem["3580"]["graded_list"] == [False] and per_problem["3581"]["difficulty"] == "easy"
    assert per_problem["2033C"]["output_list"][0].startswith("Here is the program.")
    traces = [json.loads(x) for x in (out / "traces.jsonl").read_text().splitlines()]
    assert sorted(t["trace"]["scores"] for t in traces) == [[0.1, 0.9]] * 4 and not any(t["resumed"] for t in traces)
    # a second run finds every search in the store
    assert cli.main(scripted_args(answers, out)) == 0
    traces = [json.loads(x) for x in (out / "traces.jsonl").read_text().splitlines()]
    assert all(t["resumed"] for t in traces) and load(out, "eval.json")["pass@1"] == 0.75


def test_num_samples_fills_code_lists_and_pass_at_k(answers, tmp_path):
    out = tmp_path / "run"
    assert cli.main(scripted_args(answers, out, "--num-samples", "2", "--no-resume")) == 0
    report = load(out, "eval.json")
    assert report["num_samples"] == 2 and report["pass@1"] == 0.75 and "pass@5" not in report
    assert all(len(c["code_list"]) == 2 for c in load(out, "custom_outputs.json"))


def test_custom_output_is_graded_without_a_model(tmp_path, capsys):
    ids = ["abc380_a", "3580", "3581", "2033C"]
    custom = [{"question_id": q, "code_list": SOLUTIONS[q]["good"] + SOLUTIONS[q]["bad"][:1]} for q in ids]
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(custom))
    out = tmp_path / "graded"
    assert cli.main(["lcb", "--data-files", DATA, "--trust-pickle", *WINDOW, "--custom-output", str(path),
                     "--output", str(out)]) == 0
    assert load(out, "eval.json")["pass@1"] == 0.5
    assert capsys.readouterr().out.startswith("LiveCodeBench release_v5 (4 problems")
    with pytest.raises(SystemExit, match="--strategy do nothing"):
        cli.main(["lcb", "--data-files", DATA, "--trust-pickle", *WINDOW, "--custom-output", str(path),
                  "--strategy", "beam", "--output", str(out)])
    path.write_text(json.dumps(custom[:3]))
    with pytest.raises(SystemExit, match=r"missing \['2033C'\]"):
        cli.main(["lcb", "--data-files", DATA, "--trust-pickle", *WINDOW, "--custom-output", str(path),
                  "--output", str(out)])


def test_local_pickled_data_needs_trust_pickle(tmp_path):
    with pytest.raises(SystemExit, match="--trust-pickle"):
        cli.main(["lcb", "--data-files", DATA, "--output", str(tmp_path), "--custom-output", "x.json"])


def test_tiny_hf_policy_and_prm(tmp_path):
    policy, prm = build_causal_lm(tmp_path / "policy"), build_value_head_prm(tmp_path / "prm")
    out = tmp_path / "run"
    # one problem (2033C: JSON private tests, so no --trust-pickle), 8 tokens per solution
    assert cli.main(["lcb", "--data-files", DATA, "--start-date", "2024-10-01", "--end-date", "2024-10-31",
                     "--policy", str(policy), "--prm", str(prm), "--strategy", "bon", "--n", "2",
                     "--max-tokens", "8", "--device", "cpu", "--dtype", "float32", "--output", str(out)]) == 0
    report = load(out, "eval.json")
    assert report["pass@1"] == 0.0 and report["n_problems"] == 1  # random weights write no fenced program
    (trace,) = [json.loads(x) for x in (out / "traces.jsonl").read_text().splitlines()]
    assert trace["question_id"] == "2033C" and len(trace["candidates"]) == 2
    assert trace["cost"]["prm_tokens"] > 0 and trace["cost"]["policy_generated_tokens"] > 0
    assert report["config"]["pretrained"] == str(policy) and report["config"]["prm"] == str(prm)


def test_flag_conflicts_are_errors(answers, tmp_path):
    with pytest.raises(SystemExit, match="given both by --strategy and in --model-args"):
        cli.main(scripted_args(answers, tmp_path, "--model-args", "strategy=beam"))


def test_a_search_fault_and_a_grading_crash_are_recorded_and_the_run_exits_3(answers, tmp_path, monkeypatch, capsys):
    """ScriptedPolicy raises KeyError on a prompt it has no answer for (3581 here); one
    program's grading crashes. Both are recorded, the others are graded as usual."""
    from prm_plugin.integrations import livecodebench as lcb

    table = json.loads(answers.read_text())
    del table[KEYS["3581"]]
    answers.write_text(json.dumps(table))
    real = lcb.lcb.grade_lcb

    def crashing(code, problem):
        if problem["question_id"] == "abc380_a":
            raise OSError("sandbox: cannot fork")
        return real(code, problem)

    monkeypatch.setattr(lcb.lcb, "grade_lcb", crashing)
    out = tmp_path / "run"
    assert cli.main(scripted_args(answers, out)) == 3
    err = capsys.readouterr().err
    assert "3581/0: policy error, KeyError" in err and "abc380_a: grading error, OSError" in err
    graded = {p["question_id"]: p["graded_list"] for p in load(out, "eval_all.json")}
    assert graded == {"2033C": [True], "3580": [False], "3581": [False], "abc380_a": [False]}
    traces = [json.loads(x) for x in (out / "traces.jsonl").read_text().splitlines()]
    assert [t["question_id"] for t in traces if "error" in t] == ["3581"]
    assert load(out, "eval.json")["cost_summary"]["livecodebench"]["failures"] == 1
    from prm_plugin.search_run import BackendError

    with pytest.raises(BackendError, match="policy failed.*KeyError.*no answer"):
        cli.main(scripted_args(answers, tmp_path / "strict", "--strict"))
