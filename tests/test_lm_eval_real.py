"""The real path: the installed `lm_eval` console script, HFPolicy on a tiny model,
load_prm on a tiny value-head PRM, real strategies, lm-eval's evaluator."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import build_causal_lm, build_value_head_prm

from prm_plugin.integrations._lm_eval_hook import DISABLE_ENV

TASKS = str(Path(__file__).parent / "fixtures" / "tasks")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm_eval_models")
    return {"policy": build_causal_lm(root / "policy"), "prm": build_value_head_prm(root / "prm")}


def _run(cmd: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != DISABLE_ENV}
    full_env.update(env, TOKENIZERS_PARALLELISM="false")
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=full_env, timeout=600)


def _results(out_dir: Path) -> tuple[dict, list[dict]]:
    (results_file,) = out_dir.rglob("results_*.json")
    (samples_file,) = out_dir.rglob("samples_tiny_prm_*.jsonl")
    samples = [json.loads(x) for x in samples_file.read_text().splitlines()]
    return json.loads(results_file.read_text()), samples


def test_stock_lm_eval_console_script_runs_prm_guided(models, tmp_path):
    lm_eval_bin = shutil.which("lm_eval", path=str(BIN)) or shutil.which("lm_eval")
    assert lm_eval_bin, "the lm_eval console script is not installed"
    model_args = f"pretrained={models['policy']},prm={models['prm']},strategy=bon,n=2,trace_path={tmp_path / 'traces'}"
    out = _run([lm_eval_bin, "--model", "prm_guided", "--model_args", model_args, "--tasks", "tiny_prm",
                "--include_path", TASKS, "--limit", "2", "--output_path", str(tmp_path / "out"),
                "--log_samples", "--device", "cpu"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "prm_guided cost summary (bon, n=2)" in out.stdout
    results, samples = _results(tmp_path / "out")
    info = results["config"]["prm_guided"]
    assert info["strategy"] == "bon" and info["prm"] == str(models["prm"]) and info["budget"]["n"] == 2
    summary = info["cost_summary"]["tiny_prm"]
    assert summary["problems"] == 2 and summary["mean_prm_tokens"] > 0 and summary["mean_policy_tokens"] > 0
    traces = [json.loads(x) for x in (tmp_path / "traces" / "tiny_prm.traces.jsonl").read_text().splitlines()]
    assert {t["prompt_hash"] for t in traces} == {s["prompt_hash"] for s in samples}
    for t in traces:
        assert len(t["candidates"]) == 2 and t["chosen"] in (0, 1)
        assert all(0.0 <= s <= 1.0 for c in t["candidates"] for s in c["step_scores"])
    by_hash = {s["prompt_hash"]: s for s in samples}
    for t in traces:  # the sample's answer is the chosen candidate's text (cut at the task's stops)
        assert by_hash[t["prompt_hash"]]["resps"][0][0] == t["text"].split("\n\n\n")[0]


# The stock CLI indexes all of lm-eval's ~10k task files on every start (~6 s of CPU).
@pytest.mark.slow
def test_stock_lm_eval_hf_model_still_works_in_the_same_environment(models, tmp_path):
    lm_eval_bin = shutil.which("lm_eval", path=str(BIN)) or "lm_eval"
    out = _run([lm_eval_bin, "--model", "hf", "--model_args", f"pretrained={models['policy']}", "--tasks",
                "tiny_prm", "--include_path", TASKS, "--limit", "1", "--device", "cpu",
                "--output_path", str(tmp_path / "out"), "--log_samples"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results, _ = _results(tmp_path / "out")
    assert results["config"]["model"] == "hf" and "exact_match,none" in results["results"]["tiny_prm"]


@pytest.mark.slow
def test_fallback_command_works_with_the_hook_off(models, tmp_path):
    # (that the stock CLI then lacks prm_guided is tested in test_lm_eval_hook.py)
    args = ["--model", "prm_guided", "--model_args", f"pretrained={models['policy']},strategy=greedy",
            "--tasks", "tiny_prm", "--include_path", TASKS, "--limit", "1", "--device", "cpu"]
    out = _run([str(BIN / "prm-plugin"), "lm-eval", *args], tmp_path, **{DISABLE_ENV: "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "prm_guided cost summary (greedy, n=8)" in out.stdout


def test_policy_hf_answers_loglikelihood_like_lm_evals_hflm(models):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from prm_plugin.integrations.lm_eval import PRMGuidedLM

    lm = PRMGuidedLM(pretrained=str(models["policy"]), strategy="greedy", device="cpu")
    reqs = [Instance("loglikelihood", doc={}, arguments=("Step 1: 3 + 4", " = 7"), idx=0),
            Instance("loglikelihood", doc={}, arguments=("def add(a, b):", "\n    return a + b"), idx=0)]
    ours = lm.loglikelihood(reqs)
    # the reference gets the tokenizer the checkpoint saved: lm-eval's own AutoTokenizer
    # load swaps in Qwen2Tokenizer for this qwen2 checkpoint and splits text differently
    from prm_plugin._hf_compat import load_tokenizer

    reference = HFLM(pretrained=str(models["policy"]), tokenizer=load_tokenizer(str(models["policy"])),
                     device="cpu").loglikelihood(reqs)
    assert all(math.isfinite(a[0]) for a in ours)
    assert [round(a[0], 4) for a in ours] == [round(b[0], 4) for b in reference]
    assert [a[1] for a in ours] == [b[1] for b in reference]


def test_wrapping_lm_evals_own_hf_model_as_the_policy(models):
    from lm_eval.api.instance import Instance

    from prm_plugin.integrations.lm_eval import PRMGuidedLM
    from prm_plugin.integrations.lm_eval_policy import LMEvalPolicy

    lm = PRMGuidedLM(policy="hf-auto", pretrained=str(models["policy"]), prm=str(models["prm"]), strategy="bon",
                     n=2, device="cpu", max_step_tokens=8)
    assert isinstance(lm.backends.policy, LMEvalPolicy)
    req = Instance("generate_until", doc={"prm_question": "What is 1 + 2?"},
                   arguments=("Q: What is 1 + 2?\nA:", {"until": ["\n\n\n"], "max_gen_toks": 12}), idx=0,
                   metadata=("t", 0, 1))
    (text,) = lm.generate_until([req])
    summary = lm.costs.summary()["t"]
    assert isinstance(text, str) and summary["mean_policy_generated_tokens"] > 0 and summary["mean_prm_tokens"] > 0


def test_apply_chat_template_uses_the_policy_tokenizer(models):
    import lm_eval
    from lm_eval.tasks import TaskManager
    from tiny import CHAT_TEMPLATE

    from prm_plugin.integrations.lm_eval import PRMGuidedLM

    lm = PRMGuidedLM(pretrained=str(models["policy"]), strategy="greedy", device="cpu")
    assert lm.tokenizer_name == str(models["policy"]).replace("/", "__")
    assert lm.chat_template(True) == CHAT_TEMPLATE and lm.chat_template(False) is None
    user = [{"role": "user", "content": "hi"}]
    assert lm.apply_chat_template(user) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    prefilled = lm.apply_chat_template([*user, {"role": "assistant", "content": "Sure:"}], add_generation_prompt=False)
    assert prefilled.endswith("<|im_start|>assistant\nSure:")  # gen_prefix continues the assistant turn
    out = lm_eval.simple_evaluate(model=lm, tasks=["tiny_prm"], apply_chat_template=True, limit=1, log_samples=True,
                                  task_manager=TaskManager(include_path=TASKS, include_defaults=False),
                                  bootstrap_iters=0)
    context = out["samples"]["tiny_prm"][0]["arguments"][0][0]
    assert context.startswith("<|im_start|>user\nQ: What is 1 + 2?") and context.endswith("<|im_start|>assistant\n")


def test_prm_separator_mismatch_is_an_actionable_error(models):
    from prm_plugin.integrations.lm_eval import PRMGuidedLM

    with pytest.raises(ValueError, match=r"prm=.*step_separator='\\n' does not match"):
        PRMGuidedLM(pretrained=str(models["policy"]), prm=str(models["prm"]), prm_step_separator="\\n",
                    strategy="bon", device="cpu")
