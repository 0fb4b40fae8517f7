"""Every strategy at several budgets on the shipped synthetic world: accuracy and cost.

    python benchmarks/strategies.py                  # table + plots in benchmarks/out/
    python benchmarks/strategies.py --json           # rows and auto-vs-best as one JSON object
    python benchmarks/strategies.py --budgets 4,16 --limit 50 --domain codelike

For each strategy and budget ``n`` it runs the registered strategy on the first
``--limit`` problems of the world's test set (batched, fixed seed) and reports
accuracy, policy tokens generated, PRM tokens processed, unique tree tokens (PRM
tokens) and seconds per problem — the paper's accuracy-against-compute curves
(its Fig. 4-5) on our world. ``--prm`` swaps in another PRM (e.g. one trained on
arithmetic only, evaluated on the code-like set: the transfer question).

``auto`` runs with the shipped calibration table (measured on ``arith_val``, never on the
test set; ``--table`` for another) and is compared, per budget, with the best fixed
strategy run at that budget: the ``auto at n=...`` lines, also in the JSON output.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STRATEGIES = ("greedy", "majority", "weighted_majority", "bon", "beam", "mcts", "particle_filter", "dvts", "auto")
PARAMS: dict[str, dict[str, Any]] = {
    "greedy": {},
    "majority": {"temperature": 0.5},
    "weighted_majority": {"temperature": 0.5, "weighted": True},
    "bon": {"temperature": 0.5},
    "beam": {"temperature": 0.5, "beam_width": 4},
    "mcts": {"temperature": 0.5, "expansion_width": 4},
    "particle_filter": {"temperature": 0.5},
    "dvts": {"temperature": 0.5, "subtree_width": 4},
    "auto": {},  # the shipped calibration table (measured on arith_val) chooses, per budget
}


def run(strategy: str, budget: int, problems: list[Any], sproblems: list[Any], policy: Any, prm: Any,
        seed: int, batch: int, table: str | None = None) -> dict[str, Any]:
    from prm_plugin.plugins import get_strategy
    from prm_plugin.search import Budget
    from prm_plugin.strategy import requires_prm
    from prm_plugin.world import is_correct

    name = "majority" if strategy == "weighted_majority" else strategy
    params = dict(PARAMS[strategy], **({"table": table} if strategy == "auto" and table else {}))
    search = get_strategy(name)(seed=seed, **params)
    n = 1 if strategy == "greedy" else budget
    # Every run starts cold: no PRM or policy prefix KV left over from the previous run
    # (the same seed draws the same samples, so a warm cache would hide their cost).
    if hasattr(prm, "clear_cache"):
        prm.clear_cache()
    if getattr(policy, "prefix_cache", None) is not None:
        policy.prefix_cache.clear()
    results, start = [], time.perf_counter()
    for i in range(0, len(sproblems), batch):
        results += search.search(sproblems[i:i + batch], policy, prm if requires_prm(search) else None, Budget(n=n))
    seconds = time.perf_counter() - start
    k = len(problems)
    row = {
        "strategy": strategy, "budget": n,
        "accuracy": sum(is_correct(p, r.text) for p, r in zip(problems, results)) / k,
        "generated_tokens": sum(r.cost.policy_generated_tokens for r in results) / k,
        "prm_tokens": sum(r.cost.prm_tokens for r in results) / k,
        "unique_tokens": sum(r.cost.unique_tokens for r in results) / k,
        "seconds_per_problem": seconds / k,
    }
    if strategy == "auto":  # what the table chose (one choice per budget; every trace records it)
        chosen = {(r.trace["auto"]["strategy"], json.dumps(r.trace["auto"]["params"], sort_keys=True),
                   r.trace["auto"]["n"]) for r in results}
        row["chose"] = [f"{s}@{m} {p}" for s, p, m in sorted(chosen)]
    return row


def compare_auto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per budget: auto's accuracy against the best fixed strategy run at that budget (or greedy)."""
    out = []
    for auto in (r for r in rows if r["strategy"] == "auto"):
        fixed = [r for r in rows if r["strategy"] != "auto" and (r["budget"] == auto["budget"] or r["strategy"] == "greedy")]
        best = max(fixed, key=lambda r: r["accuracy"])
        out.append({"budget": auto["budget"], "auto": auto["accuracy"], "chose": auto.get("chose"),
                    "best_fixed": best["strategy"], "best_accuracy": best["accuracy"],
                    "gap_points": round(100 * (best["accuracy"] - auto["accuracy"]), 1)})
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table: accuracy, generated tokens and seconds per problem at each budget."""
    budgets = sorted({r["budget"] for r in rows if r["strategy"] != "greedy"})
    head = "| strategy | " + " | ".join(f"n={b}: acc / gen tok / s" for b in budgets) + " |"
    lines = [head, "|---" * (len(budgets) + 1) + "|"]
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        cells = []
        for b in budgets:
            want = 1 if strategy == "greedy" else b  # greedy ran once, at n = 1
            r = next((r for r in rows if (r["strategy"], r["budget"]) == (strategy, want)), None)
            cells.append("—" if r is None else f"{100 * r['accuracy']:.0f}% / {r['generated_tokens']:,.0f} / "
                         f"{r['seconds_per_problem']:.2f}" + (f" ({'; '.join(r['chose'])})" if "chose" in r else ""))
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _save(path: Path, settings: dict[str, Any], rows: list[dict[str, Any]],
          comparison: list[dict[str, Any]] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"settings": settings, "rows": rows, "auto_vs_best_fixed": comparison or compare_auto(rows)}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _resumed(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or doc.get("settings") != settings:
        raise SystemExit(f"{path} holds rows measured with other settings ({doc.get('settings') if isinstance(doc, dict) else '?'}); "
                         "drop --resume or pass another --out.")
    return list(doc["rows"])


def plot(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for x_key, label in (("generated_tokens", "policy tokens generated per problem"),
                         ("seconds_per_problem", "seconds per problem")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for strategy in dict.fromkeys(r["strategy"] for r in rows):
            pts = sorted((r[x_key], 100 * r["accuracy"]) for r in rows if r["strategy"] == strategy)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=strategy)
        ax.set_xscale("log")
        ax.set_xlabel(label + " (log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"accuracy_vs_{x_key}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="4,16,64")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--limit", type=int, default=100, help="test problems (default 100)")
    parser.add_argument("--domain", choices=("arith", "codelike"), default="arith")
    parser.add_argument("--world", type=Path, default=None, help="a built world folder (default: shipped)")
    parser.add_argument("--prm", default=None, help="another PRM checkpoint (default: the world's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50, help="problems per search call")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--table", default=None, help="calibration table for auto (default: the shipped one)")
    parser.add_argument("--policy-batch-size", type=int, default=512,
                        help="rows the HF policy decodes together (default 512; changes speed, not samples)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in OUT/prm_plugin.strategies.json (same settings), run the rest")
    parser.add_argument("--json", action="store_true", help="print rows and auto-vs-best as one JSON object")
    args = parser.parse_args()


    from prm_plugin import world
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.generator import Problem
    from prm_plugin.world.tokenizer import build_tokenizer

    folder = args.world or world.ASSETS
    test = folder / f"{args.domain}_test.jsonl"
    problems = [Problem.from_json(json.loads(line)) for line in test.read_text().splitlines()][: args.limit]
    sproblems = search_problems(build_tokenizer(), problems)
    policy = HFPolicy.from_pretrained(str(folder / "policy"), batch_size=args.policy_batch_size)
    prm = load_prm(args.prm or str(folder / "prm"))
    out_file = args.out / "prm_plugin.strategies.json"
    settings = {"limit": args.limit, "domain": args.domain, "seed": args.seed, "batch": args.batch,
                "world": str(folder), "prm": args.prm, "table": args.table}
    rows = _resumed(out_file, settings) if args.resume else []
    budgets = [int(b) for b in args.budgets.split(",")]
    for budget in budgets:
        for strategy in args.strategies.split(","):
            n = 1 if strategy == "greedy" else budget
            if (strategy == "greedy" and budget != budgets[0]) or any(
                    (r["strategy"], r["budget"]) == (strategy, n) for r in rows):
                continue  # greedy has no budget: once is enough; --resume keeps measured rows
            rows.append(run(strategy, budget, problems, sproblems, policy, prm, args.seed, args.batch, args.table))
            if not args.json:
                r = rows[-1]
                print(f"{r['strategy']:<18} n={r['budget']:<3} acc {100 * r['accuracy']:5.1f}%  "
                      f"gen {r['generated_tokens']:8.0f}  prm {r['prm_tokens']:8.0f}  "
                      f"unique {r['unique_tokens']:8.0f}  {r['seconds_per_problem']:.3f} s/problem"
                      + (f"  chose {', '.join(r['chose'])}" if "chose" in r else ""), flush=True)
            _save(out_file, settings, rows)  # a long run keeps what it measured
    comparison = compare_auto(rows)
    if args.json:
        print(json.dumps({"rows": rows, "auto_vs_best_fixed": comparison}))
        return
    for c in comparison:
        print(f"auto at n={c['budget']}: {100 * c['auto']:.1f}% ({', '.join(c['chose'] or [])}); best fixed "
              f"{c['best_fixed']} {100 * c['best_accuracy']:.1f}%; gap {c['gap_points']:+.1f} points")
    _save(out_file, settings, rows, comparison)
    print(markdown(rows))
    try:
        for path in plot(rows, args.out):
            print(f"plot: {path}")
    except ImportError:
        print("(matplotlib missing: no plots)")


if __name__ == "__main__":
    main()
