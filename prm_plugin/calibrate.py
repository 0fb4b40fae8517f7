"""``prm-plugin calibrate``: measure accuracy and cost per strategy and budget on a dev set
and write the calibration table the ``auto`` strategy chooses from.

    prm-plugin calibrate --tasks arith_val --budgets 4,16,64 --temperature 0.5 --out table.json

Each ``--strategies`` item is a registered strategy, optionally with parameters
(``majority:weighted=true``, ``beam:beam_width=2``); ``all`` stands for every registered
strategy but ``auto``. ``--temperature`` is given to every strategy that samples (whose
default temperature is above 0). Every (item, budget) pair runs on the first ``--limit``
problems of each task, ``--batch`` problems per search, from a cold cache, and becomes
one entry: accuracy, mean generated policy tokens, PRM tokens and wall seconds per
problem. A pair a strategy refuses (``beam`` with ``n`` not a multiple of its width) is
reported and left out. Tasks are the world's problem sets (``arith_val``) or JSONL files
in their format; the policy and PRM default to the world's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prm_plugin.calibration import DEFAULT_TABLE, Entry, parse_table, table_json
from prm_plugin.params import params_from_kwargs
from prm_plugin.search import Budget

DEFAULT_OUT = "calibration.json"


def parse_item(item: str) -> tuple[str, dict[str, str]]:
    """``"majority:weighted=true"`` -> ``("majority", {"weighted": "true"})``.

    >>> parse_item("beam:beam_width=2:lookahead=1")
    ('beam', {'beam_width': '2', 'lookahead': '1'})
    """
    name, *pairs = item.strip().split(":")
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Bad strategy item {item!r}: parameters go as name:key=value:key=value.")
        params[key.strip()] = value.strip()
    if not name.strip():
        raise ValueError(f"Bad strategy item {item!r}: it must start with a strategy name.")
    return name.strip(), params


def expand_items(spec: str) -> list[tuple[str, dict[str, str]]]:
    """The ``--strategies`` list, ``all`` expanded to every registered strategy but ``auto``."""
    from prm_plugin.plugins import get_strategy, list_strategies

    out: list[tuple[str, dict[str, str]]] = []
    for item in (s for s in spec.split(",") if s.strip()):
        if item.strip() == "all":
            out += [(name, {}) for name in sorted(list_strategies()) if name != "auto"]
            continue
        name, params = parse_item(item)
        if name == "auto":
            raise ValueError("auto chooses from a calibration table; it cannot be calibrated itself.")
        get_strategy(name)  # an unknown name fails here, with suggestions
        out.append((name, params))
    return list({json.dumps(x, sort_keys=True): x for x in out}.values())


def typed_params(name: str, raw: dict[str, str], temperature: float | None) -> dict[str, Any]:
    """The item's parameters as the Params dataclass types them (for the table), plus
    ``temperature`` when the strategy samples and the item does not set one."""
    from prm_plugin.plugins import get_strategy

    cls: Any = get_strategy(name)
    default = cls.Params()
    params: dict[str, Any] = dict(raw)
    if temperature is not None and "temperature" not in params and getattr(default, "temperature", 0) > 0:
        params["temperature"] = temperature
    built = params_from_kwargs(cls.Params, params)  # rejects unknown keys and bad values
    return {k: getattr(built, k) for k in params}


def measure(name: str, params: dict[str, Any], n: int, problems: Sequence[Any], sproblems: Sequence[Any],
            policy: Any, prm: Any, *, seed: int, batch: int) -> dict[str, Any]:
    """One entry: run the strategy at ``n`` on the problems from a cold cache."""
    from prm_plugin.plugins import get_strategy
    from prm_plugin.strategy import requires_prm
    from prm_plugin.world import is_correct

    strategy: Any = get_strategy(name)(**params, seed=seed)
    if hasattr(prm, "clear_cache"):  # a warm cache would hide the cost of the same samples
        prm.clear_cache()
    if getattr(policy, "prefix_cache", None) is not None:
        policy.prefix_cache.clear()
    results, start = [], time.perf_counter()
    for i in range(0, len(sproblems), batch):
        results += strategy.search(sproblems[i:i + batch], policy, prm if requires_prm(strategy) else None,
                                   Budget(n=n))
    seconds, k = time.perf_counter() - start, len(problems)
    return Entry(
        strategy=name, params=params, n=n,
        accuracy=sum(is_correct(p, r.text) for p, r in zip(problems, results, strict=True)) / k,
        generated_tokens=sum(r.cost.policy_generated_tokens for r in results) / k,
        seconds_per_problem=seconds / k,
        extra={"prm_tokens": sum(r.cost.prm_tokens for r in results) / k, "problems": k},
    ).to_json()


def warm_up(name: str, params: dict[str, Any], n: int, sproblems: Sequence[Any], policy: Any, prm: Any) -> None:
    """One untimed search, so the first entry's seconds do not include the models' warm-up."""
    from prm_plugin.plugins import get_strategy
    from prm_plugin.strategy import requires_prm

    strategy: Any = get_strategy(name)(**params)
    with contextlib.suppress(ValueError):  # a budget this strategy cannot take: the real run reports it
        strategy.search(list(sproblems), policy, prm if requires_prm(strategy) else None, Budget(n=n))


def _write(out: str, meta: dict[str, Any], entries: list[dict[str, Any]], skipped: list[dict[str, Any]],
           *, complete: bool) -> None:
    doc = {**table_json([], {**meta, "complete": complete, "skipped": skipped}), "entries": entries}
    if entries:
        parse_table(doc, out)  # never write a table auto would refuse
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")


def _resumed(out: str, meta: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The entries of an earlier run of the same command on the same dev set (``--resume``)."""
    path = Path(out)
    if not path.exists():
        return [], []
    doc = json.loads(path.read_text())
    if doc.get("dev_set") != meta["dev_set"]:
        raise SystemExit(f"prm-plugin calibrate: {out} was measured on {doc.get('dev_set')}, not on "
                         f"{meta['dev_set']}; --resume needs the same dev set (or another --out).")
    return list(doc.get("entries", [])), list(doc.get("skipped", []))


def load_tasks(tasks: Sequence[str], limit: int | None) -> list[Any]:
    """World problems from set names or JSONL paths (the first ``limit`` of each)."""
    from prm_plugin import world
    from prm_plugin.world.generator import Problem

    out: list[Any] = []
    for task in tasks:
        if task in world.SETS:
            problems = world.load_set(task)
        elif task.endswith(".jsonl") and Path(task).is_file():
            problems = [Problem.from_json(json.loads(line)) for line in Path(task).read_text().splitlines()
                        if line.strip()]
        else:
            raise ValueError(f"Unknown task {task!r}: give a world set ({', '.join(world.SETS)}) or a JSONL file "
                             "of problems in the world's format.")
        out += problems[:limit]
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prm-plugin calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", required=True, help="dev sets: world set names or JSONL files, comma-separated")
    parser.add_argument("--budgets", required=True, help="budgets n to measure, comma-separated (e.g. 4,16,64)")
    parser.add_argument("--strategies", default="all,majority:weighted=true",
                        help="strategy items (name[:key=value...]), comma-separated; 'all' = every registered "
                             "strategy but auto (default: all,majority:weighted=true)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature for every strategy that samples (default: each strategy's own)")
    parser.add_argument("--limit", type=int, default=200, help="problems per task (default 200)")
    parser.add_argument("--batch", type=int, default=50, help="problems per search call (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", default=None, help="policy checkpoint (default: the world's)")
    parser.add_argument("--policy-batch-size", type=int, default=512,
                        help="rows the HF policy decodes together (default 512; changes speed, not samples)")
    parser.add_argument("--prm", default=None, help="PRM checkpoint (default: the world's)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the entries already in --out (same dev set) and measure only the rest")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"where to write the table (default {DEFAULT_OUT}; the shipped one is {DEFAULT_TABLE})")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        raise SystemExit(f"prm-plugin calibrate: --budgets takes integers, got {args.budgets!r}.") from None
    if not budgets or min(budgets) < 1:
        raise SystemExit(f"prm-plugin calibrate: --budgets needs integers >= 1, got {args.budgets!r}.")
    try:
        items = [(name, typed_params(name, raw, args.temperature)) for name, raw in expand_items(args.strategies)]
    except ValueError as exc:  # a malformed item or parameter, before any model loads
        raise SystemExit(f"prm-plugin calibrate: --strategies: {exc}") from None
    from prm_plugin import world
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.tokenizer import build_tokenizer

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:
        problems = load_tasks(tasks, args.limit)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"prm-plugin calibrate: --tasks: {exc}") from None
    sproblems = search_problems(build_tokenizer(), problems)
    policy = HFPolicy.from_pretrained(args.policy or str(world.paths()["policy"]), batch_size=args.policy_batch_size)
    prm = load_prm(args.prm or str(world.paths()["prm"]))
    meta = {"command": "prm-plugin calibrate " + shlex.join([a for a in argv if a != "--resume"]),
            "dev_set": {"tasks": tasks, "problems": len(problems), "seed": args.seed, "batch": args.batch,
                        "policy_batch_size": args.policy_batch_size, "policy": args.policy or "world",
                        "prm": args.prm or "world"}}
    entries, skipped = _resumed(args.out, meta) if args.resume else ([], [])
    done = {(e["strategy"], json.dumps(e["params"], sort_keys=True), e["n"]) for e in entries + skipped}
    warm_up(items[0][0], items[0][1], min(budgets), sproblems[:2], policy, prm)
    for n in budgets:
        for name, params in items:
            if (name, json.dumps(params, sort_keys=True), n) in done:
                continue
            try:
                row = measure(name, params, n, problems, sproblems, policy, prm, seed=args.seed, batch=args.batch)
            except ValueError as exc:  # a budget this strategy's settings cannot take
                skipped.append({"strategy": name, "params": params, "n": n, "reason": str(exc)})
                print(f"skipped {name}@{n} {params}: {exc}", flush=True)
                continue
            entries.append(row)
            print(f"{name:<16} n={n:<3} {json.dumps(params):<40} acc {100 * row['accuracy']:5.1f}%  "
                  f"gen {row['generated_tokens']:8.1f}  {row['seconds_per_problem']:.3f} s/problem", flush=True)
            _write(args.out, meta, entries, skipped, complete=False)  # a crash keeps what was measured
    if not entries:
        raise SystemExit("prm-plugin calibrate: no (strategy, budget) pair could run; see the reasons above.")
    _write(args.out, meta, entries, skipped, complete=True)
    print(f"wrote {len(entries)} entries to {args.out}", file=sys.stderr)
    return 0
