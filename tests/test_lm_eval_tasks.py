"""The shipped lm-eval tasks on fixture rows in the upstream formats: loading, prompts,
PRM fields, and metrics on answers known to be right and wrong."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path

import lm_eval
import pytest
from lm_eval.tasks import TaskManager

from prm_plugin import task_configs
from prm_plugin.grading import humaneval, livecodebench
from prm_plugin.grading import math as _math
from prm_plugin.integrations.lm_eval import PRMGuidedLM
from prm_plugin.search import Candidate, Cost, SearchResult
from prm_plugin.strategy import Strategy
from prm_plugin.task_configs.livecodebench_prm import utils as lcb
from prm_plugin.task_configs.math500_prm import utils as math500

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
ROWS = {name: [json.loads(x) for x in (FIXTURES / f"{name}.jsonl").read_text().splitlines()]
        for name in ("math500", "humanevalplus", "livecodebench")}


@pytest.fixture
def fixture_data(monkeypatch):
    monkeypatch.setenv("PRM_PLUGIN_DATA_MATH500_PRM", str(FIXTURES / "math500.jsonl"))
    monkeypatch.setenv("PRM_PLUGIN_DATA_HUMANEVAL_PLUS_PRM", str(FIXTURES / "humanevalplus.jsonl"))
    monkeypatch.setenv("PRM_PLUGIN_DATA_LIVECODEBENCH_PRM", str(FIXTURES / "livecodebench.jsonl"))


def _manager() -> TaskManager:
    return TaskManager(include_path=task_configs.path(), include_defaults=False)


# -- math --------------------------------------------------------------------------------
@pytest.mark.parametrize(("completion", "gold", "verify", "exact"), [
    ("Step.\n\nSo $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.", "\\left( 3, \\frac{\\pi}{2} \\right)", 1, 1),
    ("The point is \\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)", 1, 0),
    ("Difference of squares.\n\n\\boxed{26,000}", "26000", 1, 1),
    ("\\boxed{1.5}", "\\frac{3}{2}", 1, 0),
    ("\\boxed{\\frac32}", "\\frac{3}{2}", 1, 1),
    ("\\boxed{55}", "55^\\circ", 1, 1),
    ("\\boxed{56}", "55^\\circ", 0, 0),
    ("The answer is 3.", "\\frac{3}{2}", 0, 0),
    ("no answer at all", "26000", 0, 0),
])
def test_math_metrics_on_known_right_and_wrong_answers(completion, gold, verify, exact):
    assert _math.score(completion, gold) == {"math_verify": float(verify), "exact_match": float(exact)}


def test_minerva_normalisation_rules():
    norm = _math.minerva_normalize
    assert norm("\\text{(A)}") == "(A)"
    assert norm("5 \\text{ cm}") == "5" and norm("\\$1,000") == "1000"
    assert norm("\\sqrt3") == "\\sqrt{3}" and norm("x = \\dfrac{1}{2}") == "\\dfrac{1}{2}"
    assert norm("\\left( 3, \\frac{\\pi}{2} \\right)") == "\\left(3,\\frac{\\pi}{2}\\right)"  # "ft" kept


def test_math500_task_loads_fixture_with_prm_fields(fixture_data):
    task = _manager().load(["math500_prm"])["tasks"]["math500_prm"]
    docs = list(task.test_docs())
    assert len(docs) == len(ROWS["math500"])
    assert docs[0]["prm_question"] == ROWS["math500"][0]["problem"] and docs[0]["prm_domain"] == "math"
    context = task.fewshot_context(docs[1], num_fewshot=0)
    assert context.startswith("Please reason step by step") and ROWS["math500"][1]["problem"] in context
    assert task.config.generation_kwargs["max_gen_toks"] == 2048


def test_data_override_must_exist(monkeypatch):
    monkeypatch.setenv("PRM_PLUGIN_DATA_MATH500_PRM", "/no/such/file.jsonl")
    with pytest.raises(FileNotFoundError, match="PRM_PLUGIN_DATA_MATH500_PRM"):
        math500.load_dataset()


# -- HumanEval+ ------------------------------------------------------------------------------
def test_humaneval_tests_are_parsed_from_the_evalplus_check_function():
    tests = humaneval.humaneval_tests(ROWS["humanevalplus"][1]["test"])
    assert tests.inputs[0] == [3.5] and tests.expected[0] == 0.5 and tests.atol == 0 and not tests.poly_oracle
    zero = humaneval.humaneval_tests(ROWS["humanevalplus"][2]["test"])
    assert zero.poly_oracle and zero.atol == 0.0001 and zero.inputs[0] == [[1, 2]]


HUMANEVAL_ANSWERS = [
    # (task index, completion, passes)
    (0, ROWS["humanevalplus"][0]["canonical_solution"], True),
    (0, "    return False\n", False),
    (0, "```python\ndef has_close_elements(numbers, threshold):\n    return any(abs(a - b) < threshold "
        "for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)\n\nprint('demo')\n```", True),
    (1, "    return number - int(number)\n", True),  # equal within EvalPlus's float tolerance
    (1, "    return round(number % 1.0, 1)\n", False),
    (2, ROWS["humanevalplus"][2]["canonical_solution"], True),
    (2, "    return 0.0\n", False),
    (0, "import sys\nsys.exit(0)\n", False),  # exiting early is not passing
]


@pytest.mark.parametrize(("index", "completion", "passes"), HUMANEVAL_ANSWERS)
def test_humaneval_pass_at_1_on_known_answers(index, completion, passes):
    from prm_plugin.task_configs.humaneval_plus_prm import utils

    doc = ROWS["humanevalplus"][index]
    assert utils.process_results(doc, [completion]) == {"pass@1": float(passes)}


# -- LiveCodeBench -----------------------------------------------------------------------
def test_lcb_release_files_and_date_window():
    assert livecodebench.release_files("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert livecodebench.release_files("v4") == ["test4.jsonl"] and len(livecodebench.release_files("release_latest")) == 6
    with pytest.raises(ValueError, match="Unknown LiveCodeBench release"):
        livecodebench.release_files("release_v0")
    assert livecodebench.in_window("2024-09-14T00:00:00", "2024-08-01", "2025-02-01")
    assert not livecodebench.in_window("2023-04-29T00:00:00", "2024-08-01", None)


def test_lcb_private_tests_decode_and_refuse_code_in_pickles():
    tests = livecodebench.decode_private_tests(ROWS["livecodebench"][0]["private_test_cases"])
    assert tests[0] == {"input": "100 250\n", "output": "350\n", "testtype": "stdin"}
    hostile = base64.b64encode(zlib.compress(pickle.dumps(print))).decode()
    with pytest.raises(pickle.UnpicklingError, match="plain data only"):
        livecodebench.decode_private_tests(hostile)
    kind, cases, name = livecodebench.lcb_tests(ROWS["livecodebench"][1])
    assert (kind, name) == ("functional", "topKSum") and cases[0] == {"input": [[1, 5, 3], 2], "output": 8}


def test_lcb_task_keeps_the_date_window_and_builds_its_prompt(fixture_data):
    task = _manager().load(["livecodebench_prm"])["tasks"]["livecodebench_prm"]
    docs = list(task.test_docs())
    assert [d["question_id"] for d in docs] == ["abc371_a", "3400"]  # the 2023 problem is outside the window
    text = task.doc_to_text(docs[1])
    assert text.startswith("### Question:\n") and "class Solution:" in text and text.endswith(
        "### Answer: (use the provided format with backticks)\n\n")
    assert "Read the inputs from stdin" in task.doc_to_text(docs[0])
    assert docs[0]["prm_domain"] == "code"


LCB_STDIN_RIGHT = "Here:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\nDone."
LCB_FN_RIGHT = ("```python\nclass Solution:\n    def topKSum(self, nums: List[int], k: int) -> int:\n"
                "        return sum(nlargest(k, nums))\n```")  # List and nlargest come from LCB's prelude


@pytest.mark.parametrize(("index", "completion", "passes"), [
    (0, LCB_STDIN_RIGHT, True),
    (0, "```python\nprint(3 + 5)\n```", False),  # passes the public test only
    (0, "print(8)", False),  # no code block: LiveCodeBench extracts nothing
    (1, LCB_FN_RIGHT, True),
    (1, LCB_FN_RIGHT.replace("nlargest", "nsmallest"), False),
])
def test_lcb_pass_at_1_on_known_answers(index, completion, passes):
    assert lcb.process_results(ROWS["livecodebench"][index], [completion]) == {"pass@1": float(passes)}


# -- all three through lm-eval's evaluator ----------------------------------------------
class OracleStrategy(Strategy):
    """Answers each problem with its known-right completion, taken from the doc."""

    name = "oracle"
    needs_prm = False

    def search(self, problems, policy, prm, budget):
        out = []
        for p in problems:
            doc = p.doc or {}
            if "solution" in doc:
                text = doc["solution"]
            elif "canonical_solution" in doc:
                text = doc["canonical_solution"]
            else:
                text = LCB_STDIN_RIGHT if doc["question_id"] == "abc371_a" else LCB_FN_RIGHT
            out.append(SearchResult(text=text, candidates=[Candidate(steps=[text])], chosen=0, cost=Cost()))
        return out


def test_all_tasks_score_right_answers_through_the_evaluator(fixture_data):
    from lm_eval_fakes import NoCallPolicy

    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy=OracleStrategy())
    out = lm_eval.simple_evaluate(model=lm, tasks=["math500_prm", "humaneval_plus_prm", "livecodebench_prm"],
                                  task_manager=_manager(), confirm_run_unsafe_code=True, bootstrap_iters=0)
    res = out["results"]
    assert res["math500_prm"]["math_verify,none"] == 1.0 and res["math500_prm"]["exact_match,none"] == 1.0
    assert res["humaneval_plus_prm"]["pass@1,none"] == 1.0
    assert res["livecodebench_prm"]["pass@1,none"] == 1.0


# -- the synthetic world ---------------------------------------------------------------------
@pytest.mark.parametrize(("task", "domain", "world_domain"), [("arith_prm", "math", "arith"),
                                                               ("codelike_prm", "math", "codelike")])
def test_world_tasks_grade_by_the_worlds_ground_truth(tmp_path, monkeypatch, task, domain, world_domain):
    from prm_plugin.world import make_set

    rows = [p.to_json() for p in make_set(world_domain, 3, seed=7)]
    data = tmp_path / f"{task}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv(f"PRM_PLUGIN_DATA_{task.upper()}", str(data))
    t = _manager().load([task])["tasks"][task]
    docs = list(t.test_docs())
    assert docs[0]["prm_question"] == rows[0]["question"] and docs[0]["prm_domain"] == domain
    assert t.doc_to_text(docs[0]) == rows[0]["question"]
    right = "\n\n".join(docs[0]["steps"])
    wrong = right.replace(f"{{{rows[0]['answer']}}}", f"{{{int(rows[0]['answer']) + 1}}}")
    assert t.process_results(docs[0], [right]) == {"acc": 1.0}
    assert t.process_results(docs[0], [wrong]) == {"acc": 0.0}
