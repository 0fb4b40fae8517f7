"""Paper Table 1 on the world: do PRMs trained on one domain guide search on the other?

Three PRMs are trained with ``PRMTrainer`` from the shipped policy's backbone, on
arithmetic only, on code-like only, and on both (half of each), with the same number
of training rows and the same number of optimizer steps. Their labels are the world's
TRUE step labels (``true_step_labels``) of solutions drawn from the generator's error
model (the distribution the shipped policy was fine-tuned to imitate), not Monte-Carlo
labels: the experiment isolates the domain of the training data, and the true labels
take no policy rollouts. Each PRM (and the shipped one, trained on Monte-Carlo labels
of arithmetic) then guides best-of-N and beam search with the shipped policy on both
test sets, and its step F1 is measured on the policy's own samples of both test sets.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from prm_plugin.world.generator import (
    DOMAINS,
    Difficulty,
    ErrorModel,
    make_set,
    render_solution,
    sample_solution,
)
from prm_plugin.world.grading import true_step_labels

#: name -> the training rows' domains, each given an equal share of the rows
MIXES: dict[str, tuple[str, ...]] = {"arith": ("arith",), "codelike": ("codelike",), "both": DOMAINS}
LABELS = "true step labels (prm_plugin.world.grading.true_step_labels) of error-model solutions"
TEST_SETS = {"arith": "arith_test", "codelike": "codelike_test"}


@dataclass(frozen=True)
class TransferSettings:
    """Sizes of one transfer run (``quick`` and ``full`` are the CLI's)."""

    train_rows: int = 2000  # per PRM, split equally between its domains
    epochs: float = 2.0  # every PRM takes ceil(train_rows / batch) * epochs optimizer steps (126 full)
    batch: int = 32
    learning_rate: float = 1e-3
    n: int = 16
    limit: int | None = 100  # test problems per domain (None: the whole set)
    metric_samples: int = 4  # policy samples per test problem for the step metrics
    temperature: float = 0.5
    seed: int = 0
    include_shipped: bool = True  # also evaluate the shipped PRM (MC labels, arithmetic)

    @property
    def max_steps(self) -> int:
        return max(1, round(-(-self.train_rows // self.batch) * self.epochs))


def training_rows(domains: Sequence[str], total: int, seed: int, exclude: set[str]) -> list[dict[str, Any]]:
    """``total`` stepwise rows split equally over ``domains`` (interleaved), true labels.

    Problems come from seeds no test set uses; any question in ``exclude`` is skipped.
    """
    import random

    per = [total // len(domains) + (i < total % len(domains)) for i in range(len(domains))]
    parts = []
    for i, (domain, k) in enumerate(zip(domains, per)):
        rng = random.Random(seed + 100 + i)
        problems = [p for p in make_set(domain, k + len(exclude), seed + 7000 + i, Difficulty(), "paper-")
                    if p.question not in exclude][:k]
        rows = []
        for p in problems:
            steps = render_solution(p, sample_solution(p, rng, ErrorModel()))
            rows.append({"prompt": p.question, "completions": steps,
                         "labels": [float(x) for x in true_step_labels(p, steps)]})
        parts.append(rows)
    return [r for group in zip(*parts) for r in group] + [r for part in parts for r in part[min(per):]]


def row_tokens(tokenizer: Any, rows: Sequence[dict[str, Any]]) -> int:
    """Tokens of the rows' question and steps, as a PRM reads them (what ``train_tokens`` records)."""
    return sum(len(tokenizer(r["prompt"] + "\n" + "\n\n".join(r["completions"]))["input_ids"]) for r in rows)


def train_prm(
    path: Path, policy_path: Path, rows: list[dict[str, Any]], settings: TransferSettings, *,
    eval_rows: list[dict[str, Any]] | None = None, eval_steps: int = 0, callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train a value-head PRM on ``rows`` for exactly ``settings.max_steps`` steps; save it to ``path``.

    ``policy_path`` is the backbone checkpoint. With ``eval_rows``, the trainer also evaluates
    on them before the first step and every ``eval_steps`` steps (``callbacks``, e.g. a
    ``TrainerCallback`` with ``on_evaluate``, see the metrics).
    """
    import torch

    from prm_plugin.trainers import PRMConfig, PRMTrainer

    args = PRMConfig(
        output_dir=str(path / "_run"), max_steps=settings.max_steps, per_device_train_batch_size=settings.batch,
        learning_rate=settings.learning_rate, lr_scheduler_type="cosine",
        warmup_steps=max(1, settings.max_steps // 20), logging_steps=25, save_strategy="no", report_to="none",
        seed=settings.seed, step_separator="\n\n", max_length=256, use_cpu=not torch.cuda.is_available(),
        **({"eval_strategy": "steps", "eval_steps": eval_steps, "eval_on_start": True,
            "per_device_eval_batch_size": 64} if eval_rows else {}),
    )
    start = time.perf_counter()
    trainer = PRMTrainer(model=str(policy_path), args=args, train_dataset=rows, eval_dataset=eval_rows,
                         callbacks=list(callbacks))
    out = trainer.train()
    trainer.save_prm(str(path))
    shutil.rmtree(path / "_run", ignore_errors=True)
    return {"steps": settings.max_steps, "rows": len(rows), "train_loss": round(float(out.training_loss), 4),
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "seconds": round(time.perf_counter() - start, 1)}


def transfer_table(results: dict[str, dict[str, Any]], n: int) -> str:
    """The Markdown table: per PRM, bon/beam accuracy and step F1 on each domain.

    ``results[prm]`` holds ``trained_on`` and, per domain, ``{"bon": acc, "beam": acc,
    "step_f1": f1}`` and optionally ``"error_step_f1"`` (F1 of the steps called wrong,
    printed after a slash); missing figures print as "—".

    >>> print(transfer_table({"a": {"trained_on": "arith", "arith": {"bon": 0.5, "beam": 0.25,
    ...       "step_f1": 0.9, "error_step_f1": 0.5}}}, 4).splitlines()[2])
    | a | arith | 50.0% | 25.0% | 0.900 / 0.500 | — | — | — |
    """
    head = (f"| PRM | trained on | arith bon@{n} | arith beam@{n} | arith step F1 / error F1 | "
            f"codelike bon@{n} | codelike beam@{n} | codelike step F1 / error F1 |")
    lines = [head, "|---" * 8 + "|"]
    for name, res in results.items():
        cells = [name, str(res.get("trained_on", "?"))]
        for domain in TEST_SETS:
            fig = res.get(domain, {})
            f1 = "—" if fig.get("step_f1") is None else f"{fig['step_f1']:.3f}"
            err = fig.get("error_step_f1", fig.get("metrics", {}).get("error_step_f1"))
            if err is not None:
                f1 += f" / {err:.3f}"
            cells += [pct(fig.get("bon")), pct(fig.get("beam")), f1]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal; None as a dash."""
    return "—" if x is None else f"{100 * x:.1f}%"


def reproduce(out: Path, *, quick: bool = False, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The CLI's entry: the full or ``quick`` sizes; ``limit`` test problems per domain."""
    ts = TransferSettings(seed=seed)
    if quick:
        ts = replace(ts, train_rows=1024, epochs=1.5, n=4, limit=40, metric_samples=2)
    if limit is not None:
        ts = replace(ts, limit=limit)
    report = run_transfer(out, ts)
    report["summary"] = f"labels: {report['labels']}\nfairness: {report['fairness']}\n{report['table']}"
    return report


def run_transfer(out: Path, settings: TransferSettings, log: Any = print) -> dict[str, Any]:
    """Train the three PRMs, evaluate every PRM on both domains, write JSON and PNG into ``out``."""
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.trainers.paper.runs import run_strategy
    from prm_plugin.trainers.world.figures import prm_step_metrics
    from prm_plugin.trainers.world.labels import sample_solution_rows
    from prm_plugin.world import load_set, paths
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.tokenizer import build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world, tokenizer = paths(), build_tokenizer()
    tests = {d: load_set(s)[: settings.limit] for d, s in TEST_SETS.items()}
    held_out = {p.question for s in ("arith_test", "arith_val", "codelike_test") for p in load_set(s)}
    prms: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, domains in MIXES.items():
        rows = training_rows(domains, settings.train_rows, settings.seed, held_out)
        log(f"[transfer] training the {name} PRM: {len(rows)} rows, {settings.max_steps} steps")
        train = train_prm(out / "prms" / name, world["policy"], rows, settings)
        train["train_tokens"] = row_tokens(tokenizer, rows)
        prms[name] = str(out / "prms" / name)
        results[name] = {"trained_on": "+".join(domains), "training": train}
    if settings.include_shipped:
        prms["shipped"] = str(world["prm"])
        results["shipped"] = {"trained_on": "arith (MC labels)"}
    policy = HFPolicy.from_pretrained(str(world["policy"]), batch_size=256)
    for domain, problems in tests.items():
        sp = search_problems(tokenizer, problems)
        samples = sample_solution_rows(policy, tokenizer, problems, samples=settings.metric_samples,
                                       temperature=settings.temperature, seed=settings.seed + 7)
        for name, prm_path in prms.items():
            prm = load_prm(prm_path)
            fig = {s: run_strategy(s, settings.n, problems, sp, policy, prm, temperature=settings.temperature,
                                   seed=settings.seed)["accuracy"] for s in ("bon", "beam")}
            metrics = prm_step_metrics(prm, samples)
            fig.update(step_f1=metrics["step_f1"], error_step_f1=metrics["error_step_f1"], metrics=metrics)
            results[name][domain] = fig
            log(f"[transfer] {name} PRM on {domain}: bon {fig['bon']:.3f} beam {fig['beam']:.3f} "
                f"step F1 {fig['step_f1']:.3f}")
    table = transfer_table(results, settings.n)
    report = {"experiment": "transfer", "paper": "arXiv 2506.00027 Table 1", "labels": LABELS,
              "fairness": (f"every trained PRM: {settings.train_rows} rows (both: half per domain) and "
                           f"{settings.max_steps} optimizer steps of batch {settings.batch}"),
              "settings": asdict(settings), "problems": {d: len(p) for d, p in tests.items()},
              "results": results, "table": table, "seconds": round(time.perf_counter() - t0, 1)}
    (out / "transfer.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_transfer(results, settings.n, out / "transfer.png")
    return report


def plot_transfer(results: dict[str, dict[str, Any]], n: int, path: Path) -> Path:
    """Grouped bars: each PRM's bon and beam accuracy on each domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(d, s) for d in TEST_SETS for s in ("bon", "beam")]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(results))
    for i, (name, res) in enumerate(results.items()):
        ys = [100 * res.get(d, {}).get(s, 0.0) for d, s in groups]
        ax.bar([g + i * width for g in range(len(groups))], ys, width, label=f"{name} ({res.get('trained_on')})")
    ax.set_xticks([g + width * (len(results) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels([f"{d}\n{s}@{n}" for d, s in groups])
    ax.set_ylabel("accuracy (%)")
    ax.set_title("PRM transfer between the world's domains")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
