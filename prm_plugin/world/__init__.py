"""The synthetic world: a multi-step arithmetic task (and a code-like twin), a tiny
policy and a tiny PRM trained on it, shipped so that every path runs offline.

``paths()`` gives the shipped assets; ``load_set(name)`` the shipped problem sets.
"""

from __future__ import annotations

import json
from pathlib import Path

from prm_plugin.world.generator import Difficulty, ErrorModel, Problem, make_set
from prm_plugin.world.grading import is_correct, true_step_labels

ASSETS = Path(__file__).resolve().parent / "assets"
SETS = ("arith_test", "arith_val", "codelike_test")
WORLD_VERSION = 3  # 3: byte-level BPE tokenizer in the Qwen2 format, head_dim 32 (vLLM-compatible)


def paths() -> dict[str, Path]:
    """Paths of the shipped policy and PRM checkpoints and problem sets."""
    out = {"policy": ASSETS / "policy", "prm": ASSETS / "prm"}
    out.update({name: ASSETS / f"{name}.jsonl" for name in SETS})
    return out


def load_set(name: str) -> list[Problem]:
    """A shipped problem set (``arith_test``, ``arith_val``, ``codelike_test``)."""
    if name not in SETS:
        raise ValueError(f"Unknown world set {name!r}; choose one of {', '.join(SETS)}.")
    path = paths()[name]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild the world with `prm-plugin world build`.")
    with path.open() as f:
        return [Problem.from_json(json.loads(line)) for line in f if line.strip()]


__all__ = [
    "Difficulty", "ErrorModel", "Problem", "SETS", "WORLD_VERSION", "is_correct", "load_set",
    "make_set", "paths", "true_step_labels",
]
