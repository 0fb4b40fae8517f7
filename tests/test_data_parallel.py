"""Data parallel: `accelerate launch` with 2 CPU ranks running `lm_eval --model prm_guided`
on the shipped world, against the same run in one process.

Seven docs on two ranks: rank 0 gets docs 0, 2, 4, 6 and rank 1 docs 1, 3, 5, which lm-eval
pads with a copy of its last request, so the padding path runs too.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import prm_plugin.task_configs as task_configs
from prm_plugin import world
from prm_plugin.integrations._lm_eval_hook import DISABLE_ENV
from prm_plugin.integrations.lm_eval_jobs import JobBuilder
from prm_plugin.integrations.result_store import ResultStore
from prm_plugin.integrations.traces import CostSummary, TraceWriter

LIMIT = 7
TASK = "arith_prm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lm_eval(tmp: Path, name: str, ranks: int, limit: int, trace_path: Path) -> subprocess.Popen:
    p = world.paths()
    model_args = (f"pretrained={p['policy']},prm={p['prm']},strategy=bon,n=2,seed=7,dtype=float32,"
                  f"trace_path={trace_path}")
    args = ["-m", "lm_eval", "--model", "prm_guided", "--model_args", model_args, "--device", "cpu",
            "--tasks", TASK, "--include_path", str(task_configs.path()), "--apply_chat_template",
            "--limit", str(limit), "--output_path", str(tmp / name), "--log_samples"]
    launch = [] if ranks == 1 else ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                                    str(ranks), "--num_machines", "1", "--mixed_precision", "no",
                                    "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    env = {k: v for k, v in os.environ.items() if k not in (DISABLE_ENV, "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    log = (tmp / f"{name}.log").open("w")
    return subprocess.Popen([sys.executable, *launch, *args], cwd=tmp, env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, tmp: Path, name: str) -> tuple[dict, dict[int, dict]]:
    rc = proc.wait(timeout=600)
    assert rc == 0, (tmp / f"{name}.log").read_text()[-4000:]
    (results,) = (tmp / name).rglob("results_*.json")
    (samples,) = (tmp / name).rglob(f"samples_{TASK}_*.jsonl")
    return json.loads(results.read_text()), {s["doc_id"]: s for s in map(json.loads, samples.read_text().splitlines())}


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("dp")
    single = _lm_eval(tmp, "single", 1, LIMIT, tmp / "traces_single")
    dual = _lm_eval(tmp, "dual", 2, LIMIT, tmp / "traces_dual")
    return {"tmp": tmp, "single": _finish(single, tmp, "single"), "dual": _finish(dual, tmp, "dual")}


@pytest.mark.slow
def test_two_ranks_answer_as_one_process_and_search_each_doc_once(runs):
    tmp = runs["tmp"]
    (res1, samples1), (res2, samples2) = runs["single"], runs["dual"]
    assert sorted(samples1) == sorted(samples2) == list(range(LIMIT))
    for doc_id, one in samples1.items():
        two = samples2[doc_id]
        # the padded doc (rank 1's last) carries the padding copy's answer too: the same text
        assert two["resps"][0][0] == one["resps"][0][0] and set(two["resps"][0]) == {one["resps"][0][0]}
        assert two["filtered_resps"] == one["filtered_resps"] and two["acc"] == one["acc"]
    assert res2["results"][TASK] == res1["results"][TASK]
    info1, info2 = res1["config"]["prm_guided"], res2["config"]["prm_guided"]
    assert info1["config_fingerprint"] == info2["config_fingerprint"]  # one configuration: resumable across
    assert (info1["world_size"], info2["world_size"]) == (1, 2)
    costs1, costs2 = info1["cost_summary"][TASK], info2["cost_summary"][TASK]  # rank 0 merged every rank's
    assert costs2["problems"] == LIMIT
    for key in ("mean_policy_tokens", "mean_prm_tokens", "mean_policy_generated_tokens"):
        assert costs2[key] == pytest.approx(costs1[key])

    traces = tmp / "traces_dual"
    per_rank = [_lines(traces / f"{TASK}.rank{r}.traces.jsonl") for r in (0, 1)]
    ids = [[t["doc_id"] for t in lines] for lines in per_rank]
    assert ids == [[0, 2, 4, 6], [1, 3, 5]]  # lm-eval's shares, the padding copy not searched
    merged = _lines(traces / f"{TASK}.traces.jsonl")
    single = _lines(tmp / "traces_single" / f"{TASK}.traces.jsonl")
    assert [t["doc_id"] for t in merged] == list(range(LIMIT)) and not any(t["resumed"] for t in merged)
    for a, b in zip(merged, single, strict=True):
        assert (a["prompt_hash"], a["text"], a["cost"]["prm_tokens"]) == (b["prompt_hash"], b["text"],
                                                                          b["cost"]["prm_tokens"])
    assert sorted(p.name for p in (traces / "store").iterdir()) == [
        f"{info2['config_fingerprint'][:24]}.rank0.jsonl", f"{info2['config_fingerprint'][:24]}.rank1.jsonl"]


@pytest.mark.slow
def test_two_ranks_resume_a_single_process_run(runs):
    """A one-process run's store, resumed by two ranks with two more docs: the seven are
    read back (each rank reads the other writer's file), only docs 7 and 8 are searched."""
    tmp = runs["tmp"]
    traces = tmp / "traces_resume"
    shutil.copytree(tmp / "traces_single", traces)
    _, samples = _finish(_lm_eval(tmp, "resume", 2, LIMIT + 2, traces), tmp, "resume")
    _, samples1 = runs["single"]
    for doc_id, one in samples1.items():
        assert samples[doc_id]["resps"][0][0] == one["resps"][0][0]
    merged = _lines(traces / f"{TASK}.traces.jsonl")
    assert [t["doc_id"] for t in merged] == list(range(LIMIT + 2))
    assert [t["doc_id"] for t in merged if not t["resumed"]] == [7, 8]
    rank1 = _lines(traces / f"{TASK}.rank1.traces.jsonl")
    assert [(t["doc_id"], t["resumed"]) for t in rank1] == [(1, True), (3, True), (5, True), (7, False)]


# -- the pieces, without processes ---------------------------------------------------------
def test_store_shards_read_each_other_so_any_world_size_resumes(tmp_path):
    ResultStore(tmp_path, "cfg", shard="rank0").put_many([("a", {"text": "A"})])
    ResultStore(tmp_path, "cfg", shard="rank1").put_many([("b", {"text": "B"})])
    single = ResultStore(tmp_path, "cfg")
    assert (single.get("a"), single.get("b"), len(single)) == ({"text": "A"}, {"text": "B"}, 2)
    single.put_many([("c", {"text": "C"})])
    third = ResultStore(tmp_path, "cfg", shard="rank2")  # a later run with three ranks
    assert [third.get(k) for k in "abc"] == [{"text": "A"}, {"text": "B"}, {"text": "C"}]
    third.put_many([("d", {"text": "D"})])
    assert "d" not in ResultStore(tmp_path, "other")  # another configuration reads none of them
    assert third.path.name == "cfg.rank2.jsonl" and "d" in ResultStore(tmp_path, "cfg", shard="rank0")


def test_trace_files_per_rank_and_merged_in_doc_order(tmp_path):
    (tmp_path / "t.rank2.traces.jsonl").write_text("{}\n")  # left by an earlier 3-rank run
    rank0, rank1 = TraceWriter(tmp_path, shard="rank0"), TraceWriter(tmp_path, shard="rank1")
    rank0.write("t", [{"doc_id": 0}, {"doc_id": 2}])
    rank1.write("t", [{"doc_id": 1}])
    rank0.write_merged("t", [{"doc_id": 0}, {"doc_id": 2}, {"doc_id": 1}], world_size=2)
    assert [x["doc_id"] for x in _lines(tmp_path / "t.traces.jsonl")] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.rank0.traces.jsonl", "t.rank1.traces.jsonl",
                                                          "t.traces.jsonl"]
    TraceWriter(tmp_path).write("t", [{"doc_id": 5}])  # one process again: the rank files are stale
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.traces.jsonl"]


def test_cost_summaries_of_ranks_add_up():
    a, b, both = CostSummary(), CostSummary(), CostSummary()
    for summary, cost in ((a, 10), (b, 30), (both, 10), (both, 30)):
        summary.add("t", {"prm_tokens": cost, "unique_tokens": cost}, 1.0, resumed=False)
    a.absorb(b.state())
    assert a.summary() == both.summary() and a.summary()["t"]["mean_prm_tokens"] == 20


def test_padding_copies_point_at_the_real_request():
    from lm_eval.api.instance import Instance

    def instance(doc_id: int, repeats: int) -> Instance:
        return Instance("generate_until", doc={"prm_question": f"q{doc_id}"},
                        arguments=(f"Q{doc_id}", {"until": []}), idx=0, metadata=("t", doc_id, repeats))

    one, two = instance(0, 1), instance(1, 2)
    builder = JobBuilder(question_field=None, default_domain="math", default_max_gen_toks=8, eos=None)
    jobs = builder.build([one, two, two, two, two], padded=True)  # lm-eval pads with `repeats` copies
    assert [(j.repeat, j.padding_of) for j in jobs] == [(0, None), (0, None), (1, None), (0, 1), (1, 2)]
    # a single process may repeat a request freely: every copy is its own search
    assert [j.padding_of for j in builder.build([one, one], padded=False)] == [None, None]


def test_in_process_vllm_is_refused_under_several_ranks(monkeypatch):
    from prm_plugin.integrations import lm_eval as module
    from prm_plugin.integrations.ranks import Ranks

    monkeypatch.setattr(module.Ranks, "detect", classmethod(lambda cls, device=None: Ranks(rank=1, world_size=2)))
    with pytest.raises(ValueError, match="data-parallel launch.*policy=openai"):
        module.PRMGuidedLM(policy="vllm", pretrained="unused", strategy="greedy")
