"""The stock `evalplus.evaluate` console script with `--backend prm_guided`, and the
`prm-plugin evalplus` fallback, end to end in subprocesses, offline.

Data: EvalPlus's own override variables point at fixture files in its formats. The
policy is scripted (tests/fixtures/evalplus/scripted.py) so the solutions, and so
EvalPlus's verdicts, are known; everything else (the hook, the decoder, the search,
the PRM, EvalPlus's sanitizer, ground truth and sandboxed evaluation) is real.
Each run takes ~25 s of wall time, ~20 s of it EvalPlus's own idle progress-watcher
thread (it sleeps 20 s before the process may exit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import build_value_head_prm

from prm_plugin.integrations import _lm_eval_hook

FIXTURES = Path(__file__).parent / "fixtures" / "evalplus"
STOCK = Path(sys.executable).parent / "evalplus.evaluate"

HUMANEVAL_ANSWERS = {
    # passes the original tests, fails the plus input [[1.0, 2.0], 1.0] (`<=` where `<` is right)
    "def has_close_elements(": ["    sorted_numbers = sorted(numbers)\n    for i in range(len(sorted_numbers) - 1):\n"
                                "        if sorted_numbers[i + 1] - sorted_numbers[i] <= threshold:\n"
                                "            return True\n    return False\n"],
    "def truncate_number(": ["    return number % 1.0\n"],  # correct (float tolerance)
    # wrong on the original tests; right on this fixture's plus inputs (each gcd is the smaller number)
    "def greatest_common_divisor(": ["    return min(a, b)\n"],
}
MBPP_ANSWERS = {  # bon must pick the unmarked (correct) candidate; the marked ones are wrong
    "is_not_prime(": ["def is_not_prime(n):\n    # unverified\n    return n % 2 == 0\n",
                      "import math\n\n\ndef is_not_prime(n):\n    if n == 1:\n        return True\n"
                      "    for i in range(2, int(math.sqrt(n)) + 1):\n        if n % i == 0:\n"
                      "            return True\n    return False\n"],
    "square_perimeter(": ["def square_perimeter(a):\n    return 4 * a\n",
                          "def square_perimeter(a):\n    # unverified\n    return a * a\n"],
}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (_lm_eval_hook.DISABLE_ENV, _lm_eval_hook.EVALPLUS_DISABLE_ENV)}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(FIXTURES), HF_HUB_OFFLINE="1",
               HUMANEVAL_OVERRIDE_PATH=str(FIXTURES / "HumanEvalPlus.jsonl"),
               MBPP_OVERRIDE_PATH=str(FIXTURES / "MbppPlus.jsonl"), **extra)
    return env


def _results(root: Path, dataset: str) -> tuple[Path, dict]:
    (results,) = (root / dataset).glob("*_eval_results.json")
    return results, json.loads(results.read_text())


def _statuses(results: dict) -> dict[str, tuple[str, str]]:
    return {task: (r[0]["base_status"], r[0]["plus_status"]) for task, r in results["eval"].items()}


def test_stock_evalplus_evaluate_runs_the_search_and_grades_known_solutions(tmp_path):
    assert STOCK.is_file(), f"{STOCK} is missing: install the evalplus extra"
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(HUMANEVAL_ANSWERS))
    build_value_head_prm(tmp_path / "prm")
    # relative paths (from cwd): EvalPlus puts --model into a file name capped at 255 bytes
    model = "policy=scripted:ScriptedPolicy,policy.answers=answers.json,prm=prm,strategy=bon,n=2,dtype=float32,device=cpu"
    out = subprocess.run([str(STOCK), "--dataset", "humaneval", "--backend", "prm_guided", "--greedy",
                          "--model", model, "--root", str(tmp_path / "res"), "--parallel", "2"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    path, results = _results(tmp_path / "res", "humaneval")
    assert _statuses(results) == {"HumanEval/0": ("pass", "fail"), "HumanEval/2": ("pass", "pass"),
                                  "HumanEval/13": ("fail", "pass")}
    assert "humaneval+ (base + extra tests)\npass@1:\t0.333" in out.stdout
    stem = str(path)[: -len("_eval_results.json")]
    samples = [json.loads(x) for x in Path(stem + ".jsonl").read_text().splitlines()]
    assert "def truncate_number(number: float) -> float:" in samples[1]["solution"]  # prompt + completion
    traces = [json.loads(x) for x in Path(stem + ".prm_traces.jsonl").read_text().splitlines()]
    assert [t["task_id"] for t in traces] == ["HumanEval/0", "HumanEval/2", "HumanEval/13"]
    assert all(len(t["candidates"]) == 2 and t["cost"]["prm_tokens"] > 0 for t in traces)  # the real PRM ran
    run = json.loads(Path(stem + ".prm_run.json").read_text())
    assert run["config"]["strategy"] == "bon" and run["cost_summary"]["humaneval"]["problems"] == 3


def test_prm_plugin_evalplus_fallback_without_the_hook(tmp_path):
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(MBPP_ANSWERS))
    cmd = [sys.executable, "-m", "prm_plugin.cli", "evalplus", "--dataset", "mbpp", "--greedy",
           "--root", str(tmp_path / "res"), "--parallel", "2", "--policy-backend", "scripted:ScriptedPolicy",
           "--prm", "scripted:MarkerPRM", "--strategy", "bon", "--n", "2", "--model-args", f"policy.answers={answers}"]
    out = subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path, **{_lm_eval_hook.EVALPLUS_DISABLE_ENV: "1"}),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    path, results = _results(tmp_path / "res", "mbpp")
    assert _statuses(results) == {"Mbpp/3": ("pass", "pass"), "Mbpp/17": ("pass", "pass")}
    assert f"EvalPlus results: {path}" in out.stdout
    traces = [json.loads(x) for x in Path(str(path).replace("_eval_results.json", ".prm_traces.jsonl"))
              .read_text().splitlines()]
    assert [sorted(t["trace"]["scores"]) for t in traces] == [[0.1, 0.9], [0.1, 0.9]]


@pytest.mark.parametrize("argv", [["--dataset", "humaneval"], ["--dataset", "mbpp", "--policy", "x",
                                                                 "--model-args", "pretrained=y"]])
def test_fallback_flag_errors(argv):
    out = subprocess.run([sys.executable, "-m", "prm_plugin.cli", "evalplus", *argv], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert "give at least --policy" in out.stderr or "given both by --policy and in --model-args" in out.stderr
