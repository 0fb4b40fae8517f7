"""Paper Figs 4-5 on the world: accuracy against generated tokens and against seconds.

Every strategy of ``runs.SETTINGS`` runs at each budget ``n`` on the arithmetic test
set with the shipped policy and PRM; the crossover points where MCTS (and every other
strategy) overtakes best-of-N are computed by ``crossover.crossings`` on the measured
curves, in log-token, log-second and log-budget space.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from prm_plugin.trainers.paper.crossover import crossings
from prm_plugin.trainers.paper.runs import SETTINGS

AXES = {"generated_tokens": "policy tokens generated per problem", "seconds_per_problem": "seconds per problem",
        "budget": "budget n"}


@dataclass(frozen=True)
class BudgetSettings:
    """Sizes of one budget run (``quick`` and ``full`` are the CLI's)."""

    budgets: tuple[int, ...] = (4, 16, 64)
    strategies: tuple[str, ...] = tuple(SETTINGS)
    #: more budgets for MCTS alone: its tree stops growing early, so at equal n it spends far
    #: fewer tokens than best-of-N; these try to stretch its token curve into best-of-N's range
    mcts_extra: tuple[int, ...] = (256,)
    limit: int | None = 100  # arithmetic test problems
    temperature: float = 0.5
    seed: int = 0
    batch: int = 50


def curve(rows: list[dict[str, Any]], strategy: str, axis: str) -> list[tuple[float, float]]:
    """A strategy's measured (x, accuracy) points on one axis, sorted by x."""
    return sorted((float(r[axis]), float(r["accuracy"])) for r in rows if r["strategy"] == strategy)


def crossover_report(rows: list[dict[str, Any]], incumbent: str = "bon") -> dict[str, Any]:
    """For every other strategy and axis: where it overtakes ``incumbent`` (``crossings``)."""
    report: dict[str, Any] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        if strategy == incumbent:
            continue
        report[strategy] = {axis: crossings(curve(rows, strategy, axis), curve(rows, incumbent, axis))
                            for axis in AXES}
    return report


def markdown(rows: list[dict[str, Any]]) -> str:
    """accuracy / generated tokens / seconds per problem, one column per budget."""
    budgets = sorted({r["budget"] for r in rows})
    lines = ["| strategy | " + " | ".join(f"n={b}: acc / gen tok / s" for b in budgets) + " |",
             "|---" * (len(budgets) + 1) + "|"]
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        cells = []
        for b in budgets:
            r = next((r for r in rows if (r["strategy"], r["budget"]) == (strategy, b)), None)
            cells.append("—" if r is None else f"{100 * r['accuracy']:.1f}% / {r['generated_tokens']:,.0f} / "
                         f"{r['seconds_per_problem']:.3f}")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reproduce(out: Path, *, quick: bool = False, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The CLI's entry: the full or ``quick`` sizes; ``limit`` arithmetic test problems."""
    bs = BudgetSettings(seed=seed)
    if quick:
        bs = replace(bs, budgets=(4, 16), mcts_extra=(64,), limit=40)
    if limit is not None:
        bs = replace(bs, limit=limit)
    report = run_budgets(out, bs)
    report["summary"] = report["table"] + "\nMCTS against best-of-N: " + json.dumps(report["mcts_vs_bon"])
    return report


def run_budgets(out: Path, settings: BudgetSettings, log: Any = print) -> dict[str, Any]:
    """Measure every (strategy, budget), write ``budgets.json`` (after every row) and ``budgets.png``."""
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.trainers.paper.runs import run_strategy
    from prm_plugin.world import load_set, paths
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.tokenizer import build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = paths()
    problems = load_set("arith_test")[: settings.limit]
    sp = search_problems(build_tokenizer(), problems)
    policy = HFPolicy.from_pretrained(str(world["policy"]), batch_size=512)
    prm = load_prm(str(world["prm"]))
    report: dict[str, Any] = {"experiment": "budgets", "paper": "arXiv 2506.00027 Figs 4-5",
                              "settings": asdict(settings), "problems": len(problems), "rows": []}
    # Warm-up (discarded): the first run of each strategy pays for lazy imports and kernels.
    for strategy in settings.strategies:
        run_strategy(strategy, min(settings.budgets), problems[:2], sp[:2], policy, prm,
                     temperature=settings.temperature, seed=settings.seed + 1)
    plan = [(s, n) for n in settings.budgets for s in settings.strategies]
    plan += [("mcts", n) for n in settings.mcts_extra if "mcts" in settings.strategies and n not in settings.budgets]
    for strategy, n in plan:
        row = run_strategy(strategy, n, problems, sp, policy, prm, temperature=settings.temperature,
                           seed=settings.seed, batch=settings.batch)
        report["rows"].append(row)
        log(f"[budgets] {strategy:<18} n={n:<3} acc {100 * row['accuracy']:5.1f}%  "
            f"gen {row['generated_tokens']:7.0f}  {row['seconds_per_problem']:.3f} s/problem")
        (out / "budgets.json").write_text(json.dumps(report, indent=2) + "\n")  # a long run keeps its rows
    report["crossovers_vs_bon"] = crossover_report(report["rows"])
    report["mcts_vs_bon"] = {axis: report["crossovers_vs_bon"].get("mcts", {}).get(axis, {}).get("summary")
                             for axis in AXES}
    report["table"] = markdown(report["rows"])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "budgets.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_budgets(report["rows"], out / "budgets.png")
    return report


def plot_budgets(rows: list[dict[str, Any]], path: Path) -> Path:
    """Two panels: accuracy against generated tokens and against seconds (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, axis in zip(axes, ("generated_tokens", "seconds_per_problem")):
        for strategy in dict.fromkeys(r["strategy"] for r in rows):
            pts = curve(rows, strategy, axis)
            ax.plot([x for x, _ in pts], [100 * y for _, y in pts], marker="o", label=strategy)
        ax.set_xscale("log")
        ax.set_xlabel(AXES[axis] + " (log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
