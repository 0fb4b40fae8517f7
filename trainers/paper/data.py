"""Paper Fig 3 on the world: which training data makes the better PRM?

Value-head PRMs are trained with ``PRMTrainer`` (``transfer.train_prm``) from the shipped
policy's backbone, every one for the same optimizer steps on the same number of rows:

* ``single``: one annotator's Monte-Carlo labels (the policy at temperature 0.7, K
  rollouts per step) of the policy's own sampled solutions, no filter;
* ``consensus``: the same solutions labelled by two annotators (temperatures 0.7 and 1.0)
  and kept only where both put the first error on the same step (``trainers.aslaf``);
* ``mixture``: two differently distributed sources, half each, interleaved: ``single``'s
  MC-labelled policy samples and solutions of the generator's error model with their
  TRUE step labels (``transfer.training_rows``);
* ``truth`` (control): error-model solutions with true labels only, which tells whether
  the mixture gains from diversity or only from its cleaner half.

The labels' quality is measured against the world's true labels; each PRM guides
best-of-N with the shipped policy on ``arith_test`` and its step F1 is measured on the
policy's own samples of the same problems (as in ``transfer``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from prm_plugin.trainers.aslaf import first_error
from prm_plugin.trainers.paper.transfer import (
    TransferSettings,
    pct,
    row_tokens,
    train_prm,
    training_rows,
)
from prm_plugin.trainers.world.labels import AnnotatorPolicy, label_quality

SOURCES = {
    "single": "MC labels of policy samples, one annotator (T={t0}, {k} rollouts/step), unfiltered",
    "consensus": "MC labels of policy samples, two annotators (T={t0}, T={t1}) agreeing on the first error",
    "mixture": "half 'single' rows + half true labels of error-model solutions, interleaved",
    "truth": "true labels of error-model solutions (control)",
}


@dataclass(frozen=True)
class DataSettings:
    """Sizes of one data run (``quick`` and ``full`` are the CLI's)."""

    train_rows: int = 2000  # per PRM (consensus: fewer if the filter keeps fewer)
    pool: int = 2600  # policy solutions MC-labelled by both annotators (the filter keeps ~86%)
    rollouts: int = 4  # K per step prefix per annotator
    temperatures: tuple[float, float] = (0.7, 1.0)  # the two annotators; 'single' is the first
    epochs: float = 2.0  # every PRM: ceil(train_rows / batch) * epochs optimizer steps
    batch: int = 32
    learning_rate: float = 1e-3
    budgets: tuple[int, ...] = (4, 16, 64)
    limit: int | None = 100  # arith_test problems (None: all 300)
    metric_samples: int = 4  # policy samples per test problem for the step metrics
    temperature: float = 0.5  # of the search and of the metric samples
    seed: int = 0
    include_truth: bool = True
    include_shipped: bool = True

    def __post_init__(self) -> None:
        if self.train_rows < 2 or self.pool < self.train_rows:
            raise ValueError(f"need 2 <= train_rows <= pool, got train_rows={self.train_rows}, pool={self.pool}; "
                             "raise pool (about train_rows / 0.8 leaves the consensus filter enough rows).")
        if self.rollouts < 1 or self.batch < 1 or self.epochs <= 0:
            raise ValueError(f"rollouts and batch must be >= 1 and epochs > 0, got rollouts={self.rollouts}, "
                             f"batch={self.batch}, epochs={self.epochs}.")
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"budgets must be a non-empty tuple of n >= 1, got {self.budgets}.")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be None or >= 1, got {self.limit}.")

    @property
    def training(self) -> TransferSettings:
        """The trainer's sizes, shared by every PRM (so their step counts are equal)."""
        return TransferSettings(train_rows=self.train_rows, epochs=self.epochs, batch=self.batch,
                                learning_rate=self.learning_rate, seed=self.seed)


def hard_labels(soft: Sequence[float]) -> list[float]:
    """One annotator's soft MC labels as the prefix pattern the consensus filter uses.

    >>> hard_labels([0.75, 0.0, 0.0, 1.0]), hard_labels([0.5, 0.25])
    ([1.0, 0.0, 0.0, 0.0], [1.0, 1.0])
    """
    err = first_error(soft, 0.0)
    return [0.0 if err != -1 and i >= err else 1.0 for i in range(len(soft))]


def mix_rows(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], total: int) -> list[dict[str, Any]]:
    """``total`` rows, ``ceil(total/2)`` from ``a`` and ``floor(total/2)`` from ``b``, interleaved.

    >>> [r["s"] for r in mix_rows([{"s": "a"}] * 3, [{"s": "b"}] * 3, 5)]
    ['a', 'b', 'a', 'b', 'a']
    """
    ka, kb = total - total // 2, total // 2
    if len(a) < ka or len(b) < kb:
        raise ValueError(f"mix_rows needs {ka} + {kb} rows, got {len(a)} + {len(b)}.")
    return [r for pair in zip(a[:ka], b[:kb]) for r in pair] + list(a[kb:ka])


class CountingAnnotator(AnnotatorPolicy):
    """An annotator that counts its rollouts and the tokens they generate (label cost)."""

    def __init__(self, policy: Any, temperature: float, seed_offset: int, name: str) -> None:
        super().__init__(policy, temperature, seed_offset, name)
        self.rollouts = self.tokens = 0

    def propose(self, prefixes: Sequence[str], **kwargs: Any) -> list[Any]:
        groups = super().propose(prefixes, **kwargs)
        self.rollouts += sum(len(g) for g in groups)
        self.tokens += sum(p.n_tokens for g in groups for p in g)
        return groups


def label_sources(policy: Any, tokenizer: Any, s: DataSettings, exclude: set[str]) -> dict[str, Any]:
    """Sample the pool, MC-label it with both annotators, build every PRM's training rows."""
    from prm_plugin.trainers.aslaf import ConsensusConfig, label_and_filter
    from prm_plugin.trainers.world.build import MAX_TOKENS
    from prm_plugin.trainers.world.labels import answer_checker, sample_solution_rows
    from prm_plugin.world.generator import Difficulty, make_set

    n_problems = -(-s.pool * 11 // 20)  # two samples each, 10% spare for unfinished ones
    problems = [p for p in make_set("arith", n_problems + len(exclude), s.seed + 8000, Difficulty(), "data-")
                if p.question not in exclude][:n_problems]
    pool = sample_solution_rows(policy, tokenizer, problems, samples=2, temperature=1.0, seed=s.seed + 31)[: s.pool]
    t0, t1 = s.temperatures
    annotators = [CountingAnnotator(policy, t0, 0, f"T{t0}"), CountingAnnotator(policy, t1, 1000, f"T{t1}")]
    config = ConsensusConfig(k=s.rollouts, max_tokens=MAX_TOKENS, labels="hard", batch_size=256, seed=s.seed,
                             stop_at_first_error=True)
    kept, report = label_and_filter(pool, annotators, config=config, checker=answer_checker,
                                    policy_prompt=lambda r: r["policy_prompt"])
    if not kept:
        raise RuntimeError(f"the consensus filter kept none of {len(pool)} solutions; raise DataSettings.pool.")
    truth = {(r["prompt"], tuple(r["completions"])): r["true_labels"] for r in pool}
    single = [{"prompt": r["prompt"], "completions": r["completions"], "labels": hard_labels(soft[0])}
              for r, soft in zip(pool, report.soft_labels)]
    consensus = [{k: r[k] for k in ("prompt", "completions", "labels")} for r in kept[: s.train_rows]]
    n = s.train_rows
    exact = training_rows(("arith",), n, s.seed, exclude | {r["prompt"] for r in pool})
    for r in exact:
        truth[(r["prompt"], tuple(r["completions"]))] = [x > 0 for x in r["labels"]]
    rows = {"single": single[:n], "consensus": consensus, "mixture": mix_rows(single, exact, n)}
    if s.include_truth:
        rows["truth"] = exact
    quality = {}
    for name, rs in rows.items():
        pairs = [(r["labels"], truth[(r["prompt"], tuple(r["completions"]))]) for r in rs]
        steps = sum(len(t) for _, t in pairs)
        quality[name] = label_quality(pairs).to_json() | {  # the share of negatives steers a short training
            "labelled_wrong_share": sum(x <= 0 for lab, _ in pairs for x in lab) / steps,
            "truly_wrong_share": sum(not x for _, t in pairs for x in t) / steps}
    cost = {a.name: {"solutions": len(pool), "rollouts": a.rollouts, "generated_tokens": a.tokens}
            for a in annotators}
    return {"rows": rows, "quality": quality, "consensus": {k: v for k, v in report.to_json().items() if k != "dropped_indices"},
            "annotator_cost": cost, "pool": len(pool)}


def data_table(results: dict[str, dict[str, Any]], budgets: Sequence[int]) -> str:
    """The Markdown table; missing figures print as "—".

    >>> print(data_table({"a": {"training": {"rows": 8, "train_tokens": 900, "steps": 2},
    ...       "label_quality": {"step_accuracy": 0.9, "first_error_accuracy": 0.75},
    ...       "bon": {"4": 0.5}, "step_f1": 0.9, "error_step_f1": 0.5}}, [4]).splitlines()[2])
    | a | 8 / 900 / 2 | 0.900 / 0.750 | 50.0% | 0.900 / 0.500 |
    """
    lines = ["| PRM | train rows / tokens / steps | label step acc / first-error acc | "
             + " | ".join(f"bon@{n}" for n in budgets) + " | step F1 / error F1 |",
             "|---" * (len(budgets) + 4) + "|"]
    for name, res in results.items():
        tr, q = res.get("training"), res.get("label_quality")
        cells = [name, "—" if tr is None else f"{tr['rows']} / {tr['train_tokens']:,} / {tr['steps']}",
                 "—" if q is None else f"{q['step_accuracy']:.3f} / {q['first_error_accuracy']:.3f}"]
        cells += [pct(res.get("bon", {}).get(str(n))) for n in budgets]
        cells.append("—" if res.get("step_f1") is None else f"{res['step_f1']:.3f} / {res['error_step_f1']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reproduce(out: Path, *, quick: bool = False, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The CLI's entry: the full or ``quick`` sizes; ``limit`` arithmetic test problems."""
    ds = DataSettings(seed=seed)
    if quick:
        ds = replace(ds, train_rows=768, pool=960, epochs=2.0, limit=40, metric_samples=2)
    if limit is not None:
        ds = replace(ds, limit=limit)
    report = run_data(out, ds)
    report["summary"] = f"fairness: {report['fairness']}\n{report['table']}"
    return report


def run_data(out: Path, settings: DataSettings, log: Any = print) -> dict[str, Any]:
    """Label, train every PRM, evaluate; write ``data.json`` and ``data.png`` into ``out``."""
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
    policy = HFPolicy.from_pretrained(str(world["policy"]), batch_size=256)
    problems = load_set("arith_test")[: settings.limit]
    held_out = {p.question for name in ("arith_test", "arith_val", "codelike_test") for p in load_set(name)}
    log(f"[data] sampling {settings.pool} policy solutions, MC-labelling them with two annotators")
    labels = label_sources(policy, tokenizer, settings, held_out)
    seconds = {"labels": round(time.perf_counter() - t0, 1)}
    (out / "rows").mkdir(exist_ok=True)
    for name, rows in labels["rows"].items():  # every PRM's training rows, to inspect
        (out / "rows" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    t0_, t1_ = settings.temperatures
    results: dict[str, dict[str, Any]] = {}
    prms: dict[str, str] = {}
    for name, rows in labels["rows"].items():
        log(f"[data] training the {name} PRM: {len(rows)} rows, {settings.training.max_steps} steps")
        # PRMTrainer seeds the fresh value head with the training seed, so every PRM starts from
        # the same head whatever ran before it (tests/test_trainer_train.py).
        train = train_prm(out / "prms" / name, world["policy"], rows, settings.training)
        train["train_tokens"] = row_tokens(tokenizer, rows)
        prms[name] = str(out / "prms" / name)
        results[name] = {"labels": SOURCES[name].format(t0=t0_, t1=t1_, k=settings.rollouts),
                         "label_quality": labels["quality"][name], "training": train}
    if settings.include_shipped:
        prms["shipped"] = str(world["prm"])
        results["shipped"] = {"labels": "the world's PRM: consensus MC labels, 3434 rows, 5 epochs (not equal steps)"}
    seconds["training"] = round(time.perf_counter() - t0 - seconds["labels"], 1)
    sp = search_problems(tokenizer, problems)
    samples = sample_solution_rows(policy, tokenizer, problems, samples=settings.metric_samples,
                                   temperature=settings.temperature, seed=settings.seed + 7)
    for name, path in prms.items():
        prm = load_prm(path)
        res = results[name]
        res["bon"] = {str(n): run_strategy("bon", n, problems, sp, policy, prm, temperature=settings.temperature,
                                           seed=settings.seed)["accuracy"] for n in settings.budgets}
        metrics = prm_step_metrics(prm, samples)
        res.update(step_f1=metrics["step_f1"], error_step_f1=metrics["error_step_f1"], metrics=metrics)
        log(f"[data] {name}: bon " + " ".join(f"@{n} {a:.3f}" for n, a in res["bon"].items())
            + f", step F1 {res['step_f1']:.3f} / error F1 {res['error_step_f1']:.3f}")
    seconds["evaluation"] = round(time.perf_counter() - t0 - seconds["labels"] - seconds["training"], 1)
    seconds["total"] = round(time.perf_counter() - t0, 1)
    report = {"experiment": "data", "paper": "arXiv 2506.00027 Fig 3",
              "fairness": (f"every trained PRM: {settings.training.max_steps} optimizer steps of batch "
                           f"{settings.batch} on {settings.train_rows} rows (consensus: "
                           f"{len(labels['rows']['consensus'])}, what the filter kept); tokens differ (recorded)"),
              "mixture": ("two sources that differ in both the solutions (the policy's samples at T=1.0 vs the "
                          "generator's error model) and the labeller (one MC annotator vs the truth); the "
                          "'truth' control separates diversity from the cleaner half's label quality"),
              "settings": asdict(settings), "problems": len(problems), "label_pool": labels["pool"],
              "consensus": labels["consensus"], "annotator_cost": labels["annotator_cost"],
              "results": results, "table": data_table(results, settings.budgets), "seconds": seconds}
    (out / "data.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_data(results, settings.budgets, out / "data.png")
    return report


def plot_data(results: dict[str, dict[str, Any]], budgets: Sequence[int], path: Path) -> Path:
    """Left: best-of-N accuracy against n per PRM (log x); right: step F1 and error-step F1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, res in results.items():
        left.plot(list(budgets), [100 * res.get("bon", {}).get(str(n), 0.0) for n in budgets], marker="o", label=name)
    left.set_xscale("log", base=2)
    left.set_xticks(list(budgets), [str(n) for n in budgets])
    left.set_xlabel("best-of-N budget n")
    left.set_ylabel("arith_test accuracy (%)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    names = list(results)
    for i, key in enumerate(("step_f1", "error_step_f1")):
        right.bar([j + 0.4 * i for j in range(len(names))], [results[n].get(key) or 0.0 for n in names], 0.4,
                  label=key.replace("_", " "))
    right.set_xticks([j + 0.2 for j in range(len(names))], names)
    right.set_ylim(0, 1)
    right.set_ylabel("F1 against the true step labels")
    right.legend(fontsize=8)
    fig.suptitle("PRM training data: one annotator, consensus filter, mixture")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
