"""Long runs end to end, in subprocesses running the stock harness scripts: a failing
problem gives exit status 3 and a summary; SIGTERM mid-run leaves a valid partial trace
and a resume store from which a rerun completes with the same results; a data file
mixing normal and 20k-character questions completes with the long ones truncated and
counted; the issue's EvalPlus run on the shipped world completes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prm_plugin import world
from prm_plugin.integrations import _lm_eval_hook

TESTS = Path(__file__).parent
TASKS = str(TESTS / "fixtures" / "tasks")
BIN = Path(sys.executable).parent
LM_EVAL = shutil.which("lm_eval", path=str(BIN)) or "lm_eval"
ARGS = "policy=lm_eval_fakes:ArithPolicy,prm=lm_eval_fakes:ArithPRM,strategy=bon,n=3,search_batch_size=1"
WORLD = pytest.mark.skipif(not (world.paths()["prm"] / "config.json").exists(), reason="the world has not been built")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (_lm_eval_hook.DISABLE_ENV, _lm_eval_hook.EVALPLUS_DISABLE_ENV) and not k.startswith("PRM_TEST")}
    env.update(PYTHONPATH=str(TESTS), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", **extra)
    return env


def _lm_eval_cmd(traces: Path, out: Path) -> list[str]:
    return [LM_EVAL, "--model", "prm_guided", "--model_args", f"{ARGS},trace_path={traces}", "--tasks", "tiny_prm",
            "--include_path", TASKS, "--output_path", str(out), "--log_samples"]


def _outcome(out: Path) -> tuple[dict, list[tuple[int, list, list]]]:
    (results,) = out.rglob("results_*.json")
    (samples,) = out.rglob("samples_tiny_prm_*.jsonl")
    rows = sorted((s["doc_id"], s["resps"], s["filtered_resps"])
                  for s in map(json.loads, samples.read_text().splitlines()))
    return json.loads(results.read_text())["results"]["tiny_prm"], rows


def _stored(traces: Path) -> set[str]:
    uids = set()
    for path in (traces / "store").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "key" in entry:
                uids.add(entry["record"]["uid"])
    return uids


def test_a_failing_problem_gives_exit_status_3_a_summary_and_the_other_results(tmp_path):
    run = subprocess.run(_lm_eval_cmd(tmp_path / "traces", tmp_path / "out"), capture_output=True, text=True,
                         env=_env(PRM_TEST_FAIL_ON="5 + 6"), timeout=600, cwd=tmp_path)
    assert run.returncode == 3, run.stderr[-3000:]
    assert "1 problem(s) failed and got an empty answer" in run.stderr and "tiny_prm/2/0: policy error" in run.stderr
    metrics, rows = _outcome(tmp_path / "out")  # lm-eval wrote its results before the exit hook ran
    assert [r[0] for r in rows] == list(range(6)) and rows[2][1] == [[""]]
    assert metrics["exact_match,none"] == pytest.approx(5 / 6)
    cost = json.loads((tmp_path / "traces" / "cost_summary.json").read_text())["tiny_prm"]
    assert cost["failures"] == 1 and cost["problems"] == 6
    assert len(_stored(tmp_path / "traces")) == 5


def test_sigterm_midway_then_resume_gives_the_results_of_an_uninterrupted_run(tmp_path):
    clean = subprocess.run(_lm_eval_cmd(tmp_path / "t0", tmp_path / "o0"), capture_output=True, text=True,
                           env=_env(), timeout=600, cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr[-3000:]
    traces = tmp_path / "t1"
    first = subprocess.Popen(_lm_eval_cmd(traces, tmp_path / "o1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env(PRM_TEST_SLOW_SECONDS="0.7"), cwd=tmp_path)
    deadline = time.monotonic() + 300
    while len(_stored(traces)) < 2:
        assert first.poll() is None, f"the first run ended early: {first.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the first run never stored two results"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode != 0 and "Rerun with resume=true" in err, err[-2000:]
    stored = _stored(traces)
    assert 2 <= len(stored) < 6, "the signal should land midway"
    lines = [json.loads(x) for x in (traces / "tiny_prm.traces.jsonl").read_text().splitlines()]  # valid JSONL
    assert {f"tiny_prm/{t['doc_id']}/0" for t in lines} == stored  # exactly the finished problems
    assert not list((tmp_path / "o1").rglob("results_*.json"))

    log = tmp_path / "solved.log"
    second = subprocess.run(_lm_eval_cmd(traces, tmp_path / "o1"), capture_output=True, text=True,
                            env=_env(PRM_TEST_SOLVED_LOG=str(log)), timeout=600, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(log.read_text().splitlines()) == 6 - len(stored)  # only the unfinished problems ran
    assert _outcome(tmp_path / "o1") == _outcome(tmp_path / "o0")
    lines = [json.loads(x) for x in (traces / "tiny_prm.traces.jsonl").read_text().splitlines()]
    assert sorted(t["doc_id"] for t in lines) == list(range(6)) and sum(t["resumed"] for t in lines) == len(stored)


@WORLD
def test_a_mix_of_normal_and_20k_character_questions_completes_with_the_long_ones_cut_and_counted(tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import prm_plugin.task_configs as task_configs

    rows = [json.loads(x) for x in world.paths()["arith_test"].read_text().splitlines()[:4]]
    filler = "Background that does not matter for the sum. "
    for row in rows[1::2]:
        row["question"] = filler * (20_000 // len(filler) + 1) + row["question"]
        assert len(row["question"]) > 20_000
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = world.paths()
    args = {"pretrained": str(paths["policy"]), "prm": str(paths["prm"]), "strategy": "bon", "n": 2,
            "device": "cpu", "dtype": "float32", "trace_path": str(tmp_path / "traces"), "search_batch_size": 4}
    out = lm_eval.simple_evaluate(
        model="prm_guided", model_args=args, tasks=["arith_prm"], apply_chat_template=True, log_samples=False,
        task_manager=TaskManager(include_path=str(task_configs.path()), metadata={"arith_prm_data_files": str(data)}))
    assert out is not None and 0.0 <= out["results"]["arith_prm"]["acc,none"] <= 1.0
    cost = json.loads((tmp_path / "traces" / "cost_summary.json").read_text())["arith_prm"]
    assert cost["problems"] == 4 and cost["failures"] == 0 and cost["overflowed"] == 2
    assert cost["policy_truncated"] >= 2 and cost["prm_truncated"] >= 2
    traces = [json.loads(x) for x in (tmp_path / "traces" / "arith_prm.traces.jsonl").read_text().splitlines()]
    for t in traces:
        long_ = len(t["question"]) > 20_000
        c = t["cost"]
        assert (c["policy_truncated"] > 0 and c["prm_truncated"] > 0) == long_, t["doc_id"]
        assert (c["prm_cut_tokens"] > 15_000) == long_ and len(t["candidates"]) == 2
        assert all(s is not None for cand in t["candidates"] for s in cand["step_scores"])


@WORLD
@pytest.mark.slow
def test_the_issues_evalplus_run_on_the_world_completes_on_both_tasks(tmp_path):
    """`evalplus.evaluate --dataset humaneval --backend prm_guided --model "pretrained=<world policy>,
    prm=<world PRM>,strategy=bon,n=4"` on two HumanEval tasks longer than the world's 512-position
    context (it used to stop with "Query 0 takes 714 tokens, more than this PRM's limit of 512")."""
    tasks = tmp_path / "two.jsonl"
    tasks.write_text("".join((TESTS / "fixtures" / "evalplus" / "HumanEvalPlus.jsonl").read_text().splitlines(True)[:2]))
    paths = world.paths()
    model = f"pretrained={paths['policy']},prm={paths['prm']},strategy=bon,n=4"
    run = subprocess.run([str(BIN / "evalplus.evaluate"), "--dataset", "humaneval", "--backend", "prm_guided",
                          "--greedy", "--dtype", "float32", "--model", model, "--root", str(tmp_path / "res"),
                          "--parallel", "2"], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                         env=_env(XDG_CACHE_HOME=str(tmp_path / "cache"), HUMANEVAL_OVERRIDE_PATH=str(tasks)))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (results,) = (tmp_path / "res" / "humaneval").glob("*_eval_results.json")
    assert sorted(json.loads(results.read_text())["eval"]) == ["HumanEval/0", "HumanEval/2"]
    (traces,) = (tmp_path / "res" / "humaneval").glob("*.prm_traces.jsonl")
    lines = [json.loads(x) for x in traces.read_text().splitlines()]
    assert [t["task_id"] for t in lines] == ["HumanEval/0", "HumanEval/2"]
    for t in lines:
        assert "error" not in t and len(t["candidates"]) == 4 and t["cost"]["prm_tokens"] > 0
        assert t["cost"]["policy_truncated"] + t["cost"]["prm_truncated"] > 0  # the world's context overflowed
