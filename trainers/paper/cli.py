"""``prm-plugin reproduce EXPERIMENT [--quick] [--out DIR]``: the paper's experiments on the world.

Each experiment is a module of this package with a ``reproduce(out, *, quick, limit, seed)``
function that writes ``EXPERIMENT.json`` and ``EXPERIMENT.png`` into ``out`` and returns its
report; the report's ``summary`` (text) is printed. ``EXPERIMENTS`` lists them.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

#: name -> (module under prm_plugin.trainers.paper, what it reproduces)
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "transfer": ("transfer", "paper Table 1: PRMs trained on arithmetic, code-like or both, guiding bon and beam on both"),
    "budgets": ("budgets", "paper Figs 4-5: accuracy against tokens and seconds per strategy and budget; crossovers"),
    "data": ("data", "paper Fig 3: PRMs trained on one annotator's MC labels, consensus-filtered labels or a mixture; bon and step F1"),
    "scale": ("scale", "paper Figs 1-2: PRMs of three sizes, accuracy and step F1 against size, training curves"),
    "similarity": ("similarity", "paper Table 2: gradient similarity of the responses a PRM selects to its training data; PRM pairs"),
}


def main(argv: Sequence[str]) -> int:
    """Run one experiment (or ``all``); write ``EXPERIMENT.json`` and ``EXPERIMENT.png`` into ``--out``."""
    parser = argparse.ArgumentParser(
        prog="prm-plugin reproduce", description="The paper's experiments (arXiv 2506.00027) on the synthetic world.",
        epilog="experiments: " + "; ".join(f"{k}: {v}" for k, (_, v) in EXPERIMENTS.items()) + "; all: every one.")
    parser.add_argument("experiment", help=f"one of: {', '.join(EXPERIMENTS)}, all")
    parser.add_argument("--quick", action="store_true", help="small sizes, for minutes on a CPU")
    parser.add_argument("--out", type=Path, default=Path("paper_out"), help="output folder (default: paper_out)")
    parser.add_argument("--limit", type=int, default=None, help="test problems per domain (overrides the size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(list(argv))
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    if args.experiment != "all" and args.experiment not in EXPERIMENTS:
        close = difflib.get_close_matches(args.experiment, EXPERIMENTS, n=1)
        hint = f" Did you mean: {close[0]}?" if close else ""
        print(f"prm-plugin reproduce: error: unknown experiment {args.experiment!r}.{hint} "
              f"Available: {', '.join(EXPERIMENTS)}, all.", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print(f"prm-plugin reproduce: error: --limit must be at least 1, got {args.limit}.", file=sys.stderr)
        return 2
    for name in names:
        module = importlib.import_module(f"prm_plugin.trainers.paper.{EXPERIMENTS[name][0]}")
        out = args.out / name
        report = module.reproduce(out, quick=args.quick, limit=args.limit, seed=args.seed)
        print(report["summary"])
        print(f"wrote {out / (name + '.json')} and {out / (name + '.png')}")
    return 0
