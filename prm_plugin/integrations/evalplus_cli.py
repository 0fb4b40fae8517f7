"""``prm-plugin evalplus``: EvalPlus's own codegen + evaluation with the ``prm_guided`` backend.

The fallback for environments without the import hook (``PRM_PLUGIN_NO_EVALPLUS_HOOK=1``,
``python -S``, an install that skipped the ``.pth`` file), with real flags instead of a
model_args string::

    prm-plugin evalplus --dataset humaneval --greedy \\
        --policy Qwen/Qwen2.5-Coder-7B-Instruct --prm my/code-prm --strategy beam --n 16 \\
        --model-args beam_width=4

It adds the backend to EvalPlus in this process and calls ``evalplus.evaluate.evaluate``
exactly as ``evalplus.evaluate --model <model_args> --backend prm_guided ...`` would,
so the samples, EvalPlus's verdicts and its ``*_eval_results.json`` are EvalPlus's own.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from prm_plugin.integrations import _evalplus_hook
from prm_plugin.integrations._cli_common import add_search_flags, search_args, to_model_args
from prm_plugin.integrations.faults import FAILURES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prm-plugin evalplus",
        description="EvalPlus's own codegen and evaluation with the prm_guided backend, configured by flags "
                    "(the fallback for `evalplus.evaluate --backend prm_guided`).")
    e = p.add_argument_group("EvalPlus (its evalplus.evaluate flags)")
    e.add_argument("--dataset", required=True, choices=("humaneval", "mbpp"))
    e.add_argument("--root", default="evalplus_results", help="output folder (default evalplus_results)")
    e.add_argument("--greedy", action="store_true", help="one final solution per task")
    e.add_argument("--n-samples", type=int, default=1, help="final solutions per task (each one search)")
    e.add_argument("--temperature", type=float, default=0.0,
                   help="EvalPlus's temperature (the search's too, unless temperature= is in --model-args)")
    e.add_argument("--bs", type=int, default=None, help="final solutions per codegen call")
    e.add_argument("--no-resume", action="store_true", help="do not continue an existing samples file")
    e.add_argument("--id-range", type=int, nargs=2, metavar=("LOW", "HIGH"), help="tasks LOW <= id < HIGH")
    e.add_argument("--version", default="default", help="dataset version")
    e.add_argument("--force-base-prompt", action="store_true", help="direct completion even for chat models")
    e.add_argument("--trust-remote-code", action="store_true")
    e.add_argument("--attn-implementation", default="eager")
    e.add_argument("--tp", type=int, default=1, help="tensor parallel size (policy-backend vllm)")
    e.add_argument("--base-only", action="store_true", help="only the original tests")
    e.add_argument("--parallel", type=int, default=None, help="evaluation workers")
    e.add_argument("--min-time-limit", type=float, default=None)
    e.add_argument("--gt-time-limit-factor", type=float, default=None)
    e.add_argument("--mini", action="store_true")
    e.add_argument("--noextreme", action="store_true")
    e.add_argument("--test-details", action="store_true")
    e.add_argument("--i-just-wanna-run", action="store_true", help="re-evaluate even if results exist")
    add_search_flags(p)
    return p


def main(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(list(argv))
    start = len(FAILURES.failures)
    try:
        model = to_model_args(search_args(ns))
    except ValueError as exc:
        raise SystemExit(f"prm-plugin evalplus: {exc}") from None
    if not model:
        raise SystemExit("prm-plugin evalplus: give at least --policy (and --prm for strategies that rank).")
    for name in ("evalplus.provider", "evalplus.codegen"):
        _evalplus_hook.patch(importlib.import_module(name))  # a no-op when the .pth hook did it
    from evalplus.evaluate import evaluate

    kwargs = {
        "dataset": ns.dataset, "model": model, "backend": _evalplus_hook.BACKEND, "root": ns.root,
        "greedy": ns.greedy, "n_samples": ns.n_samples, "temperature": ns.temperature, "bs": ns.bs,
        "resume": not ns.no_resume, "id_range": ns.id_range, "version": ns.version,
        "force_base_prompt": ns.force_base_prompt, "trust_remote_code": ns.trust_remote_code,
        "attn_implementation": ns.attn_implementation, "tp": ns.tp, "base_only": ns.base_only,
        "parallel": ns.parallel, "mini": ns.mini, "noextreme": ns.noextreme, "test_details": ns.test_details,
        "i_just_wanna_run": ns.i_just_wanna_run,
    }
    if ns.dtype is not None:
        kwargs["dtype"] = ns.dtype
    for key in ("min_time_limit", "gt_time_limit_factor"):
        if getattr(ns, key) is not None:
            kwargs[key] = getattr(ns, key)
    evaluate(**kwargs)
    target = _evalplus_hook.last_target_path()
    if target:
        print(f"Samples: {target}\nEvalPlus results: {target.replace('.jsonl', '_eval_results.json')}")
    return FAILURES.exit_status(start)
