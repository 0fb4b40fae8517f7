"""A toy stepwise dataset whose labels a tiny model can learn in seconds.

Each row adds small numbers: correct steps read ``a + b = a+b``; an erroneous step
(at most one, always last: the row stops at the first error, like PRM800K's chosen
path) reads ``a - b = a+b``. The operator separates the classes, so a tiny model's
step accuracy measures whether training works, not arithmetic.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any


def toy_rows(n: int, seed: int = 0, error_rate: float = 0.5) -> list[dict[str, Any]]:
    """``n`` stepwise rows (``prompt``, ``completions``, ``labels``), reproducible by seed.

    >>> toy_rows(1, seed=3)[0]["prompt"]
    'Add the numbers step by step.'
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        steps, labels = [], []
        for _ in range(rng.randint(0, 2)):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            steps.append(f"{a} + {b} = {a + b}")
            labels.append(True)
        if not steps or rng.random() < error_rate:
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            steps.append(f"{a} - {b} = {a + b}")
            labels.append(False)
        rows.append({"prompt": "Add the numbers step by step.", "completions": steps, "labels": labels})
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL and return the path."""
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m trainers.toy OUT.jsonl [N] [SEED]
    args = sys.argv[1:]
    write_jsonl(toy_rows(int(args[1]) if len(args) > 1 else 400, int(args[2]) if len(args) > 2 else 0), args[0])
