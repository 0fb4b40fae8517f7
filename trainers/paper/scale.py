"""Paper Figs 1-2 on the world: PRM size against search accuracy and step F1, and training curves.

Three value-head PRMs of different sizes are trained with ``PRMTrainer`` on the same rows
for the same optimizer steps (``transfer.training_rows`` and ``transfer.train_prm``: true
step labels of error-model arithmetic solutions). The sizes are backbones cut from the
shipped policy: its first 1, 2 and 4 (all) decoder layers, embeddings and final norm
kept. That keeps pretrained features at every size and needs no extra pretraining; a
randomly initialised small backbone would have to learn arithmetic from the PRM labels
alone, and fine-tuning new policies of each size would cost more than the whole run.
Each PRM guides best-of-N with the shipped policy on ``arith_test``, and its step F1 and
error-step F1 are measured against the true labels on the policy's own samples. During
training a ``TrainerCallback`` records both F1s on a fixed held-out set of labelled rows
every ``eval_every`` steps; ``take_off`` computes where each curve first passes halfway
from what calling every step correct scores to where the curve ends.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from prm_plugin.trainers.paper.transfer import LABELS, TransferSettings, train_prm, training_rows

CURVE_METRICS = ("step_f1", "error_step_f1")
SIZES = "the shipped policy's first k decoder layers (pretrained embeddings, blocks and final norm kept)"


@dataclass(frozen=True)
class ScaleSettings:
    """Sizes of one scale run (``quick`` and ``full`` are the CLI's)."""

    layers: tuple[int, ...] = (1, 2, 4)  # decoder layers kept from the shipped policy (it has 4)
    train_rows: int = 2048
    epochs: float = 2.0  # every PRM takes ceil(train_rows / batch) * epochs optimizer steps
    batch: int = 32
    learning_rate: float = 1e-3
    eval_every: int = 8  # optimizer steps between two points of the training curve
    eval_rows: int = 256  # held-out labelled rows of the training curve
    n: int = 16
    limit: int | None = 100  # arith_test problems (None: the whole set)
    metric_samples: int = 4  # policy samples per test problem for the step metrics
    temperature: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.layers or any(b <= a for a, b in zip(self.layers, self.layers[1:])) or self.layers[0] < 1:
            raise ValueError(f"layers must be increasing positive layer counts, e.g. (1, 2, 4); got {self.layers}.")
        if self.eval_every < 1 or self.eval_rows < 1:
            raise ValueError(f"eval_every and eval_rows must be at least 1; got {self.eval_every}, {self.eval_rows}.")

    @property
    def training(self) -> TransferSettings:
        """The settings ``train_prm`` reads (steps, batch, learning rate, seed)."""
        return TransferSettings(train_rows=self.train_rows, epochs=self.epochs, batch=self.batch,
                                learning_rate=self.learning_rate, seed=self.seed)


def take_off(
    points: Sequence[tuple[int, float]], start: float | None = None, fraction: float = 0.5, min_rise: float = 0.02,
) -> int | None:
    """The first step from which the curve stays above ``start + fraction * (end - start)``.

    ``points`` are (step, value) in step order; NaN (also as ``start``) counts as 0.
    ``start`` defaults to the first point's value (``run_scale`` passes what calling every
    step correct scores).
    ``None`` when the curve never takes off: it ends less than ``min_rise`` above ``start``.
    "Stays above", not "first above": a fresh head's first point can sit above the bar by
    the luck of its initialisation and then fall to the floor before learning begins.

    >>> take_off([(0, 0.1), (4, 0.2), (8, 0.6), (12, 0.9)])
    8
    >>> take_off([(0, 0.5), (4, 0.6), (8, 0.49)]) is None
    True
    """
    if not points:
        return None
    values = [0.0 if math.isnan(v) else v for _, v in points]
    if start is None:
        start = values[0]
    elif math.isnan(start):
        start = 0.0
    end = values[-1]
    if end - start < min_rise or end <= start:
        return None
    bar = start + fraction * (end - start)
    first = len(values) - 1  # the last point is above the bar
    while first > 0 and values[first - 1] > bar:
        first -= 1
    return points[first][0]


def gains(sizes: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Change of ``key`` per doubling of parameters between consecutive sizes.

    >>> gains([{"parameters": 100, "acc": 0.5}, {"parameters": 200, "acc": 0.7},
    ...        {"parameters": 800, "acc": 0.8}], "acc")
    [0.2, 0.05]
    """
    return [round((b[key] - a[key]) / math.log2(b["parameters"] / a["parameters"]), 4)
            for a, b in zip(sizes, sizes[1:])]


def make_recorder() -> Any:
    """A ``TrainerCallback`` that keeps (step, eval metrics) of every evaluation in ``.points``
    and asks for one more evaluation after the last step when it is not on the grid."""
    from transformers import TrainerCallback

    class CurveRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.points: list[dict[str, float]] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step >= state.max_steps:
                control.should_evaluate = True
            return control

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        **kwargs: Any) -> None:
            m = metrics or {}
            if self.points and self.points[-1]["step"] == state.global_step:
                return  # the final step can be on the grid and asked for again
            self.points.append({"step": state.global_step, "rows_seen": state.global_step * args.train_batch_size,
                                **{k: round(float(m.get(f"eval_{k}", math.nan)), 4) for k in CURVE_METRICS},
                                "loss": round(float(m.get("eval_loss", math.nan)), 4)})

    return CurveRecorder()


def cut_backbone(policy_path: Path, layers: int, out: Path) -> Path:
    """Save the policy with only its first ``layers`` decoder layers (and its tokenizer) to ``out``."""
    from torch import nn
    from transformers import AutoModelForCausalLM

    from prm_plugin._hf_compat import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(policy_path))
    total = model.config.num_hidden_layers
    if layers > total:
        raise ValueError(f"the policy has {total} layers; cannot keep {layers}. Use layers <= {total}.")
    model.model.layers = nn.ModuleList(list(model.model.layers)[:layers])
    model.config.num_hidden_layers = layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layers]
    model.save_pretrained(str(out))
    load_tokenizer(str(policy_path)).save_pretrained(str(out))
    return out


def scale_table(sizes: Sequence[dict[str, Any]], n: int) -> str:
    """The Markdown table: one row per size.

    >>> print(scale_table([{"name": "1 layer", "parameters": 1234, "bon": 0.5, "step_f1": 0.9,
    ...     "error_step_f1": 0.4, "take_off": {"step_f1": 8, "error_step_f1": None},
    ...     "final": {"step_f1": 0.95, "error_step_f1": 0.5}}], 4).splitlines()[2])
    | 1 layer | 1,234 | 50.0% | 0.900 / 0.400 | 0.950 / 0.500 | 8 / never |
    """
    lines = [f"| PRM backbone | parameters | arith bon@{n} | test samples: step F1 / error F1 | "
             "held-out at the end: step F1 / error F1 | take-off step: step F1 / error F1 |", "|---" * 6 + "|"]
    for s in sizes:
        off = " / ".join("never" if s["take_off"][k] is None else str(s["take_off"][k]) for k in CURVE_METRICS)
        lines.append(f"| {s['name']} | {s['parameters']:,} | {100 * s['bon']:.1f}% | "
                     f"{s['step_f1']:.3f} / {s['error_step_f1']:.3f} | "
                     f"{s['final']['step_f1']:.3f} / {s['final']['error_step_f1']:.3f} | {off} |")
    return "\n".join(lines)


def reproduce(out: Path, *, quick: bool = False, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The CLI's entry: the full or ``quick`` sizes; ``limit`` arith_test problems."""
    ss = ScaleSettings(seed=seed)
    if quick:
        ss = replace(ss, train_rows=1024, epochs=2.0, eval_every=4, eval_rows=128, n=8, limit=60, metric_samples=2)
    if limit is not None:
        ss = replace(ss, limit=limit)
    report = run_scale(out, ss)
    report["summary"] = (f"sizes: {report['sizes']}\nfairness: {report['fairness']}\n{report['table']}\n"
                         f"held-out F1s of calling every step correct: {report['held_out_all_correct']}\n"
                         f"per doubling of parameters: {json.dumps(report['gains_per_doubling'])}")
    return report


def run_scale(out: Path, settings: ScaleSettings, log: Callable[..., Any] = print) -> dict[str, Any]:
    """Train one PRM per size (recording its curve), evaluate each, write ``scale.json`` and ``scale.png``."""
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.trainers.metrics import step_metrics
    from prm_plugin.trainers.paper.runs import run_strategy
    from prm_plugin.trainers.world.figures import prm_step_metrics
    from prm_plugin.trainers.world.labels import sample_solution_rows
    from prm_plugin.world import load_set, paths
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.tokenizer import build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world, tokenizer, training = paths(), build_tokenizer(), settings.training
    problems = load_set("arith_test")[: settings.limit]
    held_out = {p.question for s in ("arith_test", "arith_val", "codelike_test") for p in load_set(s)}
    rows = training_rows(("arith",), settings.train_rows, settings.seed, held_out)
    # other problem seeds (training_rows offsets them by the seed), none of the training questions
    eval_rows = training_rows(("arith",), settings.eval_rows, settings.seed + 1000,
                              held_out | {r["prompt"] for r in rows})
    # what a head that calls every step correct scores: the floor a curve must clear to mean learning
    floor = step_metrics([([1.0] * len(r["labels"]), r["labels"]) for r in eval_rows])
    constant = {m: round(floor[m], 4) for m in CURVE_METRICS}
    sizes: list[dict[str, Any]] = []
    for k in settings.layers:
        name = f"{k} layer" + ("s" if k > 1 else "")
        backbone = cut_backbone(world["policy"], k, out / "backbones" / f"{k}")
        recorder = make_recorder()
        log(f"[scale] training the {name} PRM: {len(rows)} rows, {training.max_steps} steps")
        train = train_prm(out / "prms" / f"{k}", backbone, rows, training, eval_rows=eval_rows,
                          eval_steps=settings.eval_every, callbacks=[recorder])
        curve = recorder.points
        sizes.append({"name": name, "layers": k, "parameters": train.pop("parameters"), "training": train,
                      "curve": curve, "final": {m: curve[-1][m] for m in CURVE_METRICS},
                      "take_off": {m: take_off([(p["step"], p[m]) for p in curve], constant[m]) for m in CURVE_METRICS},
                      "take_off_from_first_point": {m: take_off([(p["step"], p[m]) for p in curve])
                                                    for m in CURVE_METRICS}})
    policy = HFPolicy.from_pretrained(str(world["policy"]), batch_size=256)
    sp = search_problems(tokenizer, problems)
    samples = sample_solution_rows(policy, tokenizer, problems, samples=settings.metric_samples,
                                   temperature=settings.temperature, seed=settings.seed + 7)
    for size in sizes:
        prm = load_prm(str(out / "prms" / str(size["layers"])))
        size["bon"] = run_strategy("bon", settings.n, problems, sp, policy, prm, temperature=settings.temperature,
                                   seed=settings.seed)["accuracy"]
        size["metrics"] = prm_step_metrics(prm, samples)
        size.update(step_f1=size["metrics"]["step_f1"], error_step_f1=size["metrics"]["error_step_f1"])
        log(f"[scale] {size['name']} ({size['parameters']:,} parameters): bon@{settings.n} {size['bon']:.3f} "
            f"step F1 {size['step_f1']:.3f} error F1 {size['error_step_f1']:.3f} take-off {size['take_off']}")
    report = {"experiment": "scale", "paper": "arXiv 2506.00027 Figs 1-2", "labels": LABELS, "sizes": SIZES,
              "fairness": (f"every PRM: the same {len(rows)} rows in the same order, {training.max_steps} "
                           f"optimizer steps of batch {settings.batch}, learning rate {settings.learning_rate}"),
              "take_off_rule": ("take_off: the first evaluated step from which the curve stays above halfway "
                                "from what calling every step "
                                "correct scores on the held-out rows (held_out_all_correct) to the curve's last "
                                "point; never when the curve ends less than 0.02 above that. "
                                "take_off_from_first_point: the same from the curve's first point (the fresh "
                                "head's F1, which depends on its initialisation, not on learning)"),
              "settings": asdict(settings), "problems": len(problems), "eval_rows": len(eval_rows),
              "held_out_all_correct": constant, "results": sizes,
              "gains_per_doubling": {k: gains(sizes, k) for k in ("bon", "step_f1", "error_step_f1")},
              "table": scale_table(sizes, settings.n), "seconds": round(time.perf_counter() - t0, 1)}
    (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_scale(sizes, settings.n, out / "scale.png", constant["step_f1"])
    return report


def plot_scale(sizes: Sequence[dict[str, Any]], n: int, path: Path, constant_step_f1: float | None = None) -> Path:
    """Two panels: the figures against parameters (log x), and held-out F1 against training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [s["parameters"] for s in sizes]
    for key, label in (("bon", f"arith bon@{n} accuracy"), ("step_f1", "step F1 (test samples)"),
                       ("error_step_f1", "error-step F1 (test samples)")):
        left.plot(xs, [s[key] for s in sizes], marker="o", label=label)
    for s in sizes:
        left.annotate(s["name"], (s["parameters"], s["bon"]), fontsize=8, textcoords="offset points",
                      xytext=(0, 6))
    left.set_xscale("log")
    left.set_xlabel("PRM parameters (log scale)")
    left.set_ylim(0, 1.02)
    left.legend(fontsize=8)
    for i, s in enumerate(sizes):
        color = f"C{i}"
        steps = [p["step"] for p in s["curve"]]
        right.plot(steps, [p["error_step_f1"] for p in s["curve"]], color=color, marker=".", label=s["name"])
        right.plot(steps, [p["step_f1"] for p in s["curve"]], color=color, linestyle=":")
        if s["take_off"]["error_step_f1"] is not None:
            right.axvline(s["take_off"]["error_step_f1"], color=color, linestyle="--", alpha=0.5)
    if constant_step_f1 is not None:
        right.axhline(constant_step_f1, color="grey", linestyle=":", alpha=0.7, label="every step called correct")
    right.set_xlabel("optimizer step")
    right.set_ylabel("held-out F1 (solid: error steps; dotted: steps)")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8, title="dashed: error-F1 take-off")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
