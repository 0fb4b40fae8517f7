"""PRM scoring cost on a beam-like workload: prefix-cached vs full recomputation.

Builds a random-init value-head PRM (Qwen2 backbone, tokenizer trained locally, no
downloads) in a temporary directory, generates a beam-search-shaped stream of PRM
calls — every round extends each surviving prefix of every question by a few new
steps, and survivors are picked by a seeded RNG so both scorers see identical calls —
then scores it with the prefix KV cache on and off. Prints, per implementation, the
PRM tokens run (T_R), the unique tokens of the tree (U), T_R/U, seconds and the
largest score difference between the two (they must agree).

    python benchmarks/prm_scoring.py                      # tiny model, CPU
    python benchmarks/prm_scoring.py --shape 0.5b --device cuda --dtype bfloat16 --json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from prm_plugin.prm.load import load_prm
from prm_plugin.search import PRMQuery

SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=6, num_attention_heads=8,
                  num_key_value_heads=2),
    # Qwen2.5-0.5B's shape (vocabulary aside): what a real small PRM costs per token.
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2),
}
WORDS = ("the", "sum", "of", "x", "and", "y", "is", "equal", "to", "so", "we", "get", "then",
         "=", "+", "-", "*", "2", "3", "7", "14", "answer", "therefore", "step", "value")


def build_prm(path: Path, shape: str, seed: int = 0) -> Path:
    """Save a random-init value-head PRM with a locally trained BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config

    from prm_plugin.prm.value_head_model import ValueHeadPRM, ValueHeadPRMConfig

    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(40)) + "\n\n" for _ in range(200)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    backbone = Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=8192, **SHAPES[shape])
    ValueHeadPRM(ValueHeadPRMConfig(backbone_config=backbone, step_separator="\n\n")).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def workload(questions: int, depth: int, width: int, expand: int, step_words: int,
             prompt_words: int, seed: int) -> list[list[PRMQuery]]:
    """Rounds of PRM calls of a beam search (``width`` survivors x ``expand`` children)."""
    rng = random.Random(seed)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    beams = {f"Q{i}: {text(prompt_words)}": [()] for i in range(questions)}
    rounds = []
    for _ in range(depth):
        calls = [PRMQuery(q, (*p, text(step_words))) for q, ps in beams.items() for p in ps for _ in range(expand)]
        rounds.append(calls)
        beams = {q: [c.steps for c in rng.sample([c for c in calls if c.question == q], width)] for q in beams}
    return rounds


def unique_tokens(prm: Any, rounds: list[list[PRMQuery]]) -> int:
    """U: tokens of the tree of all scored prefixes, each node counted once."""
    seen: set[PRMQuery] = set()
    total = 0
    for calls in rounds:
        for q in calls:
            for k in range(len(q.steps) + 1):
                node = PRMQuery(q.question, q.steps[:k])
                if node not in seen:
                    seen.add(node)
                    parent = prm.count_tokens(PRMQuery(q.question, q.steps[: k - 1])) if k else 0
                    total += prm.count_tokens(node) - parent
    return total


def run(prm: Any, rounds: list[list[PRMQuery]]) -> tuple[list[list[float]], int, float]:
    scores, tokens = [], 0
    prm.score(rounds[0][:1])  # warm-up (kernels, allocator); not counted
    prm.clear_cache()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for calls in rounds:
        for res in prm.score(calls):
            scores.append(list(res.scores))
            tokens += res.tokens
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return scores, tokens, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on GPU, float32 on CPU")
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--width", type=int, default=2, help="surviving prefixes per question per round")
    ap.add_argument("--expand", type=int, default=4, help="new steps per surviving prefix")
    ap.add_argument("--step-words", type=int, default=30)
    ap.add_argument("--prompt-words", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 avoids thread thrashing on a shared, busy CPU)")
    ap.add_argument("--json", action="store_true", help="print one JSON list of rows")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rounds = workload(args.questions, args.depth, args.width, args.expand, args.step_words,
                      args.prompt_words, args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(build_prm(Path(tmp) / "prm", args.shape, args.seed))
        results = {}
        for impl, cache_bytes in (("cached", 4 << 30), ("uncached", 0)):
            prm = load_prm(path, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                           cache_bytes=cache_bytes)
            results[impl] = run(prm, rounds)
        u = unique_tokens(prm, rounds)
    ref = results["uncached"][0]
    for impl, (scores, tokens, seconds) in results.items():
        diff = max(abs(a - b) for s, r in zip(scores, ref, strict=True) for a, b in zip(s, r, strict=True))
        rows.append({
            "impl": impl, "shape": args.shape, "device": str(prm.device), "calls": len(rounds),
            "queries": sum(len(r) for r in rounds), "prm_tokens": tokens, "unique_tokens": u,
            "ratio": round(tokens / u, 3), "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds), "max_score_diff": float(f"{diff:.3g}"),
        })
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'impl':<9} {'T_R':>8} {'U':>8} {'T_R/U':>6} {'seconds':>8} {'tok/s':>9} {'max|Δscore|':>11}")
    for r in rows:
        print(f"{r['impl']:<9} {r['prm_tokens']:>8} {r['unique_tokens']:>8} {r['ratio']:>6} "
              f"{r['seconds']:>8} {r['tokens_per_s']:>9} {r['max_score_diff']:>11}")
    speedup = rows[1]["seconds"] / rows[0]["seconds"]
    print(f"{rows[0]['queries']} queries over {rows[0]['calls']} calls ({args.shape}, {rows[0]['device']}); "
          f"cached is {speedup:.2f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
