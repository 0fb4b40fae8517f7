"""Served models against in-process ones: the same lm-eval ``prm_guided`` run on the world's
``arith_prm`` problems, with the policy and the PRM (a) in this process on transformers,
(b) in this process on vLLM, (c) behind two vLLM servers (``policy=openai``, ``prm=http://``).

Start the servers first (README, "Scaling out: served models"), then, in the vLLM
virtualenv::

    python benchmarks/served.py --policy-url http://127.0.0.1:8000/v1 --prm-url http://127.0.0.1:8001 \\
        --prm-tc /path/to/exported/prm --limit 20 [--world DIR] [--arms hf,vllm,served]

Prints accuracy, mean policy tokens (prefilled + generated), mean PRM tokens and search
seconds per problem for each arm. ``vllm`` and ``served`` draw the same samples (the served
policy seeds its requests as ``VLLMPolicy`` does); ``hf`` samples from other streams.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

ENGINE = {"enforce_eager": True, "max_model_len": 512, "distributed_executor_backend": "uni", "block_size": 32}


def arm_args(arm: str, a: argparse.Namespace, policy: Path) -> str:
    if arm == "hf":
        return f"policy=hf,pretrained={policy},prm={a.prm_tc},dtype=float32"
    if arm == "vllm":
        engine = ",".join(f"{side}.{k}={v}" for side in ("policy", "prm") for k, v in ENGINE.items())
        return f"policy=vllm,pretrained={policy},prm={a.prm_tc},prm_backend=vllm,dtype=float32,{engine}"
    if arm == "served":
        return (f"policy=openai,base_url={a.policy_url},pretrained={a.served_name or policy},tokenizer={policy},"
                f"prm={a.prm_url},prm_tokenizer={a.prm_tc}")
    raise ValueError(f"unknown arm {arm!r}: choose from hf, vllm, served")


def run(arm: str, a: argparse.Namespace, world: Path) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    import prm_plugin.task_configs as task_configs

    traces = Path(tempfile.mkdtemp(prefix=f"served-bench-{arm}-"))
    args = f"{arm_args(arm, a, world / 'policy')},strategy={a.strategy},n={a.n},trace_path={traces}"
    manager = TaskManager(include_path=task_configs.path(), include_defaults=False,
                          metadata={"arith_prm_data_files": str(world / "arith_test.jsonl")})
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model="prm_guided", model_args=args, tasks=["arith_prm"], limit=a.limit,
                                  task_manager=manager, apply_chat_template=True, bootstrap_iters=0)
    wall = time.perf_counter() - start
    assert out is not None
    cost = json.loads((traces / "cost_summary.json").read_text())["arith_prm"]
    answers = [json.loads(line)["text"] for line in (traces / "arith_prm.traces.jsonl").read_text().splitlines()]
    return {"arm": arm, "accuracy": out["results"]["arith_prm"]["acc,none"], "problems": cost["problems"],
            "policy_tokens": cost["mean_policy_tokens"], "policy_generated": cost["mean_policy_generated_tokens"],
            "prm_tokens": cost["mean_prm_tokens"], "search_s_per_problem": cost["seconds_per_problem"],
            "wall_s_with_startup": wall, "answers": answers}


def world_assets() -> Path:
    from prm_plugin import world

    return world.paths()["policy"].parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=world_assets(),
                        help="world folder (policy/, arith_test.jsonl); default: the shipped world")
    parser.add_argument("--prm-tc", type=Path, required=True, help="the world PRM exported as token_classification")
    parser.add_argument("--policy-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--prm-url", default="http://127.0.0.1:8001")
    parser.add_argument("--served-name", default=None, help="the policy's served name (default: its path)")
    parser.add_argument("--arms", default="hf,vllm,served")
    parser.add_argument("--strategy", default="bon")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--limit", type=int, default=20)
    a = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    rows = [run(arm, a, a.world) for arm in a.arms.split(",")]
    print(f"{'arm':8} {'acc':>6} {'policy tok':>11} {'generated':>10} {'PRM tok':>8} {'s/problem':>10} {'wall s':>8}")
    for r in rows:
        print(f"{r['arm']:8} {r['accuracy']:6.3f} {r['policy_tokens']:11.1f} {r['policy_generated']:10.1f} "
              f"{r['prm_tokens']:8.1f} {r['search_s_per_problem']:10.2f} {r['wall_s_with_startup']:8.1f}")
    by_arm = {r["arm"]: r["answers"] for r in rows}
    if "vllm" in by_arm and "served" in by_arm:
        same = sum(x == y for x, y in zip(by_arm["vllm"], by_arm["served"], strict=True))
        print(f"served and in-process vLLM chose the same answer text on {same}/{len(by_arm['served'])} problems")


if __name__ == "__main__":
    main()
