"""PRMGuidedLM through lm-eval's real evaluator, with fake strategies and policies."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lm_eval
import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import CacheHook
from lm_eval.api.registry import model_registry
from lm_eval.tasks import TaskManager
from lm_eval_fakes import AddParams, AddStrategy, NoCallPolicy, SeparatorPRM, WrappedLM

from prm_plugin.integrations.lm_eval import PRMGuidedLM
from prm_plugin.plugins import UnknownNameError

TASKS = str(Path(__file__).parent / "fixtures" / "tasks")


@pytest.fixture
def add_strategy():
    AddStrategy.batches = []
    yield AddStrategy
    AddStrategy.batches = []


def _tasks() -> TaskManager:
    return TaskManager(include_path=TASKS, include_defaults=False)  # skip indexing lm-eval's ~10k YAMLs


def _instance(question: str, gen_kwargs: dict, doc_id: int = 0, task: str = "t") -> Instance:
    return Instance("generate_until", doc={"prm_question": question}, arguments=(f"Q: {question}\nA:", gen_kwargs),
                    idx=0, metadata=(task, doc_id, 1))


def test_evaluator_run_answers_traces_and_costs(tmp_path, add_strategy):
    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy=add_strategy(), trace_path=str(tmp_path),
                     search_batch_size=4, n=3)
    out = lm_eval.simple_evaluate(model=lm, tasks=["tiny_prm"], task_manager=_tasks(),
                                  log_samples=True, bootstrap_iters=0)
    assert out["results"]["tiny_prm"]["exact_match,none"] == 1.0
    assert [len(b) for b in add_strategy.batches] == [4, 2]
    first = add_strategy.batches[0][0]
    assert first.question.startswith("What is") and first.domain == "math"
    assert "\n\n\n" in first.stop and first.max_tokens == 32 and first.prompt.startswith("Q: What is")
    info = out["config"]["prm_guided"]
    assert info["strategy"] == "add" and info["budget"]["n"] == 3 and info["seed"] == 0
    assert info["cost_summary"]["tiny_prm"]["problems"] == 6
    assert info["cost_summary"]["tiny_prm"]["mean_policy_generated_tokens"] == 21.0
    traces = [json.loads(x) for x in (tmp_path / "tiny_prm.traces.jsonl").read_text().splitlines()]
    sample_hashes = {s["prompt_hash"] for s in out["samples"]["tiny_prm"]}
    assert {t["prompt_hash"] for t in traces} == sample_hashes and len(traces) == 6
    assert all(t["strategy"] == "add" and t["cost"]["prm_tokens"] == 11 for t in traces)
    assert json.loads((tmp_path / "cost_summary.json").read_text())["tiny_prm"]["mean_prm_tokens"] == 11.0


def test_wrong_answers_score_zero(add_strategy):
    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy=add_strategy(AddParams(wrong=True)))
    out = lm_eval.simple_evaluate(model=lm, tasks=["tiny_prm"], task_manager=_tasks(),
                                  limit=2, bootstrap_iters=0)
    assert out["results"]["tiny_prm"]["exact_match,none"] == 0.0


def test_repeats_are_independent_searches_with_their_own_seed(add_strategy):
    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy=add_strategy())
    req = _instance("What is 2 + 3?", {"until": [], "max_gen_toks": 8})
    texts = lm.generate_until([req, req, req])
    assert texts == [" 2 + 3 = 5\n\nThe answer is 5"] * 3
    seeds = [lm.session.strategy_for(j.repeat, j.temperature, j.top_p).params.seed
             for j in lm._jobs.build([req, req, req])]
    assert len(set(seeds)) == 3 and seeds[0] == 0
    assert sorted(p.uid for b in add_strategy.batches for p in b) == ["t/0/0", "t/0/1", "t/0/2"]


def test_sampling_gen_kwargs_apply_unless_model_args_set_them(add_strategy, monkeypatch):
    sampled = _instance("What is 1 + 1?", {"until": [], "do_sample": True, "temperature": 0.3, "top_p": 0.9})
    greedy = _instance("What is 1 + 2?", {"until": [], "do_sample": False, "temperature": 0.0}, doc_id=1)
    import prm_plugin.plugins

    real = prm_plugin.plugins.get_strategy
    monkeypatch.setattr(prm_plugin.plugins, "get_strategy", lambda n: add_strategy if n == "add" else real(n))
    def sampling(lm: PRMGuidedLM) -> list[tuple[float, float]]:
        return sorted((s.params.temperature, s.params.top_p) for s in lm.session._strategies.values())

    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy="add", temperature=0.5)  # explicit: wins, key by key
    lm.generate_until([sampled])
    assert sampling(lm) == [(0.5, 0.9)]
    lm2 = PRMGuidedLM(policy=NoCallPolicy(), strategy="add")
    lm2.generate_until([sampled, greedy])
    assert sampling(lm2) == [(0.3, 0.9), (0.8, 1.0)]  # greedy tasks keep the strategy's


def test_unknown_model_arg_lists_strategy_and_own_keys():
    with pytest.raises(ValueError) as err:
        PRMGuidedLM(policy=NoCallPolicy(), strategy="greedy", tempreature=0.3)
    msg = str(err.value)
    assert "Did you mean: temperature?" in msg and "trace_path" in msg and "aggregation" in msg


def test_unknown_strategy_suggests_and_lists():
    with pytest.raises(UnknownNameError, match=r"Did you mean: beam.*Available: .*bon"):
        PRMGuidedLM(policy=NoCallPolicy(), strategy="bem")


def test_bad_parameter_value_and_missing_prm_are_actionable():
    with pytest.raises(ValueError, match="aggregation must be one of"):
        PRMGuidedLM(policy=NoCallPolicy(), strategy="bon", aggregation="max", prm=SeparatorPRM("\n\n"))
    with pytest.raises(ValueError, match=r"needs a PRM, but none was given.*Pass a PRM \(prm=<path or Hub id>"):
        PRMGuidedLM(policy=NoCallPolicy(), strategy="bon")
    with pytest.raises(ValueError, match="needs pretrained="):
        PRMGuidedLM(strategy="greedy")


def test_step_delimiter_contradicting_a_text_separator_prm_is_refused():
    with pytest.raises(ValueError, match=r"does not match the PRM's step separator '\\n\\n'.*step_delimiter="):
        PRMGuidedLM(policy=NoCallPolicy(), strategy="bon", prm=SeparatorPRM("\n\n"), step_delimiter="\\n")
    # a tag separator is inserted by the PRM itself, so any delimiter fits
    PRMGuidedLM(policy=NoCallPolicy(), strategy="bon", prm=SeparatorPRM("<extra_0>"), step_delimiter="\\n")


def test_question_field_and_fallback(add_strategy, caplog):
    req = Instance("generate_until", doc={"problem": "What is 4 + 4?"}, arguments=("ctx What is 9 + 9?", {"until": []}),
                   idx=0, metadata=("t", 0, 1))
    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy=add_strategy(), question_field="problem")
    assert lm.generate_until([req]) == [" 4 + 4 = 8\n\nThe answer is 8"]
    with pytest.raises(KeyError, match="question_field='nope' is not a field.*problem"):
        PRMGuidedLM(policy=NoCallPolicy(), strategy=add_strategy(), question_field="nope").generate_until([req])
    with caplog.at_level(logging.WARNING):
        text = PRMGuidedLM(policy=NoCallPolicy(), strategy=add_strategy()).generate_until([req])
    assert text == [" 9 + 9 = 18\n\nThe answer is 18"] and "question_field" in caplog.text


def test_use_cache_is_warned_about(caplog, tmp_path):
    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy=AddStrategy())
    from lm_eval.api.model import CachingLM

    with caplog.at_level(logging.WARNING):
        CachingLM(lm, str(tmp_path / "cache.db"))
    assert "--use_cache" in caplog.text
    caplog.clear()
    lm.set_cache_hook(CacheHook(None))
    assert "--use_cache" not in caplog.text


def test_wrapped_lm_eval_model_gets_the_remaining_args_and_loglikelihood(add_strategy):
    if "prm_test_wrapped" not in model_registry:
        model_registry.register("prm_test_wrapped", target=WrappedLM)
    WrappedLM.instances = []
    lm = PRMGuidedLM(policy="prm_test_wrapped", strategy=add_strategy(), flavour="spicy", batch_size=4)
    wrapped = WrappedLM.instances[-1]
    assert wrapped.flavour == "spicy" and wrapped.batch_size == 4
    req = Instance("loglikelihood", doc={}, arguments=("a", " b"), idx=0)
    assert lm.loglikelihood([req]) == [(-1.5, True)]
    assert lm.loglikelihood_rolling([req]) == [-2.5]
    assert lm.get_model_info()["prm_guided"]["wrapped_model_args"] == {"flavour": "spicy"}


class StrictLM(WrappedLM):
    def __init__(self, batch_size=None, device=None):
        super().__init__(batch_size=batch_size)


def test_a_key_the_wrapped_model_rejects_is_explained(add_strategy):
    if "prm_test_strict" not in model_registry:
        model_registry.register("prm_test_strict", target=StrictLM)
    with pytest.raises(ValueError, match="rejected its model_args.*colour"):
        PRMGuidedLM(policy="prm_test_strict", strategy=add_strategy(), colour="red")


def test_unknown_policy_name_is_explained(add_strategy):
    with pytest.raises(ValueError, match="neither hf, vllm nor a registered lm-eval model"):
        PRMGuidedLM(policy="no_such_model", strategy=add_strategy())


def test_policy_vllm_gets_pretrained_device_dtype_and_policy_kwargs(monkeypatch, add_strategy):
    from prm_plugin.policy import vllm as vllm_policy

    calls = []

    def fake_from_pretrained(path, **kwargs):
        calls.append((path, kwargs))
        return NoCallPolicy()

    monkeypatch.setattr(vllm_policy.VLLMPolicy, "from_pretrained", staticmethod(fake_from_pretrained))
    lm = PRMGuidedLM(policy="vllm", pretrained="org/model", dtype="bfloat16", strategy=add_strategy(),
                     **{"policy.gpu_memory_utilization": 0.5, "policy.tensor_parallel_size": 2})
    assert calls == [("org/model", {"device": None, "dtype": "bfloat16", "on_overflow": "truncate",
                                    "gpu_memory_utilization": 0.5, "tensor_parallel_size": 2})]
    assert lm.get_model_info()["prm_guided"]["policy"] == "vllm"


def test_a_task_stop_that_ends_every_step_is_warned_about(add_strategy, caplog):
    lm = PRMGuidedLM(policy=NoCallPolicy(), strategy=add_strategy())
    with caplog.at_level(logging.WARNING):
        lm.generate_until([_instance("What is 1 + 1?", {"until": ["\n\n"]}, task="gsm_like")])
    assert "gsm_like: the task stops generation at '\\n\\n'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        lm.generate_until([_instance("What is 1 + 1?", {"until": ["\n\n\n"]}, task="fine")])
    assert "stops generation" not in caplog.text


def test_cuda_device_falls_back_to_cpu_when_absent(monkeypatch, caplog):
    import torch

    from prm_plugin.integrations.lm_eval_backends import _device
    from prm_plugin.integrations.lm_eval_config import ModelSettings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert _device(ModelSettings(device="cuda:0")) == "cpu"
    assert "CUDA is not available" in caplog.text
    assert _device(ModelSettings(device="cpu")) == "cpu" and _device(ModelSettings()) is None
