"""``prm-plugin reproduce EXPERIMENT [--quick] [--out DIR]``: the paper's experiments on the world."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

EXPERIMENTS = {
    "transfer": "paper Table 1: PRMs trained on arithmetic, code-like or both, guiding bon and beam on both",
    "budgets": "paper Figs 4-5: accuracy against tokens and seconds per strategy and budget; crossovers",
}
NOT_BUILT = ("data (Fig 3)", "scale (Figs 1-2)", "similarity (Table 2)")


def main(argv: Sequence[str]) -> int:
    """Run one experiment; write ``EXPERIMENT.json`` and ``EXPERIMENT.png`` into ``--out``."""
    parser = argparse.ArgumentParser(
        prog="prm-plugin reproduce", description="The paper's experiments (arXiv 2506.00027) on the synthetic world.",
        epilog="experiments: " + "; ".join(f"{k}: {v}" for k, v in EXPERIMENTS.items())
        + ". Not built yet: " + ", ".join(NOT_BUILT) + ".")
    parser.add_argument("experiment", help=f"one of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: about 40 problems, n = 4 (and 16)")
    parser.add_argument("--out", type=Path, default=Path("paper_out"), help="output folder (default: paper_out)")
    parser.add_argument("--limit", type=int, default=None, help="test problems per domain (overrides the size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(list(argv))
    if args.experiment not in EXPERIMENTS:
        close = difflib.get_close_matches(args.experiment, EXPERIMENTS, n=1)
        hint = f" Did you mean: {close[0]}?" if close else ""
        print(f"prm-plugin reproduce: error: unknown experiment {args.experiment!r}.{hint} "
              f"Available: {', '.join(EXPERIMENTS)} (not built yet: {', '.join(NOT_BUILT)}).", file=sys.stderr)
        return 2
    out = args.out / args.experiment
    if args.experiment == "transfer":
        from prm_plugin.trainers.paper.transfer import TransferSettings, run_transfer

        ts = TransferSettings(seed=args.seed)
        if args.quick:
            ts = replace(ts, train_rows=1024, epochs=1.5, n=4, limit=40, metric_samples=2)
        if args.limit is not None:
            ts = replace(ts, limit=args.limit)
        report = run_transfer(out, ts)
        print(f"labels: {report['labels']}\nfairness: {report['fairness']}\n{report['table']}")
    else:
        from prm_plugin.trainers.paper.budgets import BudgetSettings, run_budgets

        bs = BudgetSettings(seed=args.seed)
        if args.quick:
            bs = replace(bs, budgets=(4, 16), mcts_extra=(64,), limit=40)
        if args.limit is not None:
            bs = replace(bs, limit=args.limit)
        report = run_budgets(out, bs)
        print(report["table"])
        print("MCTS against best-of-N: " + json.dumps(report["mcts_vs_bon"]))
    print(f"wrote {out / (args.experiment + '.json')} and {out / (args.experiment + '.png')}")
    return 0
