"""Search cost, ours vs a naive reference: PRM tokens, prefill, seconds, memory, answers.

For every strategy, budget and problem depth, the same problems run twice with the same
seed (see ``search_cost_lib``): ``ours`` (all problems batched in one search, policy and
PRM prefix-KV caches on, a prefix's samples reading its KV once) and ``naive`` (one
problem at a time, both caches off: full re-prefill and full-prefix PRM rescoring at
every step, as search-and-learn's beam search does, and every sample attending over its
own copy of the prefix, as ``generate(num_return_sequences=n)`` does). Both must choose
identical answers (``answers_sha256``).

Batch size matters to ``ours`` only: a beam round decodes until its longest step ends, and
those last steps run a few rows at a fixed cost per forward. Batching all problems into
one round shares that tail; the default 64 problems x 16 samples fit one batch of 1024
rows (``--batch-size``), as an evaluation run of hundreds of problems would. With
``--problems 16`` the tail is shared by fewer problems and the speed-ups are lower.

Figures per row: T_R/U (PRM tokens run over unique PRM tokens of the search trees),
policy prefill over unique prompt-side tokens, generated tokens, wall seconds, peak
RSS (``VmHWM``, reset before each run), and the naive/ours speed-up. ``depth`` is the
problems' minimum number of operations (``--ops 6-8``: 6; a right solution then has at
least 7 steps). Then the issue's targets, checked against the figures.

``beam@n / bon@n``: both spend ``Budget.n`` but not the same tokens (beam keeps
expanding ``n`` children a round until ``n`` candidates finished), so "at equal
generated tokens" compares seconds per generated token — the wall-clock beam would
take to generate bon's tokens at its own rate; the raw ratio is printed beside it.

    python benchmarks/search_cost.py                      # the shipped world, CPU
    python benchmarks/search_cost.py --world DIR --problems 4 --budgets 4 --ops 3-4,6-8
    python benchmarks/search_cost.py --shape 0.5b --device cuda --max-tokens 512 --generate
    .vllm-venv/bin/python benchmarks/search_cost.py --policy-backend vllm   # + rows on vLLM engines

``--policy-backend vllm`` adds a third row per case, ``vllm``: ours (all problems in one
search) with the policy on a ``vllm.LLM`` engine (prefix caching on, 32-token blocks on a
CPU) and the PRM on vLLM's pooling runner (``--prm-backend hf``: the in-process scorer).
vLLM samples other random streams than the HF policy, so its answers are its own (its
accuracy is printed); greedy output is the same (tests/test_vllm_real.py).

``--shape`` builds a random-init Qwen2 policy and PRM of that shape (no weights) with the
world's tokenizer, steered to write steps of about ``--step-tokens`` tokens and to end
after about ``--solution-tokens`` (``search_cost_lib.build_shape_world``); the problems'
``--ops`` then only shape the prompts. ``--generate`` also times plain ``model.generate``
sampling the same prompts (tokens/s on the same machine, same run). Keep ``--dtype
float32`` for the answers check: bfloat16 noise can flip a sample between the two runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("search_cost_lib", HERE / "search_cost_lib.py")
assert _spec is not None and _spec.loader is not None
lib = sys.modules.setdefault("search_cost_lib", importlib.util.module_from_spec(_spec))
if not hasattr(lib, "measure"):
    _spec.loader.exec_module(lib)
IMPLS, SHAPES, Case, Models, PeakMemory = lib.IMPLS, lib.SHAPES, lib.Case, lib.Models, lib.PeakMemory

#: Strategy settings (each strategy documents how it maps ``Budget.n``).
PARAMS: dict[str, dict[str, Any]] = {
    "bon": {}, "majority": {}, "beam": {"beam_width": 4}, "mcts": {"expansion_width": 2},
}


def cases(strategies: Sequence[str], budgets: Sequence[int], ops: Sequence[tuple[int, int]],
          common: dict[str, Any]) -> list[Case]:
    out = []
    for lo, hi in ops:
        for n in budgets:
            for name in strategies:
                params = {**common, **PARAMS.get(name, {})}
                if name == "beam":  # the widest beam up to the default that divides n
                    params["beam_width"] = max(w for w in range(1, params["beam_width"] + 1) if n % w == 0)
                out.append(Case(name, n, lo, f"{lo}-{hi}", tuple(sorted(params.items()))))
    return out


def run(args: argparse.Namespace, folder: Path, scratch: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    models = lib.load_models(folder, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                         prm_batch_size=args.prm_batch_size)
    models.shared_prefix = not args.no_shared_prefix
    memory = PeakMemory()
    common: dict[str, Any] = {"temperature": args.temperature, "seed": args.seed}
    if args.max_step_tokens:
        common["max_step_tokens"] = args.max_step_tokens
    all_cases = cases(args.strategies, args.budgets, args.ops, common)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    impls = IMPLS
    if args.policy_backend == "vllm":
        lib.add_vllm(models, folder, scratch, dtype=args.dtype,
                     prm_backend=args.prm_backend, max_model_len=args.max_tokens + 256)
        impls = (*IMPLS, "vllm")
    for lo, hi in args.ops:
        truth, problems = lib.world_problems(models.tokenizer, args.problems, args.seed, lo, hi, args.max_tokens,
                                         like=folder)
        _warm_up(models, problems, common, impls)
        for case in [c for c in all_cases if c.ops == f"{lo}-{hi}"]:
            for impl in impls:
                best = None
                for _ in range(args.repeat):
                    row = lib.measure(case, impl, problems, models, memory, truth)
                    best = row if best is None or row["seconds"] < best["seconds"] else best
                assert best is not None
                rows.append(best)
                _progress(best)
        if args.generate:
            extra[f"generate_{lo}-{hi}"] = lib.generate_baseline(
                models.model, models.tokenizer, [p.prompt for p in problems], max(args.budgets),
                args.max_tokens, args.temperature)
    for key, value in extra.items():
        ops = key.split("_", 1)[1]
        for row in rows:
            if row["ops"] == ops:
                row["generate_tokens_per_s"] = round(value["tokens_per_s"], 1)
    extra["peak_memory_method"] = memory.method
    return rows, extra


def _warm_up(models: Models, problems: Sequence[Any], common: dict[str, Any], impls: Sequence[str]) -> None:
    """One small search per implementation (kernels, allocator, tokenizer caches); not counted."""
    for impl in impls:
        lib.search(Case("beam", 2, 0, "", tuple(sorted({**common, "beam_width": 2, "max_steps": 2}.items()))),
               impl, problems[:1], models)


def _progress(row: dict[str, Any]) -> None:
    print(f"  {row['strategy']}@{row['budget']} ops {row['ops']} {row['impl']}: {row['seconds']:.2f}s",
          file=sys.stderr, flush=True)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def pairs(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(ours, naive) row pairs of the same case."""
    naive = {(r["strategy"], r["budget"], r["ops"]): r for r in rows if r["impl"] == "naive"}
    return [(r, naive[r["strategy"], r["budget"], r["ops"]]) for r in rows
            if r["impl"] == "ours" and (r["strategy"], r["budget"], r["ops"]) in naive]


def beam_vs_bon(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """beam@n over bon@n (ours): raw seconds, and seconds per generated token — the
    wall-clock beam would need for bon's generated tokens at its own rate."""
    ours = {(r["strategy"], r["budget"], r["ops"]): r for r in rows if r["impl"] == "ours"}
    out = []
    for (name, n, ops), beam in ours.items():
        bon = ours.get(("bon", n, ops))
        if name != "beam" or bon is None:
            continue
        out.append({"budget": n, "ops": ops, "depth": beam["depth"], "beam_seconds": beam["seconds"],
                    "bon_seconds": bon["seconds"], "beam_generated": beam["generated_tokens"],
                    "bon_generated": bon["generated_tokens"],
                    "raw": _ratio(beam["seconds"], bon["seconds"]),
                    "per_token": _ratio(beam["seconds"] / beam["generated_tokens"],
                                        bon["seconds"] / bon["generated_tokens"])})
    return out


def targets(rows: Sequence[dict[str, Any]]) -> list[tuple[bool, str]]:
    """The issue's targets, checked against the figures."""
    checks = []
    for ours, naive in pairs(rows):
        name, tag = ours["strategy"], f"{ours['strategy']}@{ours['budget']} ops {ours['ops']}"
        if name in ("bon", "beam", "mcts"):
            tr_u = _ratio(ours["prm_tokens"], ours["unique_tokens"])
            checks.append((tr_u <= 1.05, f"T_R/U <= 1.05: {tag}: {tr_u:.3f}"))
        if name in ("beam", "mcts"):
            pre = _ratio(ours["policy_prefill_tokens"], ours["unique_prompt_tokens"])
            checks.append((pre <= 1.2, f"prefill/unique prompt <= 1.2: {tag}: {pre:.3f}"))
            if ours["depth"] >= 6:
                speed = _ratio(naive["seconds"], ours["seconds"])
                checks.append((speed >= 3, f"naive/ours >= 3x at depth >= 6: {tag}: {speed:.2f}x"))
        same = ours["answers_sha256"] == naive["answers_sha256"]
        checks.append((same, f"identical answers: {tag}"))
    for b in beam_vs_bon(rows):
        checks.append((b["per_token"] <= 1.5, f"beam@{b['budget']} <= 1.5x bon@{b['budget']} per generated "
                       f"token, ops {b['ops']}: {b['per_token']:.2f}x (raw {b['raw']:.2f}x)"))
    return checks


def table(rows: Sequence[dict[str, Any]], extra: dict[str, Any]) -> str:
    head = (f"{'strategy':<9}{'n':>3} {'ops':>5} {'impl':<6}{'T_R':>8}{'U':>8}{'T_R/U':>7}{'prefill':>9}"
            f"{'uniqP':>8}{'pre/uP':>7}{'gen':>8}{'seconds':>9}{'speedup':>8}{'RSS MB':>8}{'acc':>6}"
            f"  answers")
    lines = [head, "-" * len(head)]
    engines = {(r["strategy"], r["budget"], r["ops"]): r for r in rows if r["impl"] == "vllm"}
    for ours, naive in pairs(rows):
        same = "equal" if ours["answers_sha256"] == naive["answers_sha256"] else "DIFFER"
        on_vllm = engines.get((ours["strategy"], ours["budget"], ours["ops"]))
        for r in (ours, naive, *([on_vllm] if on_vllm else [])):
            speed = f"{_ratio(naive['seconds'], r['seconds']):.2f}x" if r is not naive else ""
            if r is on_vllm:  # other sampling streams: its own answers, not compared
                same = ""
            lines.append(
                f"{r['strategy']:<9}{r['budget']:>3} {r['ops']:>5} {r['impl']:<6}{r['prm_tokens']:>8}"
                f"{r['unique_tokens']:>8}{_fmt(r['prm_tokens'], r['unique_tokens']):>7}"
                f"{r['policy_prefill_tokens']:>9}{r['unique_prompt_tokens']:>8}"
                f"{_fmt(r['policy_prefill_tokens'], r['unique_prompt_tokens']):>7}{r['generated_tokens']:>8}"
                f"{r['seconds']:>9.2f}{speed:>8}{r['peak_rss_mb']:>8.0f}{r.get('accuracy', float('nan')):>6.2f}"
                f"  {r['answers_sha256'][:10]} {same if r is not naive else ''}")
    lines.append("")
    for b in beam_vs_bon(rows):
        lines.append(f"beam@{b['budget']} / bon@{b['budget']} (ops {b['ops']}): {b['raw']:.2f}x wall-clock "
                     f"({b['beam_seconds']:.2f}s / {b['bon_seconds']:.2f}s), generated {b['beam_generated']} "
                     f"vs {b['bon_generated']} tokens; per generated token {b['per_token']:.2f}x")
    for key, g in extra.items():
        if key.startswith("generate_"):
            lines.append(f"plain generate (ops {key.split('_', 1)[1]}): {g['tokens']} tokens in "
                         f"{g['seconds']:.2f}s = {g['tokens_per_s']:.0f} tok/s")
    lines.append(f"T_R/U: PRM tokens run / unique PRM tokens; pre/uP: policy prefill / unique prompt-side "
                 f"tokens; peak RSS: {extra.get('peak_memory_method')}")
    lines.append("")
    lines += [f"[{'ok' if ok else 'MISS'}] {text}" for ok, text in targets(rows)]
    return "\n".join(lines)


def _fmt(a: float, b: float) -> str:
    return f"{_ratio(a, b):.3f}" if b else "-"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _ops(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=Path, default=None, help="a built world folder (default: the shipped one)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None,
                    help="use a random-init policy and PRM of this shape instead of a world")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32",
                    help="float32 keeps ours and naive bit-close; bfloat16 noise can flip samples")
    ap.add_argument("--strategies", default="bon,beam,mcts,majority")
    ap.add_argument("--budgets", type=_ints, default=[4, 16], help="Budget.n values, e.g. 4,16")
    ap.add_argument("--ops", type=_ops, default=[(6, 8)],
                    help="operations per problem (min-max), comma-separated settings, e.g. 3-4,6-8")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=256, help="Problem.max_tokens")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-step-tokens", type=int, default=None,
                    help="StrategyParams.max_step_tokens (default: the strategies' own, 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=1024, help="most policy rows decoded together")
    ap.add_argument("--prm-batch-size", type=int, default=32)
    ap.add_argument("--no-shared-prefix", action="store_true",
                    help="ours without shared-prefix attention (each sample holds a copy of its prefix)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per row; the fastest is kept")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 avoids thread thrashing on a shared, busy CPU)")
    ap.add_argument("--generate", action="store_true", help="also time plain model.generate (tokens/s)")
    ap.add_argument("--step-tokens", type=float, default=40.0, help="--shape: mean tokens per step")
    ap.add_argument("--solution-tokens", type=float, default=400.0, help="--shape: mean tokens to EOS")
    ap.add_argument("--json", action="store_true", help="print one JSON list of rows")
    ap.add_argument("--policy-backend", choices=("hf", "vllm"), default="hf",
                    help="vllm: also run ours on vLLM engines (rows 'vllm'; needs vLLM installed)")
    ap.add_argument("--prm-backend", choices=("hf", "vllm"), default="vllm",
                    help="the 'vllm' rows' PRM: vLLM's pooling runner (default) or the in-process scorer")
    args = ap.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if args.world is not None and args.shape is not None:
        ap.error("pass --world or --shape, not both")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    if args.policy_backend == "vllm":  # before vLLM is imported: a 1 GiB KV cache, engines in this process
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.shape:
                folder = lib.build_shape_world(Path(tmp), args.shape, seed=args.seed,
                                               step_tokens=args.step_tokens, solution_tokens=args.solution_tokens)
            else:
                from prm_plugin import world

                folder = args.world or world.ASSETS
            rows, extra = run(args, folder, Path(tmp))
    finally:
        torch.set_num_threads(threads)
    if args.json:
        print(json.dumps(rows))
    else:
        print(table(rows, extra))
    return rows


if __name__ == "__main__":
    main()
