"""``prm-plugin demo``: the offline demo on the shipped synthetic world.

Runs the real ``lm_eval.simple_evaluate`` with ``--model prm_guided`` on the
``arith_prm`` task for greedy, majority, best-of-N, beam search and MCTS at one
budget, prints a table (accuracy, policy tokens, PRM tokens, seconds per problem),
and writes the lm-eval results, the search traces and a plot of accuracy against
policy tokens into the output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STRATEGIES = ("greedy", "majority", "bon", "beam", "mcts")
# Strategy-specific settings for the demo's budget (documented in each strategy).
EXTRA: dict[str, dict[str, Any]] = {"beam": {"beam_width": 4}, "mcts": {"expansion_width": 2}}


def _args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prm-plugin demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    parser.add_argument("--n", type=int, default=8, help="budget: candidates / rollouts per problem (default 8)")
    parser.add_argument("--limit", type=int, default=100, help="problems of the test set to run (default 100)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated strategies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", type=Path, default=None,
                        help="a world folder built by `prm-plugin world build --out` (default: the shipped one)")
    return parser.parse_args(list(argv))


def _model_args(strategy: str, policy: Path, prm: Path, n: int, seed: int, traces: Path) -> dict[str, Any]:
    from prm_plugin.world.evaluate import SAMPLE_TEMPERATURE

    args: dict[str, Any] = {
        "pretrained": str(policy), "strategy": strategy, "n": 1 if strategy == "greedy" else n,
        "seed": seed, "device": "cpu", "dtype": "float32", "trace_path": str(traces), "resume": False,
        "search_batch_size": 128,
    }
    if strategy != "greedy":
        args["temperature"] = SAMPLE_TEMPERATURE
    if strategy not in ("greedy", "majority"):
        args["prm"] = str(prm)
    args.update(EXTRA.get(strategy, {}))
    return args


def run_demo(argv: Sequence[str]) -> list[dict[str, Any]]:
    """Run the demo and return one row per strategy."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    import prm_plugin.task_configs as task_configs
    from prm_plugin import world

    args = _args(argv)
    folder = args.world or world.ASSETS
    policy, prm, test_set = folder / "policy", folder / "prm", folder / "arith_test.jsonl"
    for path in (policy, prm, test_set):
        if not path.exists():
            raise SystemExit(f"prm-plugin demo: {path} is missing. Rebuild the world with "
                             f"`prm-plugin world build` (or pass --world DIR of a built world).")
    args.out.mkdir(parents=True, exist_ok=True)
    manager = TaskManager(include_path=str(task_configs.path()), metadata={"arith_prm_data_files": str(test_set)})
    rows = []
    for strategy in [s.strip() for s in args.strategies.split(",") if s.strip()]:
        traces = args.out / "traces" / strategy
        start = time.perf_counter()
        results = lm_eval.simple_evaluate(
            model="prm_guided", model_args=_model_args(strategy, policy, prm, args.n, args.seed, traces),
            tasks=["arith_prm"], limit=args.limit, apply_chat_template=True, task_manager=manager,
            log_samples=False,
        )
        seconds = time.perf_counter() - start
        assert results is not None
        (args.out / f"results_{strategy}.json").write_text(json.dumps(results, indent=2, default=str))
        cost = json.loads((traces / "cost_summary.json").read_text())["arith_prm"]
        rows.append({
            "strategy": strategy, "budget": 1 if strategy == "greedy" else args.n,
            "accuracy": results["results"]["arith_prm"]["acc,none"],
            "policy_tokens": cost["mean_policy_tokens"], "generated_tokens": cost["mean_policy_generated_tokens"],
            "prm_tokens": cost["mean_prm_tokens"], "seconds_per_problem": cost["seconds_per_problem"],
            "wall_seconds": seconds, "problems": cost["problems"],
        })
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(format_table(rows))
    plot = _plot(rows, args.out / "accuracy_vs_tokens.png")
    print(f"\nResults, traces and {'the plot' if plot else 'the summary'} are in {args.out}/")
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = f"{'strategy':<10} {'n':>3} {'accuracy':>9} {'policy tok':>11} {'PRM tok':>9} {'s/problem':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['strategy']:<10} {r['budget']:>3} {100 * r['accuracy']:>8.1f}% "
                     f"{r['policy_tokens']:>11.0f} {r['prm_tokens']:>9.0f} {r['seconds_per_problem']:>10.3f}")
    return "\n".join(lines)


def _plot(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot; pip install 'prm-plugin[plot]')")
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r["policy_tokens"], 100 * r["accuracy"], s=40)
        ax.annotate(f"{r['strategy']}@{r['budget']}", (r["policy_tokens"], 100 * r["accuracy"]),
                    textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("policy tokens per problem (prefilled + generated, log scale)")
    ax.set_ylabel("accuracy on arith_prm (%)")
    ax.set_title("Test-time scaling on the synthetic world")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str]) -> int:
    run_demo(argv)
    return 0
