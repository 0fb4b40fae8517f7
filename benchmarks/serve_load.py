"""Load test of ``prm-plugin serve`` on the shipped world: concurrent clients against one
server, compared with one in-process batched search of the same problems.

    python benchmarks/serve_load.py                       # 64 clients x 4 requests, bon n=4
    python benchmarks/serve_load.py --clients 16 --requests 2 --strategy beam --n 4 --json

Starts ``prm-plugin serve`` (a subprocess, loopback, free port) on the world's policy and
PRM; ``--clients`` asyncio clients (httpx) each send ``--requests`` ``/v1/completions``
requests one after another, every request a different test problem (its chat prompt, as
``lm_eval --model local-completions --apply_chat_template`` sends it). Checks that every
request got a 200 and that the server searched each problem exactly once (nothing lost or
duplicated), then stops the server and runs the same problems in-process: one
``strategy.search`` over all of them, and (``--chunked``) in chunks of ``--clients``, the
largest batch the clients can form. Prints throughput (problems/s), p50/p99 latency, the
served/in-process throughput ratio (target >= 0.8), how many answers agree, and accuracy.
Bounded: the clients give up after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from prm_plugin import world

    p = world.paths()
    model_args = f"temperature={args.temperature},policy.batch_size={args.policy_batch_size}"
    if args.strategy == "beam":
        model_args += f",beam_width={args.beam_width}"
    cmd = [str(BIN / "prm-plugin"), "serve", "--port", "0", "--log-level", args.server_log_level, "--policy", str(p["policy"]),
           "--prm", str(p["prm"]), "--strategy", args.strategy, "--n", str(args.n), "--model-args", model_args,
           "--max-batch", str(args.clients), "--batch-wait-ms", str(args.batch_wait_ms), "--served-model-name", "world"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    deadline = time.monotonic() + 300
    while not (found := re.search(r"on (http://[\d.:]+)/v1", log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    url = found.group(1)
    while True:  # ready when /health answers
        try:
            httpx.get(url + "/health", timeout=5).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                stop_server(proc)
                raise SystemExit("the server never answered /health") from None
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(60)


async def load(url: str, prompts: list[str], clients: int, requests: int, timeout: float) -> dict[str, Any]:
    """Every client sends its requests one after another; all clients at once."""
    latencies: list[float] = []
    answers: dict[int, list[str]] = {}
    errors: list[str] = []

    async def client(c: int, http: httpx.AsyncClient) -> None:
        for r in range(requests):
            index = r * clients + c  # each wave of requests is a block of consecutive problems
            start = time.perf_counter()
            resp = await http.post(url + "/v1/completions", json={"model": "world", "prompt": prompts[index]})
            latencies.append(time.perf_counter() - start)
            if resp.status_code != 200:
                errors.append(f"problem {index}: {resp.status_code} {resp.text[:200]}")
                continue
            answers.setdefault(index, []).extend(ch["text"] for ch in resp.json()["choices"])

    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(c, http) for c in range(clients))), timeout)
        wall = time.perf_counter() - start
    return {"wall": wall, "latencies": latencies, "answers": answers, "errors": errors}


def server_metrics(url: str) -> dict[str, Any]:
    """Counters from /metrics, and the batch sizes as ``{upper bound: batches}``."""
    out: dict[str, Any] = {}
    cumulative: list[tuple[str, float]] = []
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(("prm_serve_problems_searched_total", "prm_serve_batch_size_count",
                            "prm_serve_batch_size_sum", "prm_serve_search_failures_total")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        elif line.startswith("prm_serve_batch_size_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            cumulative.append((le.group(1) if le else "?", float(line.rsplit(" ", 1)[1])))
    previous, sizes = 0.0, {}
    for le, count in cumulative:
        if count > previous:
            sizes[f"<={le}"] = int(count - previous)
        previous = count
    out["batch_sizes"] = sizes
    return out


def in_process(args: argparse.Namespace, problems: list[Any], chunk: int) -> tuple[float, list[str]]:
    from prm_plugin import world
    from prm_plugin.plugins import get_strategy
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.search import Budget

    p = world.paths()
    policy = HFPolicy.from_pretrained(str(p["policy"]), batch_size=args.policy_batch_size)
    prm = load_prm(str(p["prm"]))
    extra = {"beam_width": args.beam_width} if args.strategy == "beam" else {}
    strategy = get_strategy(args.strategy)(temperature=args.temperature, **extra)
    start, texts = time.perf_counter(), []
    for i in range(0, len(problems), chunk):
        texts += [r.text for r in strategy.search(problems[i:i + chunk], policy, prm, Budget(n=args.n))]
    return time.perf_counter() - start, texts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=4, help="requests per client, one after another")
    ap.add_argument("--strategy", default="bon", choices=("bon", "beam", "majority"))
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--beam-width", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--policy-batch-size", type=int, default=1024, help="policy rows per forward pass")
    ap.add_argument("--batch-wait-ms", type=float, default=100.0, help="the server's --batch-wait-ms")
    ap.add_argument("--chunked", action="store_true", help="also time in-process searches of --clients problems")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before the clients give up")
    ap.add_argument("--server-log", help="keep the server's log in this file (with --server-log-level)")
    ap.add_argument("--server-log-level", default="warning", choices=("warning", "info", "debug"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from prm_plugin import world
    from prm_plugin._hf_compat import load_tokenizer
    from prm_plugin.world.evaluate import search_problems

    total = args.clients * args.requests
    wproblems = world.load_set("arith_test")[:total]
    if len(wproblems) < total:
        raise SystemExit(f"the world's test set has {len(wproblems)} problems; ask for at most that many.")
    problems = search_problems(load_tokenizer(str(world.paths()["policy"])), wproblems)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(args, Path(args.server_log or Path(tmp) / "server.log"))
        try:
            served = asyncio.run(load(url, [p.prompt for p in problems], args.clients, args.requests, args.timeout))
            metrics = server_metrics(url)
        finally:
            stop_server(proc)
    ref_seconds, ref_texts = in_process(args, problems, total)
    row: dict[str, Any] = {
        "clients": args.clients, "requests_per_client": args.requests, "problems": total,
        "strategy": args.strategy, "n": args.n, "errors": len(served["errors"]),
        "answered": sum(len(v) for v in served["answers"].values()),
        "searched": metrics.get("prm_serve_problems_searched_total"),
        "batches": metrics.get("prm_serve_batch_size_count"), "batch_sizes": metrics["batch_sizes"],
        "mean_batch": metrics.get("prm_serve_batch_size_sum", 0) / max(1.0, metrics.get("prm_serve_batch_size_count", 0)),
        "served_problems_per_s": total / served["wall"],
        "p50_latency_s": statistics.median(served["latencies"]),
        "p99_latency_s": statistics.quantiles(served["latencies"], n=100)[98],
        "in_process_problems_per_s": total / ref_seconds,
    }
    row["ratio"] = row["served_problems_per_s"] / row["in_process_problems_per_s"]
    lost = [i for i in range(total) if len(served["answers"].get(i, [])) != 1]
    row["lost_or_duplicated"] = len(lost)
    row["same_answer_as_in_process"] = sum(served["answers"].get(i, [None])[0] == ref_texts[i] for i in range(total))
    row["served_accuracy"] = sum(world.is_correct(p, served["answers"].get(i, [""])[0])
                                 for i, p in enumerate(wproblems)) / total
    row["in_process_accuracy"] = sum(world.is_correct(p, t) for p, t in zip(wproblems, ref_texts)) / total
    if args.chunked:
        seconds, _ = in_process(args, problems, args.clients)
        row["chunked_problems_per_s"] = total / seconds
        row["ratio_to_chunked"] = row["served_problems_per_s"] / row["chunked_problems_per_s"]
    if args.json:
        print(json.dumps(row))
    else:
        for key, value in row.items():
            print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
        for err in served["errors"][:5]:
            print("error:", err)
    ok = not served["errors"] and not lost and row["searched"] == total
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
