"""Rebuild the whole synthetic world from scratch: ``prm-plugin world build``.

1. the problem sets (test, validation, code-like test) from fixed seeds;
2. the policy: a tiny Qwen2 trained with TRL's SFT trainer on noisy solutions;
3. PRM data: the policy's own samples, Monte-Carlo labelled by two annotators (the
   policy at two temperatures) and consensus-filtered (``trainers.aslaf``); the MC
   labels' accuracy against the true labels is measured with and without the filter;
4. the PRM: a value head on the policy's backbone, trained with ``PRMTrainer``;
5. the figures (``prm_plugin.world.evaluate``), printed and written to
   ``figures.json`` (and into the README's world section with ``--readme``).

Every step is seeded; ``--scale tiny`` runs the same pipeline in about a minute (CI).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prm_plugin.trainers.world.sft import PolicyShape
from prm_plugin.world.generator import Difficulty, ErrorModel, make_set

MAX_TOKENS = 256  # longer than any solution the world's policy should write
SET_SIZES = {"arith_test": 300, "arith_val": 300, "codelike_test": 200}
SET_SEEDS = {"arith_test": 1001, "arith_val": 1002, "codelike_test": 1003}


@dataclass
class BuildConfig:
    """Every knob of a world build (``full`` is what ships; ``tiny`` is for CI)."""

    seed: int = 0
    difficulty: Difficulty = field(default_factory=Difficulty)
    errors: ErrorModel = field(default_factory=ErrorModel)
    shape: PolicyShape = field(default_factory=PolicyShape)
    sft_examples: int = 40000
    sft_epochs: float = 1.0
    sft_batch: int = 64
    sft_lr: float = 1.5e-3
    label_problems: int = 2000
    label_samples: int = 2
    mc_rollouts: int = 4
    annotator_temperatures: tuple[float, float] = (0.7, 1.0)
    prm_epochs: float = 5.0
    prm_batch: int = 32
    prm_lr: float = 1e-3
    eval_n: int = 16
    eval_limit: int | None = None  # evaluate on the first k test problems only
    set_sizes: dict[str, int] = field(default_factory=lambda: dict(SET_SIZES))


SCALES = {
    "full": BuildConfig(),
    "tiny": BuildConfig(
        shape=PolicyShape(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128),
        sft_examples=400, sft_batch=32, label_problems=12, label_samples=2, mc_rollouts=2,
        prm_epochs=1.0, eval_n=4, eval_limit=8, set_sizes={k: 20 for k in SET_SIZES},
    ),
}


def write_sets(out: Path, cfg: BuildConfig) -> dict[str, list[Any]]:
    sets = {}
    for name, size in cfg.set_sizes.items():
        domain = name.split("_")[0]
        problems = make_set(domain, size, SET_SEEDS[name] + cfg.seed, cfg.difficulty, prefix=name.split("_")[1] + "-")
        (out / f"{name}.jsonl").write_text("".join(json.dumps(p.to_json()) + "\n" for p in problems))
        sets[name] = problems
    return sets


def build_world(out: Path, cfg: BuildConfig, log: Any = print, resume: bool = False) -> dict[str, Any]:
    """Run the whole pipeline into ``out`` and return the figures.

    ``resume=True`` keeps a policy that an interrupted build of the same config already
    wrote to ``out/policy`` (the longest step) instead of training it again.
    """
    import torch

    from prm_plugin.world.tokenizer import build_tokenizer

    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sets = write_sets(out, cfg)
    tokenizer = build_tokenizer()
    held_out = {p.question for s in sets.values() for p in s}

    if resume and (out / "policy" / "model.safetensors").is_file():
        from prm_plugin.policy.hf import HFPolicy

        log(f"[world] 1/4 reusing the policy in {out / 'policy'} (--resume)")
        policy = HFPolicy.from_pretrained(str(out / "policy"), batch_size=256)
        timings["policy_reused"] = 1.0
        sft = out / "policy_sft_seconds.txt"
        if sft.is_file():
            timings["policy_sft_s"] = float(sft.read_text())
    else:
        log("[world] 1/4 training the policy (TRL SFT)")
        policy = _train_policy(out / "policy", tokenizer, cfg, held_out)
        (out / "policy_sft_seconds.txt").write_text(f"{time.perf_counter() - t0:.0f}\n")
    timings["policy_s"] = time.perf_counter() - t0

    log("[world] 2/4 Monte-Carlo labelling with consensus filtering")
    rows, label_report = _label(policy, tokenizer, cfg, held_out)
    timings["labels_s"] = time.perf_counter() - t0 - timings["policy_s"]

    log(f"[world] 3/4 training the PRM on {len(rows)} consensus rows")
    _train_prm(out / "prm", out / "policy", rows, cfg)
    timings["prm_s"] = time.perf_counter() - t0 - timings["policy_s"] - timings["labels_s"]

    log("[world] 4/4 evaluating")
    figures = _evaluate(out, tokenizer, sets, cfg)
    timings["eval_s"] = time.perf_counter() - t0 - sum(v for k, v in timings.items() if k.endswith("_s")
                                                       and k != "policy_sft_s")
    timings["total_s"] = time.perf_counter() - t0
    report = {"figures": figures, "labels": label_report, "timings": timings,
              "config": _jsonable(asdict(cfg))}
    (out / "figures.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _train_policy(path: Path, tokenizer: Any, cfg: BuildConfig, held_out: set[str]) -> Any:
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.trainers.world.sft import sft_rows, train_policy

    rows = [r for r in sft_rows(cfg.sft_examples, cfg.seed + 11, cfg.difficulty, cfg.errors)
            if r["prompt"][0]["content"] not in held_out]
    train_policy(path, tokenizer, rows, shape=cfg.shape, epochs=cfg.sft_epochs,
                 batch_size=cfg.sft_batch, learning_rate=cfg.sft_lr, seed=cfg.seed)
    shutil.rmtree(path / "_sft_run", ignore_errors=True)
    return HFPolicy.from_pretrained(str(path), batch_size=256)


def _label(policy: Any, tokenizer: Any, cfg: BuildConfig, held_out: set[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from prm_plugin.trainers.aslaf import ConsensusConfig, label_and_filter
    from prm_plugin.trainers.world.labels import (
        AnnotatorPolicy,
        answer_checker,
        label_quality,
        sample_solution_rows,
    )

    problems = [p for p in make_set("arith", cfg.label_problems + len(held_out), cfg.seed + 21, cfg.difficulty, "label-")
                if p.question not in held_out][: cfg.label_problems]
    rows = sample_solution_rows(policy, tokenizer, problems, samples=cfg.label_samples,
                                temperature=1.0, seed=cfg.seed + 31)
    t_lo, t_hi = cfg.annotator_temperatures
    annotators = [AnnotatorPolicy(policy, t_lo, 0, f"T{t_lo}"), AnnotatorPolicy(policy, t_hi, 1000, f"T{t_hi}")]
    config = ConsensusConfig(k=cfg.mc_rollouts, max_tokens=MAX_TOKENS, labels="hard", batch_size=256,
                             seed=cfg.seed, stop_at_first_error=True)
    kept, report = label_and_filter(rows, annotators, config=config, checker=answer_checker,
                                    policy_prompt=lambda r: r["policy_prompt"])
    by_key = {(r["prompt"], tuple(r["completions"])): r for r in rows}
    kept_truth = [by_key[(k["prompt"], tuple(k["completions"]))]["true_labels"] for k in kept]
    single = [(k["annotator_labels"][0], t) for k, t in zip(kept, kept_truth)]
    dropped = [rows[i] for i in report.dropped_indices]
    summary = {
        "solutions": len(rows),
        "consensus": report.to_json(),
        "filtered": label_quality([(k["labels"], t) for k, t in zip(kept, kept_truth)]).to_json(),
        "single_annotator_on_kept": label_quality(single).to_json(),
        "dropped_first_error_truth": sum(1 for r in dropped if not all(r["true_labels"])),
    }
    # No filter: the first annotator's labels on every solution, from the same rollouts.
    summary["unfiltered"] = label_quality(
        [(soft[0], r["true_labels"]) for soft, r in zip(report.soft_labels, rows)]
    ).to_json()
    return [{k: r[k] for k in ("prompt", "completions", "labels")} for r in kept], summary


def _train_prm(path: Path, policy_path: Path, rows: list[dict[str, Any]], cfg: BuildConfig) -> None:
    import torch

    from prm_plugin.trainers import PRMConfig, PRMTrainer

    random.Random(cfg.seed).shuffle(rows)
    args = PRMConfig(
        output_dir=str(path / "_prm_run"), num_train_epochs=cfg.prm_epochs,
        per_device_train_batch_size=cfg.prm_batch, learning_rate=cfg.prm_lr,
        lr_scheduler_type="cosine", warmup_steps=max(1, len(rows) // (20 * cfg.prm_batch)), logging_steps=25, save_strategy="no",
        report_to="none", seed=cfg.seed, step_separator="\n\n", max_length=256,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = PRMTrainer(model=str(policy_path), args=args, train_dataset=rows)
    trainer.train()
    trainer.save_prm(str(path))
    shutil.rmtree(path / "_prm_run", ignore_errors=True)


def _evaluate(out: Path, tokenizer: Any, sets: dict[str, list[Any]], cfg: BuildConfig) -> dict[str, Any]:
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.trainers.world.figures import world_figures

    policy = HFPolicy.from_pretrained(str(out / "policy"), batch_size=256)
    prm = load_prm(str(out / "prm"))
    limit = cfg.eval_limit
    return world_figures(policy, prm, tokenizer, sets["arith_test"][:limit], sets["codelike_test"][:limit],
                         n=cfg.eval_n, seed=cfg.seed)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def main(argv: Sequence[str]) -> int:
    """``prm-plugin world build [...]`` or ``prm-plugin world paths``."""
    args = list(argv)
    if args[:1] == ["paths"]:
        from prm_plugin.world import paths

        for name, path in paths().items():
            print(f"{name:<14} {path}")
        return 0
    if args[:1] == ["build"]:
        return build_main(args[1:])
    if args[:1] == ["eval"]:
        return eval_main(args[1:])
    print("usage: prm-plugin world {build,eval,paths} [--help]")
    return 0 if args[:1] in ([], ["-h"], ["--help"]) else 2


def eval_main(argv: Sequence[str]) -> int:
    """Recompute the figures of a built world with its own checkpoints and config."""
    from prm_plugin.trainers.world.report import format_report, update_readme
    from prm_plugin.world import ASSETS
    from prm_plugin.world.generator import Problem
    from prm_plugin.world.tokenizer import build_tokenizer

    parser = argparse.ArgumentParser(prog="prm-plugin world eval", description=eval_main.__doc__)
    parser.add_argument("--world", type=Path, default=ASSETS, help=f"a built world (default: {ASSETS})")
    parser.add_argument("--readme", type=Path, default=None, help="write the figures into this README")
    args = parser.parse_args(argv)
    report = json.loads((args.world / "figures.json").read_text())
    conf = report["config"]
    cfg = BuildConfig(seed=conf["seed"], eval_n=conf["eval_n"], eval_limit=conf["eval_limit"])
    sets = {name: [Problem.from_json(json.loads(line)) for line in (args.world / f"{name}.jsonl").open()]
            for name in SET_SIZES}
    report["figures"] = _evaluate(args.world, build_tokenizer(), sets, cfg)
    (args.world / "figures.json").write_text(json.dumps(report, indent=2) + "\n")
    text = format_report(report)
    print(text)
    if args.readme:
        update_readme(args.readme, text)
    return 0


def build_main(argv: Sequence[str]) -> int:
    from prm_plugin.world import ASSETS

    parser = argparse.ArgumentParser(prog="prm-plugin world build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ASSETS, help=f"output folder (default: the package's {ASSETS})")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--readme", type=Path, default=None, help="write the figures into this README's world section")
    parser.add_argument("--resume", action="store_true",
                        help="keep the policy an interrupted build of the same --scale/--seed left in --out")
    args = parser.parse_args(argv)
    cfg = replace(SCALES[args.scale], seed=args.seed)
    report = build_world(args.out, cfg, resume=args.resume)
    from prm_plugin.trainers.world.report import format_report, update_readme

    text = format_report(report)
    print(text)
    if args.readme:
        update_readme(args.readme, text)
    return 0
