"""Per-launch cost of the sandbox against a plain interpreter launch.

Measures, interleaved on the same machine (so background load hits both alike):

* ``plain``: ``subprocess.run([python, "-c", "pass"])`` -- what a harness pays per program
  without any isolation;
* ``sandbox``: ``run_python("pass")`` through a warm :class:`Sandbox` -- fork from the
  zygote, fresh namespaces, a new root file system, rlimits, landlock, seccomp, the
  watchdog, and the exit status back to the parent;
* ``check``: ``check_solution`` of a one-line function on 10 functional tests (one
  sandbox, 10 calls timed on CPU), and on 10 stdio tests (10 sandboxes);

plus the one-off start-up (zygote + probe of the isolation level). Overhead is the
difference of medians ``sandbox - plain``; the goal is < 20 ms.

Usage::

    python benchmarks/sandbox.py                 # table
    python benchmarks/sandbox.py --n 100 --json  # machine-readable
    python benchmarks/sandbox.py --level basic   # the fallback level
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from prm_plugin.sandbox import Sandbox, check_solution, run_python


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p10_ms": round(ordered[len(ordered) // 10], 2),
        "p90_ms": round(ordered[(len(ordered) * 9) // 10], 2),
    }


def measure(n: int, level: str) -> dict[str, Any]:
    python = os.path.realpath(sys.executable)
    start = time.perf_counter()
    box = Sandbox(level)  # type: ignore[arg-type]
    box.start()
    startup_ms = (time.perf_counter() - start) * 1e3
    add = "def add(a, b):\n    return a + b\n"
    functional = [([i, i], 2 * i) for i in range(10)]
    stdio = [(f"{i}\n", f"{2 * i}\n") for i in range(10)]
    echo = "print(int(input()) * 2)"
    try:
        for _ in range(3):  # warm-up: page cache, zygote's first forks
            run_python("pass", sandbox=box)
            subprocess.run([python, "-c", "pass"], check=True)
        plain, sandboxed = [], []
        for _ in range(n):
            plain.append(_time(lambda: subprocess.run([python, "-c", "pass"], check=True)))
            sandboxed.append(_time(lambda: run_python("pass", sandbox=box)))
        checks_f = [_time(lambda: check_solution(add, functional, entry_point="add", sandbox=box))
                    for _ in range(max(3, n // 10))]
        checks_s = [_time(lambda: check_solution(echo, stdio, kind="stdio", sandbox=box))
                    for _ in range(max(3, n // 10))]
        level_name, layers = box.level, dict(box.layers)
    finally:
        box.close()
    result = {
        "n": n,
        "level": level_name,
        "layers": layers,
        "startup_ms": round(startup_ms, 1),
        "plain": _summary(plain),
        "sandbox": _summary(sandboxed),
        "check_functional_10": _summary(checks_f),
        "check_stdio_10": _summary(checks_s),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    result["overhead_ms"] = round(result["sandbox"]["median_ms"] - result["plain"]["median_ms"], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="launches of each kind (default 40)")
    parser.add_argument("--level", choices=["auto", "full", "basic"], default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.n < 5:
        parser.error("--n must be at least 5")
    res = measure(args.n, args.level)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"sandbox level: {res['level']} ({res['layers'].get('variant')}); {res['cpus']} CPUs, "
          f"load {res['load_avg_1m']}; start-up (zygote + probe) {res['startup_ms']} ms")
    print(f"{'':24}{'median':>10}{'p10':>10}{'p90':>10}   (ms)")
    for key, label in (("plain", "python -c pass"), ("sandbox", "run_python('pass')"),
                       ("check_functional_10", "check 10 functional"), ("check_stdio_10", "check 10 stdio")):
        s = res[key]
        print(f"{label:24}{s['median_ms']:>10}{s['p10_ms']:>10}{s['p90_ms']:>10}")
    verdict = "meets" if res["overhead_ms"] < 20 else "misses"
    print(f"per-launch overhead over a plain interpreter: {res['overhead_ms']} ms ({verdict} the < 20 ms goal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
