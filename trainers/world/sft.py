"""Train the world's tiny policy with TRL's SFT trainer on noisy solutions.

The policy is a small Qwen2-architecture causal LM over the world's byte-level BPE.
Its training data are solutions drawn under the world's error model (see
``prm_plugin.world.generator``), so the policy learns to be right often, not always,
and to make the step errors the PRM is then trained to catch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prm_plugin.world.generator import (
    DOMAINS,
    Difficulty,
    ErrorModel,
    render_solution,
    sample_problem,
    sample_solution,
)

STEP_DELIMITER = "\n\n"


@dataclass(frozen=True)
class PolicyShape:
    """Size of the tiny policy (kept small enough to ship: a few MB of safetensors).

    ``hidden_size / num_heads`` is the head dimension: vLLM's CPU attention needs at least
    32 (16 and 24 are refused), so the shipped world keeps it at 32. Grouped-query
    attention (``num_kv_heads < num_heads``) as in Qwen2.5."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384


def sft_rows(n: int, seed: int, difficulty: Difficulty, errors: ErrorModel) -> list[dict[str, Any]]:
    """``n`` conversational prompt-completion rows (TRL's format): two arithmetic rows for
    every code-like one (the PRM is trained on arithmetic; code-like rows are longer)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        domain = DOMAINS[1] if i % 3 == 2 else DOMAINS[0]
        problem = sample_problem(rng, domain, difficulty, f"sft-{i}")
        steps = render_solution(problem, sample_solution(problem, rng, errors))
        rows.append({
            "prompt": [{"role": "user", "content": problem.question}],
            "completion": [{"role": "assistant", "content": STEP_DELIMITER.join(steps)}],
        })
    return rows


def train_policy(
    out_dir: Path,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    *,
    shape: PolicyShape,
    epochs: float,
    batch_size: int,
    learning_rate: float,
    seed: int,
) -> Path:
    """Train a fresh policy on ``rows`` with ``trl.SFTTrainer`` and save it to ``out_dir``."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Qwen2Config
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(config)
    steps = max(1, int(len(rows) * epochs / batch_size))
    args = SFTConfig(
        output_dir=str(out_dir / "_sft_run"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        # warmup, a long stable phase, then a short decay: a tiny model learning arithmetic
        # is limited by how long the learning rate stays high (a cosine decay from the start
        # left it at 12% greedy accuracy where this schedule reaches the target range).
        lr_scheduler_type="warmup_stable_decay",
        lr_scheduler_kwargs={"num_decay_steps": max(1, steps // 4), "min_lr_ratio": 0.05},
        warmup_steps=max(1, steps // 20),
        weight_decay=0.0,
        max_length=384,  # the longest code-like row is ~300 tokens: nothing is cut
        logging_steps=50,
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        # TRL's SFTConfig turns bf16 on by default; on a CPU that autocasts training to
        # bfloat16 and the tiny model barely learns (8% vs 60% greedy accuracy here).
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    trainer.train()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
