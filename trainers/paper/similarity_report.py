"""The similarity experiment's report: its Markdown tables, a figure-driven reading and the plot."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prm_plugin.trainers.paper.transfer import TEST_SETS


def similarity_table(results: Mapping[str, Mapping[str, Any]], pairs: Mapping[str, Mapping[str, float]], n: int) -> str:
    """Two Markdown tables: selected against rejected responses per PRM and domain, then the PRM pairs.

    >>> res = {"a": {"trained_on": "arith", "arith": {"accuracy": 0.5, "selected": 0.2, "rejected": 0.1,
    ...        "gap": 0.1, "gap_correct": None, "spearman": 0.25}}}
    >>> print(similarity_table(res, {"a vs b": {"arith": 0.75}}, 4))  # doctest: +NORMALIZE_WHITESPACE
    | PRM | trained on | test domain | bon@4 accuracy | sim. selected | sim. rejected | gap | gap, correct only | Spearman(score, sim.) |
    |---|---|---|---|---|---|---|---|---|
    | a | arith | arith | 50.0% | 0.200 | 0.100 | +0.100 | — | +0.250 |
    <BLANKLINE>
    | PRM pair: mean gradient cosine on the same rows | arith rows | codelike rows |
    |---|---|---|
    | a vs b | 0.750 | — |
    """
    lines = [f"| PRM | trained on | test domain | bon@{n} accuracy | sim. selected | sim. rejected | gap | "
             "gap, correct only | Spearman(score, sim.) |", "|---" * 9 + "|"]
    for name, res in results.items():
        for domain in TEST_SETS:
            f = res.get(domain)
            if f is None:
                continue
            acc = "—" if f.get("accuracy") is None else f"{100 * f['accuracy']:.1f}%"
            lines.append(f"| {name} | {res.get('trained_on', '?')} | {domain} | {acc} | {_num(f.get('selected'))} | "
                         f"{_num(f.get('rejected'))} | {_num(f.get('gap'), True)} | "
                         f"{_num(f.get('gap_correct'), True)} | {_num(f.get('spearman'), True)} |")
    lines += ["", "| PRM pair: mean gradient cosine on the same rows | arith rows | codelike rows |", "|---|---|---|"]
    for pair, fig in pairs.items():
        lines.append(f"| {pair} | {_num(fig.get('arith'))} | {_num(fig.get('codelike'))} |")
    return "\n".join(lines)


def _num(x: float | None, signed: bool = False) -> str:
    return "—" if x is None else (f"{x:+.3f}" if signed else f"{x:.3f}")


def reading(results: Mapping[str, Mapping[str, Any]], pairs: Mapping[str, Mapping[str, float]]) -> str:
    """A one-paragraph, figure-driven reading (which way each comparison went)."""
    cells = [(name, d, res[d]) for name, res in results.items() for d in TEST_SETS if d in res]
    up = sum(1 for *_, f in cells if (f.get("gap") or 0) > 0)
    with_c = [f for *_, f in cells if f.get("gap_correct") is not None]
    up_c = sum(1 for f in with_c if f["gap_correct"] > 0)
    rho = [f["spearman"] for *_, f in cells if f.get("spearman") is not None]
    text = (f"Selected responses are more similar to the PRM's training data than rejected ones in {up} of "
            f"{len(cells)} (PRM, domain) cells; among correct responses only, in {up_c} of {len(with_c)}. "
            f"Mean within-problem Spearman(score, similarity): "
            f"{sum(rho) / len(rho) if rho else float('nan'):+.3f}.")
    if "arith vs codelike" in pairs and "arith vs arith_b" in pairs:
        cross, same = pairs["arith vs codelike"], pairs["arith vs arith_b"]
        text += (" Gradient cosine of the arith and codelike PRMs: "
                 + ", ".join(f"{d} rows {cross[d]:.3f} (same-domain seeds {same[d]:.3f})" for d in cross) + ".")
    return text


def plot_similarity(results: Mapping[str, Mapping[str, Any]], pairs: Mapping[str, Mapping[str, float]],
                    path: Path) -> Path:
    """Left: similarity of selected and rejected responses per (PRM, domain); right: PRM pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    cells = [(f"{n}\non {d}", res[d]) for n, res in results.items() for d in TEST_SETS if d in res]
    xs = range(len(cells))
    for k, (key, label) in enumerate((("selected", "selected (best-of-n)"), ("rejected", "rejected"))):
        left.bar([x + 0.4 * k for x in xs], [f.get(key) or 0.0 for _, f in cells], 0.4, label=label)
    left.set_xticks([x + 0.2 for x in xs])
    left.set_xticklabels([c for c, _ in cells], fontsize=8)
    left.set_ylabel("mean cos(response grad, training-data grads)")
    left.set_title("responses a PRM selects vs rejects")
    left.legend(fontsize=8)
    domains = list(TEST_SETS)
    for k, d in enumerate(domains):
        right.bar([x + 0.4 * k for x in range(len(pairs))], [v.get(d, 0.0) for v in pairs.values()], 0.4,
                  label=f"{d} probe rows")
    right.set_xticks([x + 0.2 for x in range(len(pairs))])
    right.set_xticklabels(list(pairs), fontsize=8, rotation=15)
    right.set_ylabel("mean gradient cosine, same rows")
    right.set_title("PRM against PRM")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
