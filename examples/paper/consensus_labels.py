"""Consensus-filtered Monte-Carlo step labels (the paper's ASLAF) for real models.

Samples solutions from a policy on problems with reference answers, labels every step
by Monte-Carlo rollouts from two or more annotator policies (Math-Shepherd estimation),
keeps only the solutions whose first-error location all annotators agree on
(``prm_plugin.trainers.aslaf.label_and_filter``), and writes TRL stepwise rows that
``prm-plugin train`` reads as a ``format: stepwise`` source::

    python examples/paper/consensus_labels.py --problems math_train.jsonl \\
        --policy vllm:Qwen/Qwen2.5-Math-7B-Instruct \\
        --annotator vllm:Qwen/Qwen2.5-Math-7B-Instruct@0.7 --annotator vllm:Qwen/Qwen2.5-Math-7B-Instruct@1.0 \\
        --samples 4 --k 8 --out consensus.jsonl

A model is ``BACKEND:PATH[@TEMPERATURE]`` with backend ``hf`` or ``vllm``; annotators
that name the same backend and path share one loaded model. Problems are JSONL with a
question field (``--question-field``, default ``problem``, MATH's) and a reference answer
(``--answer-field``, default ``answer``); ``--checker math`` compares final answers with
math-verify, ``--checker world`` the synthetic world's exact integers. Steps are split on
blank lines. See examples/paper/README.md for where this fits; it was run here only on the
shipped world (tests/test_paper_recipes.py), not on real models.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STEP = "\n\n"


def parse_model(spec: str, default_temperature: float) -> tuple[str, str, float]:
    """``"vllm:Qwen/Qwen2.5-Math-7B@0.7"`` -> ``("vllm", "Qwen/Qwen2.5-Math-7B", 0.7)``."""
    backend, sep, rest = spec.partition(":")
    if not sep or backend not in ("hf", "vllm") or not rest:
        raise ValueError(f"model {spec!r}: write BACKEND:PATH[@TEMPERATURE] with backend hf or vllm, "
                         "e.g. vllm:Qwen/Qwen2.5-Math-7B-Instruct@0.7.")
    path, at, temp = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if not at:
        return backend, rest, default_temperature
    try:
        return backend, path, float(temp)
    except ValueError:
        raise ValueError(f"model {spec!r}: the text after '@' must be a temperature, got {temp!r}.") from None


def load_policy(backend: str, path: str, cache: dict[tuple[str, str], Any]) -> Any:
    """One loaded policy per (backend, path)."""
    if (backend, path) not in cache:
        if backend == "hf":
            from prm_plugin.policy.hf import HFPolicy

            cache[backend, path] = HFPolicy.from_pretrained(path)
        else:
            from prm_plugin.policy.vllm import VLLMPolicy

            cache[backend, path] = VLLMPolicy.from_pretrained(path)
    return cache[backend, path]


def policy_prompt(tokenizer: Any, question: str) -> str:
    """The chat template's generation prompt where the tokenizer has one, else the question."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                 add_generation_prompt=True))
    return question + STEP


def read_problems(path: Path, question_field: str, answer_field: str, limit: int | None) -> list[dict[str, Any]]:
    """The problems file's rows, each checked for both fields."""
    rows = []
    with path.open() as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in (question_field, answer_field) if k not in row]
            if missing:
                raise ValueError(f"{path}:{i}: no field {missing[0]!r} (fields: {', '.join(row)}); "
                                 "set --question-field / --answer-field.")
            rows.append({"question": str(row[question_field]), "answer": row[answer_field]})
    return rows[:limit]


def sample_rows(policy: Any, problems: Sequence[dict[str, Any]], *, samples: int, temperature: float,
                max_tokens: int, seed: int) -> list[dict[str, Any]]:
    """``samples`` finished solutions per problem as rows to label (unfinished ones are dropped and counted)."""
    tokenizer = policy.tokenizer
    prompts = [policy_prompt(tokenizer, p["question"]) for p in problems]
    groups = policy.propose(prompts, n=samples, stop=(), max_tokens=max_tokens, temperature=temperature, seed=seed)
    rows = []
    for problem, prompt, group in zip(problems, prompts, groups):
        for proposal in group:
            if proposal.stop_reason == "length":
                continue
            steps = [s for s in proposal.text.split(STEP) if s.strip()]
            if steps:
                rows.append({"prompt": problem["question"], "policy_prompt": prompt, "completions": steps,
                             "answer": problem["answer"]})
    return rows


class _Annotator:
    """A loaded policy pinned to one temperature: one Monte-Carlo annotator."""

    def __init__(self, policy: Any, temperature: float, name: str) -> None:
        self.policy, self.temperature, self.name = policy, temperature, name

    def propose(self, prefixes: Sequence[str], **kwargs: Any) -> Any:
        kwargs["temperature"] = self.temperature
        return self.policy.propose(prefixes, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=Path, required=True, help="JSONL with a question and a reference answer")
    parser.add_argument("--question-field", default="problem")
    parser.add_argument("--answer-field", default="answer")
    parser.add_argument("--policy", required=True, help="the policy whose solutions are labelled (BACKEND:PATH[@T])")
    parser.add_argument("--annotator", action="append", required=True,
                        help="an annotator policy (BACKEND:PATH[@T]); give two or more for consensus")
    parser.add_argument("--samples", type=int, default=4, help="solutions sampled per problem")
    parser.add_argument("--k", type=int, default=8, help="rollouts per step prefix per annotator")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--checker", choices=("math", "world"), default="math")
    parser.add_argument("--labels", choices=("soft", "hard"), default="hard")
    parser.add_argument("--limit", type=int, default=None, help="first problems only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="stepwise JSONL to write")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.k < 1:
        parser.error("--samples and --k must be at least 1")
    try:
        backend, path, temperature = parse_model(args.policy, 0.7)
        specs = [parse_model(a, 0.7) for a in args.annotator]
        problems = read_problems(args.problems, args.question_field, args.answer_field, args.limit)
    except (ValueError, OSError) as exc:
        print(f"consensus_labels: error: {exc}", file=sys.stderr)
        return 2

    from prm_plugin.trainers.aslaf import ConsensusConfig, label_and_filter

    if args.checker == "math":
        from prm_plugin.grading.math import math_checker as checker
    else:
        from prm_plugin.trainers.world.labels import answer_checker as checker

    cache: dict[tuple[str, str], Any] = {}
    policy = load_policy(backend, path, cache)
    rows = sample_rows(policy, problems, samples=args.samples, temperature=temperature,
                       max_tokens=args.max_tokens, seed=args.seed)
    annotators = [_Annotator(load_policy(b, p, cache), t, f"{b}:{p}@{t}") for b, p, t in specs]
    config = ConsensusConfig(k=args.k, max_tokens=args.max_tokens, seed=args.seed + 1, labels=args.labels,
                             step_separator=STEP)
    kept, report = label_and_filter(rows, annotators, checker=checker, config=config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for row in kept:
            f.write(json.dumps({"prompt": row["prompt"], "completions": row["completions"],
                                "labels": row["labels"]}) + "\n")
    summary = {"problems": len(problems), "solutions": len(rows), "kept": len(kept),
               "annotators": [a.name for a in annotators], "report": report.to_json()}
    args.out.with_suffix(".report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(kept)} of {len(rows)} solutions kept by consensus of {len(annotators)} annotators -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
