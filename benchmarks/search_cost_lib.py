"""The parts of ``benchmarks/search_cost.py``: models, workload, one measured run.

Two implementations of every strategy run the same problems with the same seed:

* ``ours``: all problems in one ``Strategy.search`` call (cross-problem batching), the
  HF policy's prefix-KV cache and the PRM's prefix-KV cache on, both fresh per run;
* ``naive``: one problem per ``search`` call, both caches off (``prefix_cache_bytes=0``,
  ``cache_bytes=0``): every step re-prefills the whole prefix and re-scores the whole
  path with the PRM, as search-and-learn's beam search does.

The HF policy draws each sample from a private stream keyed by (seed, prefix text,
sample index), so both see the same samples and must choose the same answers; the
row's ``answers_sha256`` hashes the chosen texts so that is checked, not assumed.
"""

from __future__ import annotations

import hashlib
import json
import math
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prm_plugin.plugins import get_strategy
from prm_plugin.policy.hf import HFPolicy
from prm_plugin.search import Budget, Problem, SearchResult

IMPLS = ("ours", "naive")
#: Implementations that search all problems in one call ("vllm": ours on vLLM engines).
BATCHED = ("ours", "vllm")
#: vLLM engine settings for the "vllm" rows (CPU: in-process engine, 32-token cache blocks).
VLLM_ENGINE = {"enforce_eager": True, "distributed_executor_backend": "uni", "block_size": 32}
#: Random-init model shapes (Qwen2 dimensions; the vocabulary is the world's 99 characters).
SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2, max_position_embeddings=1024),
    "small": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=2, max_position_embeddings=4096),
    # Qwen2-0.5B's shape: what a real small policy / PRM costs per token.
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32768),
}


@dataclass
class Models:
    """One policy model shared by both implementations, and one PRM per implementation
    (the naive one with its cache off). ``prms`` is empty for a PRM-free run."""

    model: Any
    tokenizer: Any
    prms: dict[str, Any]
    batch_size: int = 64
    prefix_cache_bytes: int | None = None  # ours; None = HFPolicy's automatic size
    shared_prefix: bool = True  # ours: shared-prefix attention (False: an ablation)
    vllm_policy: Any = None  # the "vllm" rows' policy (a VLLMPolicy), when asked for

    def policy(self, impl: str) -> Any:
        """A fresh policy (empty prefix cache) for one run."""
        if impl == "vllm":
            self.vllm_policy.llm.reset_prefix_cache()
            return self.vllm_policy
        size = 0 if impl == "naive" else self.prefix_cache_bytes
        return HFPolicy(self.model, self.tokenizer, batch_size=self.batch_size, prefix_cache_bytes=size,
                        shared_prefix_attention=impl != "naive" and self.shared_prefix)


@dataclass(frozen=True)
class Case:
    """One strategy setting: what a pair of rows (ours, naive) measures."""

    strategy: str
    budget: int
    depth: int  # the problems' minimum number of operations (a right solution has depth + 1 steps)
    ops: str  # "min-max" operations, for the table
    params: tuple[tuple[str, Any], ...] = field(default_factory=tuple)


def load_models(folder: Path, *, device: str, dtype: str, batch_size: int, prm_batch_size: int,
                prefix_cache_bytes: int | None = None, prm_cache_bytes: int = 1 << 30) -> Models:
    """The world's policy (``folder/policy``) and two PRMs from ``folder/prm``."""
    from prm_plugin.prm.load import load_prm

    for part in ("policy", "prm"):
        if not (folder / part / "config.json").exists():
            raise SystemExit(f"search_cost: {folder / part} has no config.json. Build the world "
                             "(`prm-plugin world build`) or pass --world DIR / --shape NAME.")
    base = HFPolicy.from_pretrained(str(folder / "policy"), device=device, dtype=dtype, prefix_cache_bytes=0)
    prms = {impl: load_prm(str(folder / "prm"), device=device, dtype=dtype, batch_size=prm_batch_size,
                           cache_bytes=0 if impl == "naive" else prm_cache_bytes) for impl in IMPLS}
    return Models(base.model, base.tokenizer, prms, batch_size, prefix_cache_bytes)


def world_problems(tokenizer: Any, count: int, seed: int, min_ops: int, max_ops: int, max_tokens: int,
                   like: Path | None = None) -> tuple[list[Any], list[Problem]]:
    """``count`` arithmetic problems with ``min_ops..max_ops`` operations, as the world's
    problems and as search problems (prompts built as ``world.evaluate.search_problems``).
    Operand sizes follow the world in ``like`` (its ``figures.json``) when it records them."""
    from prm_plugin.world import Difficulty, make_set
    from prm_plugin.world.evaluate import search_problems

    sizes: dict[str, int] = {}
    figures = like / "figures.json" if like else None
    if figures is not None and figures.exists():
        recorded = json.loads(figures.read_text()).get("config", {}).get("difficulty", {})
        sizes = {k: int(recorded[k]) for k in ("max_operand", "max_value") if k in recorded}
    arith = make_set("arith", count, seed, Difficulty(min_ops=min_ops, max_ops=max_ops, **sizes))
    return arith, search_problems(tokenizer, arith, max_tokens=max_tokens)


class PeakMemory:
    """Peak resident set size of this process over one run.

    On Linux the kernel's high-water mark (``VmHWM``) is reset before each run by writing
    ``5`` to ``/proc/self/clear_refs``, so each row has its own peak. Elsewhere the
    figure is ``getrusage``'s ``ru_maxrss``: the process-wide peak so far, never reset.
    """

    def __init__(self) -> None:
        self.method = "VmHWM, reset per run (/proc/self/clear_refs)"

    def reset(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "ru_maxrss, process-wide peak (not reset per run)"
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    @staticmethod
    def current_mb() -> float | None:
        """Resident memory now (the floor of the next peak), where /proc tells it."""
        try:
            status = Path("/proc/self/status").read_text()
        except OSError:
            return None
        return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), None)

    def peak_mb(self) -> float:
        if self.method.startswith("VmHWM"):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    @staticmethod
    def peak_gpu_mb() -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def search(case: Case, impl: str, problems: Sequence[Problem], models: Models) -> tuple[list[SearchResult], float]:
    """Run one case with one implementation; returns the results and the wall seconds."""
    strategy = get_strategy(case.strategy)(**dict(case.params))
    policy = models.policy(impl)
    prm = models.prms.get(impl) if strategy.needs_prm or dict(case.params).get("weighted") else None
    if prm is not None:
        prm.clear_cache()  # each run starts cold, so runs do not help each other
    budget = Budget(n=case.budget)
    _sync()
    start = time.perf_counter()
    if impl in BATCHED:
        results = strategy.search(list(problems), policy, prm, budget)
    else:
        results = [r for p in problems for r in strategy.search([p], policy, prm, budget)]
    _sync()
    return results, time.perf_counter() - start


def answers_sha256(results: Sequence[SearchResult]) -> str:
    """Hash of the chosen answers' texts, in problem order."""
    return hashlib.sha256(json.dumps([r.text for r in results]).encode()).hexdigest()


def measure(case: Case, impl: str, problems: Sequence[Problem], models: Models, memory: PeakMemory,
            truth: Sequence[Any] | None = None) -> dict[str, Any]:
    """One row: the summed ``Cost`` of every problem, wall seconds, peak memory, answers."""
    from prm_plugin.world import is_correct

    memory.reset()
    start_mb = memory.current_mb()
    results, seconds = search(case, impl, problems, models)
    costs = [r.cost for r in results]
    row: dict[str, Any] = {
        "strategy": case.strategy, "impl": impl, "budget": case.budget, "depth": case.depth,
        "prm_tokens": sum(c.prm_tokens for c in costs),
        "unique_tokens": sum(c.unique_tokens for c in costs),
        "policy_prefill_tokens": sum(c.policy_prefill_tokens for c in costs),
        "unique_prompt_tokens": sum(c.unique_prompt_tokens for c in costs),
        "generated_tokens": sum(c.policy_generated_tokens for c in costs),
        "seconds": round(seconds, 4),
        "peak_rss_mb": round(memory.peak_mb(), 1),
        "answers_sha256": answers_sha256(results),
        # extras
        "ops": case.ops, "problems": len(results), "params": dict(case.params),
        "mean_steps": round(_mean_steps(results), 2),
        "tokens_per_s": round(sum(c.policy_generated_tokens for c in costs) / seconds, 1),
        "peak_memory_method": memory.method,
        "rss_start_mb": None if start_mb is None else round(start_mb, 1),
    }
    gpu = memory.peak_gpu_mb()
    if gpu is not None:
        row["peak_gpu_mb"] = round(gpu, 1)
    if truth is not None:
        row["accuracy"] = round(sum(is_correct(t, r.text) for t, r in zip(truth, results, strict=True))
                                / len(results), 4)
    return row


def _mean_steps(results: Sequence[SearchResult]) -> float:
    chosen = [r.candidates[r.chosen] for r in results if r.chosen is not None]
    return sum(len(c.steps) for c in chosen) / len(chosen) if chosen else math.nan


def generate_baseline(model: Any, tokenizer: Any, prompts: Sequence[str], n: int, max_new_tokens: int,
                      temperature: float) -> dict[str, float]:
    """Plain ``model.generate`` sampling ``n`` solutions per prompt (EOS ends a row):
    useful generated tokens per second on the same machine, for comparison."""
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    finally:
        tokenizer.padding_side = side
    eos = tokenizer.eos_token_id
    _sync()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                             num_return_sequences=n, max_new_tokens=max_new_tokens,
                             eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    _sync()
    seconds = time.perf_counter() - start
    tokens = 0
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        tokens += row.index(eos) + 1 if eos in row else len(row)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def build_shape_world(folder: Path, shape: str, *, seed: int = 0, step_tokens: float = 40.0,
                      solution_tokens: float = 400.0) -> Path:
    """Save a random-init policy and value-head PRM of ``shape`` with the world's tokenizer.

    A random-init LM writes near-uniform tokens, so "\\n\\n" (the step delimiter, one token
    of the world's byte-level BPE) and EOS would be as rare or as common as any token. To
    give the search real steps, one residual dimension is made constant (embedding column
    0 = 1) and only the output rows of "\\n\\n", EOS, the other newline tokens and the
    special tokens read it: P("\\n\\n") is set so a step lasts about ``step_tokens`` tokens,
    P(EOS) so a solution about ``solution_tokens``, and the other newline tokens and chat
    specials are never sampled. Everything else stays random.
    """
    from transformers import AutoModelForCausalLM, Qwen2Config

    from prm_plugin.prm.value_head_model import ValueHeadPRM, ValueHeadPRMConfig
    from prm_plugin.world.tokenizer import build_tokenizer

    if shape not in SHAPES:
        raise ValueError(f"Unknown shape {shape!r}; choose one of {', '.join(SHAPES)}.")
    tok = build_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), tie_word_embeddings=False, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=None, **SHAPES[shape])
    model = AutoModelForCausalLM.from_config(config).eval()
    _steer(model, tok, step_tokens, solution_tokens)
    model.save_pretrained(folder / "policy")
    tok.save_pretrained(folder / "policy")
    # A wider init spreads the random PRM's scores, so rankings are not decided by float noise.
    prm_config = Qwen2Config(vocab_size=len(tok), initializer_range=0.1, **SHAPES[shape])
    ValueHeadPRM(ValueHeadPRMConfig(backbone_config=prm_config, step_separator="\n\n")).save_pretrained(
        folder / "prm")
    tok.save_pretrained(folder / "prm")
    return folder


@torch.no_grad()
def _steer(model: Any, tok: Any, step_tokens: float, solution_tokens: float) -> None:
    """See ``build_shape_world``: the step token at p = 1 / step_tokens per position (a
    geometric wait), EOS at 1 / solution_tokens."""
    if step_tokens <= 2 or solution_tokens <= step_tokens:
        raise ValueError(f"Need 2 < step_tokens < solution_tokens; got {step_tokens}, {solution_tokens}.")
    (step,) = tok("\n\n", add_special_tokens=False)["input_ids"]
    p, q, eos = 1 / step_tokens, 1 / solution_tokens, tok.eos_token_id
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    banned = (set(tok.all_special_ids) - {eos}) | {k for k, t in enumerate(vocab) if "\u010a" in t and k != step}
    plain = len(tok) - len(banned) - 2  # the tokens other than the step token and EOS
    model.get_input_embeddings().weight[:, 0] = 1.0
    ids = tok("Compute 12 + 7 - 3 from left to right.\n\n12 + 7 = 19", return_tensors="pt")["input_ids"]
    h0 = float(model.model(input_ids=ids).last_hidden_state[0, :, 0].mean())
    head = model.get_output_embeddings().weight
    head[:, 0] = 0.0
    rest = 1 - p - q  # mass of the plain tokens, each with logit ~0
    head[step, 0] = math.log(p * plain / rest) / h0
    head[eos, 0] = math.log(q * plain / rest) / h0
    for k in banned:
        head[k, 0] = -30.0 / h0


def add_vllm(models: Models, folder: Path, scratch: Path, *, dtype: str, prm_backend: str,
             max_model_len: int) -> None:
    """The "vllm" rows' engines: the world's policy on vLLM, and its PRM on vLLM's pooling
    runner (exported to ``scratch`` as a token-classification checkpoint) or, with
    ``prm_backend="hf"``, the in-process scorer ours uses."""
    from prm_plugin.policy.vllm import VLLMPolicy

    engine = {**VLLM_ENGINE, "dtype": dtype, "max_model_len": max_model_len}
    models.vllm_policy = VLLMPolicy.from_pretrained(str(folder / "policy"), **engine)
    if prm_backend == "vllm":
        from prm_plugin.prm.load import load_prm
        from prm_plugin.trainers.export import export_token_classification

        exported = export_token_classification(str(folder / "prm"), scratch / "prm_tc")
        models.prms["vllm"] = load_prm(str(exported), backend="vllm", **engine)
    else:
        models.prms["vllm"] = models.prms["ours"]
