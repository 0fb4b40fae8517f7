"""Paper Table 2 on the world: do PRMs prefer responses whose gradients look like their training data?

The paper (arXiv 2506.00027, abstract) reports that "employing a gradient-based metric, we
observe that PRMs exhibit a preference for selecting responses with similar underlying
patterns". The body of the paper (the section holding Table 2) could not be read from the
stored copy available here, so the metric below is a documented choice, not a transcription:

* gradient of an example under a PRM: the gradient, with respect to all of the PRM's
  parameters (backbone and value head), of its training loss on that example: the mean
  binary cross-entropy of the step scores against the world's true step labels;
* similarity of two examples (or of one example under two PRMs): the cosine of their
  gradients (exact, no projection: the world's PRM has 0.85 M parameters);
* similarity of a response to a PRM's training data: the mean of its cosines with the
  gradients of ``reference_rows`` of that PRM's training rows.

Two measurements use it. (1) Table 2's question: among ``n`` policy samples per test
problem, is the one the PRM selects (best-of-N, min-aggregated step scores) more similar to
the PRM's training data than the ones it rejects? Because the loss uses true labels, correct
and wrong responses differ in gradient for that reason alone, so the gap is also reported
among correct responses only. (2) The PRMs themselves: the mean cosine of the arithmetic
and the code-like PRMs' gradients on the same held-out rows, against two baselines, two
arithmetic PRMs trained on different problems (rows drawn with seed + 1; the same head) and each PRM against the untrained
PRM every one of them started from (the backbone with the same seeded random head).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from prm_plugin.trainers.paper.similarity_report import plot_similarity, reading, similarity_table
from prm_plugin.trainers.paper.transfer import (
    LABELS,
    TEST_SETS,
    TransferSettings,
    train_prm,
    training_rows,
)

FORMULA = (
    "g_P(x) = gradient w.r.t. all parameters of PRM P of its training loss on example x (mean BCE of the "
    "step scores against the true step labels); sim(x, y) = cos(g_P(x), g_P(y)); similarity of a response r "
    "to P's training data D = mean over d in D of cos(g_P(r), g_P(d)); similarity of PRMs P and Q on probe "
    "rows E = mean over e in E of cos(g_P(e), g_Q(e)). Paper: arXiv 2506.00027 (abstract: 'employing a "
    "gradient-based metric ... PRMs exhibit a preference for selecting responses with similar underlying "
    "patterns'); the section defining Table 2 could not be read from the stored copy, so this definition "
    "is our choice, not the paper's text."
)
#: name -> (training domains, offset of the rows' seed); "arith_b" is the same-domain baseline on other problems
TRAINED: dict[str, tuple[tuple[str, ...], int]] = {"arith": (("arith",), 0), "codelike": (("codelike",), 0),
                                                   "arith_b": (("arith",), 1)}
PAIRS = (("arith", "codelike"), ("arith", "arith_b"), ("arith", "untrained"), ("codelike", "untrained"))


@dataclass(frozen=True)
class SimilaritySettings:
    """Sizes of one similarity run (``quick`` and ``full`` are the CLI's)."""

    train_rows: int = 1024  # per PRM
    epochs: float = 1.5
    batch: int = 32
    learning_rate: float = 1e-3
    reference_rows: int = 64  # training rows per PRM whose gradients stand for its training data
    probe_rows: int = 48  # held-out rows per domain for the PRM-pair similarity
    limit: int | None = 100  # test problems per domain
    n: int = 8  # policy samples per test problem (best-of-n candidates)
    temperature: float = 0.8
    seed: int = 0

    def training(self, seed_offset: int = 0) -> TransferSettings:
        """The transfer experiment's training settings with these sizes."""
        return TransferSettings(train_rows=self.train_rows, epochs=self.epochs, batch=self.batch,
                                learning_rate=self.learning_rate, seed=self.seed + seed_offset)


# ---------------------------------------------------------------- the gradient math (pure)
def loss_gradient(model: Any, input_ids: Sequence[int], labels: Sequence[float]) -> Any:
    """The flat gradient of ``model``'s mean BCE loss on one tokenised row.

    ``labels`` has one entry per token, ``-100`` where there is no label (the layout of
    ``prm_plugin.trainers.tokenize.tokenize_row``). Every parameter that requires a gradient
    contributes, in ``model.parameters()`` order; the model's own gradients are left untouched.
    """
    return gradient_and_scores(model, input_ids, labels)[0]


def gradient_and_scores(model: Any, input_ids: Sequence[int], labels: Sequence[float]) -> tuple[Any, list[float]]:
    """``loss_gradient`` and, from the same forward pass, P(correct) at each labelled step."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    ids = torch.as_tensor([list(input_ids)], dtype=torch.long)
    target = torch.as_tensor([list(labels)], dtype=torch.float32)
    mask = target != -100
    if not bool(mask.any()):
        raise ValueError("the row has no labelled step: its loss (and gradient) is undefined")
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids))["logits"][mask].float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target[mask])
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])
    return flat, torch.sigmoid(logits.detach()).tolist()


def unit(vector: Any) -> Any:
    """``vector / |vector|`` (a zero vector stays zero: it is similar to nothing)."""
    norm = vector.norm()
    return vector / norm if float(norm) > 0 else vector


def cosine(a: Any, b: Any) -> float:
    """The cosine of two flat tensors; 0.0 when either is zero.

    >>> import torch
    >>> cosine(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])), cosine(torch.tensor([1.0, 0.0]),
    ...                                                                   torch.tensor([-3.0, 0.0]))
    (1.0, -1.0)
    """
    return max(-1.0, min(1.0, float((unit(a) * unit(b)).sum())))  # float32 rounding can pass 1


def mean_direction(gradients: Sequence[Any]) -> Any:
    """The mean of the unit gradients: ``v . mean_direction(G) == mean(cos(v, g) for g in G)`` for a unit ``v``."""
    import torch

    return torch.stack([unit(g) for g in gradients]).mean(0)


def selection_stats(groups: Sequence[Sequence[tuple[float, float, bool]]]) -> dict[str, float | int | None]:
    """Per problem, candidates as ``(prm_score, similarity, correct)``; the first best score is selected.

    Returns mean similarity of the selected and of the rejected candidates, their difference
    (``gap``), the same among correct candidates only (``gap_correct``: problems with a correct
    selected and a correct rejected candidate), the mean per-problem Spearman correlation of
    score and similarity, and the accuracy of the selection.

    >>> s = selection_stats([[(0.9, 0.5, True), (0.1, 0.1, False)], [(0.2, 0.0, False), (0.8, 0.4, True)]])
    >>> s["selected"], s["rejected"], round(s["gap"], 3), s["spearman"], s["accuracy"], s["gap_correct"]
    (0.45, 0.05, 0.4, 1.0, 1.0, None)
    """
    sel, rej, gap_c, rhos, hits = [], [], [], [], 0
    for group in groups:
        if not group:
            continue
        best = max(range(len(group)), key=lambda i: (group[i][0], -i))
        sel.append(group[best][1])
        others = [c for i, c in enumerate(group) if i != best]
        rej += [c[1] for c in others]
        hits += group[best][2]
        correct_rej = [c[1] for c in others if c[2]]
        if group[best][2] and correct_rej:
            gap_c.append(group[best][1] - sum(correct_rej) / len(correct_rej))
        rho = spearman([c[0] for c in group], [c[1] for c in group])
        if rho is not None:
            rhos.append(rho)
    s_sel, s_rej = _mean(sel), _mean(rej)
    return {"selected": s_sel, "rejected": s_rej,
            "gap": None if s_sel is None or s_rej is None else s_sel - s_rej,
            "gap_correct": _mean(gap_c), "gap_correct_problems": len(gap_c), "spearman": _mean(rhos),
            "accuracy": hits / len(sel) if sel else None, "problems": len(sel)}


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks on ties); None when either side is constant.

    >>> spearman([1, 2, 3], [30, 20, 10]), spearman([1, 1, 1], [1, 2, 3])
    (-1.0, None)
    """
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else sxy / (sxx * syy) ** 0.5


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def step_scores(model: Any, input_ids: Sequence[int], labels: Sequence[float]) -> list[float]:
    """P(correct) at the labelled positions of one tokenised row (no gradient)."""
    import torch

    ids = torch.as_tensor([list(input_ids)], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids))["logits"][0]
    return [float(torch.sigmoid(logits[i])) for i, y in enumerate(labels) if y != -100]


# ---------------------------------------------------------------- the experiment
def reproduce(out: Path, *, quick: bool = False, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The CLI's entry: the full or ``quick`` sizes; ``limit`` test problems per domain."""
    ss = SimilaritySettings(seed=seed)
    if quick:
        ss = replace(ss, train_rows=384, epochs=1.5, reference_rows=24, probe_rows=16, limit=20, n=4)
    if limit is not None:
        ss = replace(ss, limit=limit)
    report = run_similarity(out, ss)
    report["summary"] = f"metric: {report['formula']}\n\n{report['table']}\n\n{report['reading']}"
    return report


def run_similarity(out: Path, settings: SimilaritySettings, log: Any = print) -> dict[str, Any]:
    """Train three PRMs, measure both similarities, write ``similarity.json`` and ``similarity.png``."""
    import torch

    from prm_plugin.world import load_set, paths

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = paths()

    held_out = {p.question for s in ("arith_test", "arith_val", "codelike_test") for p in load_set(s)}
    rows: dict[str, list[dict[str, Any]]] = {}
    training: dict[str, Any] = {}
    for name, (domains, offset) in TRAINED.items():
        rows[name] = training_rows(domains, settings.train_rows, settings.seed + offset, held_out)
        log(f"[similarity] training the {name} PRM: {len(rows[name])} rows, {settings.training().max_steps} steps")
        # one trainer seed for all: the same starting head and batch order, other rows for arith_b
        training[name] = train_prm(out / "prms" / name, world["policy"], rows[name], settings.training())
    # One thread for the per-example gradients of this small model: on the shared 2-core machine
    # they took 0.11 s each single-threaded against 1.1 s with two threads (the second mostly waits).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = _measure(out, settings, rows, training, log)
    finally:
        torch.set_num_threads(threads)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "similarity.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_similarity(report["results"], report["pairs"], out / "similarity.png")
    return report


def _measure(out: Path, settings: SimilaritySettings, rows: Mapping[str, list[dict[str, Any]]],
             training: Mapping[str, Any], log: Any) -> dict[str, Any]:
    """Both measurements on the PRMs trained into ``out / "prms"``; the report without ``seconds``."""
    import torch

    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm.value_head_model import ValueHeadPRM
    from prm_plugin.trainers.world.labels import sample_solution_rows
    from prm_plugin.world import load_set, paths
    from prm_plugin.world.tokenizer import build_tokenizer

    world, tokenizer = paths(), build_tokenizer()
    held_out = {p.question for s in ("arith_test", "arith_val", "codelike_test") for p in load_set(s)}

    def encode(row: Mapping[str, Any]) -> dict[str, list[Any]] | None:
        return _encode(tokenizer, row)

    models: dict[str, Any] = {n: ValueHeadPRM.from_pretrained(str(out / "prms" / n)).eval() for n in TRAINED}
    torch.manual_seed(settings.seed)
    models["untrained"] = ValueHeadPRM.from_backbone(str(world["policy"]), step_separator="\n\n").eval()

    # (2) the PRMs themselves, on held-out error-model rows none of them was trained on
    seen = held_out | {r["prompt"] for rs in rows.values() for r in rs}
    pairs: dict[str, dict[str, float]] = {f"{a} vs {b}": {} for a, b in PAIRS}
    for domain in TEST_SETS:
        probes = [e for e in map(encode, training_rows((domain,), settings.probe_rows, settings.seed + 50, seen)) if e]
        cos: dict[str, list[float]] = {k: [] for k in pairs}
        for e in probes:
            g = {n: loss_gradient(m, e["input_ids"], e["labels"]) for n, m in models.items()}
            for a, b in PAIRS:
                cos[f"{a} vs {b}"].append(cosine(g[a], g[b]))
        for k, v in cos.items():
            pairs[k][domain] = sum(v) / len(v)
        log(f"[similarity] PRM pairs on {len(probes)} {domain} probe rows: "
            + ", ".join(f"{k} {v[domain]:.3f}" for k, v in pairs.items()))

    # (1) Table 2: the responses each PRM selects against the ones it rejects
    policy = HFPolicy.from_pretrained(str(world["policy"]), batch_size=256)
    candidates: dict[str, list[list[tuple[dict[str, list[Any]], bool]]]] = {}
    for domain, set_name in TEST_SETS.items():
        problems = load_set(set_name)[: settings.limit]
        sampled = sample_solution_rows(policy, tokenizer, problems, samples=settings.n,
                                       temperature=settings.temperature, seed=settings.seed + 7)
        groups: dict[str, list[tuple[dict[str, list[Any]], bool]]] = {p.question: [] for p in problems}
        for r in sampled:
            enc = encode({"prompt": r["prompt"], "completions": r["completions"],
                          "labels": [float(x) for x in r["true_labels"]]})
            if enc is not None:
                groups[r["prompt"]].append((enc, all(r["true_labels"])))
        candidates[domain] = [g for g in groups.values() if g]
    results: dict[str, dict[str, Any]] = {}
    for name in TRAINED:
        model = models[name]
        by_source = {src: mean_direction([loss_gradient(model, e["input_ids"], e["labels"])
                                          for e in map(encode, rows[src][: settings.reference_rows]) if e])
                     for src in dict.fromkeys((name, "arith", "codelike"))}
        refs = {"own": by_source[name], "arith": by_source["arith"], "codelike": by_source["codelike"]}
        results[name] = {"trained_on": "+".join(TRAINED[name][0]), "training": training[name]}
        for domain, groups_ in candidates.items():
            scored: dict[str, list[list[tuple[float, float, bool]]]] = {k: [] for k in refs}
            for group in groups_:
                per: dict[str, list[tuple[float, float, bool]]] = {k: [] for k in refs}
                for enc, correct in group:
                    grad, probs = gradient_and_scores(model, enc["input_ids"], enc["labels"])
                    score, g = min(probs), unit(grad)
                    for k, ref in refs.items():
                        per[k].append((score, float((g * ref).sum()), correct))
                for k in refs:
                    scored[k].append(per[k])
            fig = {k: selection_stats(v) for k, v in scored.items()}
            results[name][domain] = {**fig["own"], "vs_arith_data": fig["arith"], "vs_codelike_data": fig["codelike"],
                                     "candidates": sum(len(g) for g in groups_)}
            own = fig["own"]
            log(f"[similarity] {name} PRM on {domain}: selected {own['selected']:.3f} rejected "
                f"{own['rejected']:.3f} spearman {own['spearman']}")
    table = similarity_table(results, pairs, settings.n)
    return {"experiment": "similarity", "paper": "arXiv 2506.00027 Table 2", "formula": FORMULA,
            "labels": LABELS, "settings": asdict(settings), "results": results, "pairs": pairs,
            "table": table, "reading": reading(results, pairs)}


def _encode(tokenizer: Any, row: Mapping[str, Any]) -> dict[str, list[Any]] | None:
    """``tokenize_row`` as the trainer runs it (separator, max_length); None when no step fits."""
    from prm_plugin.trainers.tokenize import tokenize_row

    enc = tokenize_row(row, tokenizer, step_separator="\n\n", max_length=256)
    return enc if enc["n_steps"][0] > 0 else None
