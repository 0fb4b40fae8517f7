"""Per-sample search traces (sidecar JSONL per task) and the per-task cost summary.

Trace lines are keyed by lm-eval's own ``prompt_hash`` (sha256 of the request's
context string, as in ``--log_samples`` output), so a trace joins its sample with
``jq``/pandas on ``prompt_hash`` (plus ``repeat`` when a task asks for repeats).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any


def prompt_hash(context: str) -> str:
    """lm-eval's ``prompt_hash`` of a request (``lm_eval.utils.hash_string``)."""
    return hashlib.sha256(context.encode("utf-8")).hexdigest()


def _safe_name(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task) or "task"


class TraceWriter:
    """Writes ``<folder>/<task>.traces.jsonl``; each file is rewritten once per model
    instance (a resumed run re-emits finished problems from the result store, so the
    file always holds exactly the run's samples)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._started: set[str] = set()

    def path(self, task: str) -> Path:
        return self.folder / f"{_safe_name(task)}.traces.jsonl"

    def write(self, task: str, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        mode = "a" if task in self._started else "w"
        self._started.add(task)
        with self.path(task).open(mode, encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False, default=repr) + "\n")


_COLUMNS = (
    ("problems", "problems", "{:d}"),
    ("resumed", "resumed", "{:d}"),
    ("mean_policy_tokens", "policy tok/prob", "{:.1f}"),
    ("mean_policy_generated_tokens", "generated", "{:.1f}"),
    ("mean_prm_tokens", "PRM tok/prob", "{:.1f}"),
    ("prm_tokens_per_unique_token", "PRM/unique", "{:.2f}"),
    ("seconds_per_problem", "s/prob", "{:.3f}"),
    ("overflowed", "overflowed", "{:d}"),
    ("failures", "failed", "{:d}"),
)
#: Cost counters of inputs that did not fit a model's context, summed per task.
OVERFLOW_COUNTS = ("policy_truncated", "policy_skipped", "prm_truncated", "prm_skipped")


class CostSummary:
    """Accumulates measured ``Cost`` per task and reports means."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, task: str, cost: dict[str, Any], seconds: float, resumed: bool, failed: bool = False) -> None:
        """Add one problem's ``Cost`` (as JSON); ``failed``: its search failed (empty answer)."""
        s = self._sums[task]
        s["problems"] += 1
        s["resumed"] += int(resumed)
        s["failures"] += int(failed)
        s["overflowed"] += int(any(cost.get(k, 0) for k in OVERFLOW_COUNTS))
        for key in OVERFLOW_COUNTS:
            s[key] += cost.get(key, 0)
        s["prefill"] += cost.get("policy_prefill_tokens", 0)
        s["generated"] += cost.get("policy_generated_tokens", 0)
        s["prm"] += cost.get("prm_tokens", 0)
        s["unique"] += cost.get("unique_tokens", 0)
        s["seconds"] += seconds

    def summary(self) -> dict[str, dict[str, float]]:
        """Per task: problems, resumed, mean policy tokens (prefilled + generated),
        mean generated tokens, mean PRM tokens, PRM tokens / unique tree tokens, seconds
        per problem (search wall time shared equally within a batch), ``failures``
        (problems whose search failed and got an empty answer), ``overflowed`` (problems
        with an input longer than a model's context) and the totals of ``Cost``'s
        ``policy_truncated`` / ``policy_skipped`` / ``prm_truncated`` / ``prm_skipped``."""
        out: dict[str, dict[str, float]] = {}
        for task, s in sorted(self._sums.items()):
            n = s["problems"]
            out[task] = {
                "problems": int(n),
                "resumed": int(s["resumed"]),
                "mean_policy_tokens": (s["prefill"] + s["generated"]) / n,
                "mean_policy_prefill_tokens": s["prefill"] / n,
                "mean_policy_generated_tokens": s["generated"] / n,
                "mean_prm_tokens": s["prm"] / n,
                "prm_tokens_per_unique_token": s["prm"] / s["unique"] if s["unique"] else math.nan,
                "seconds_per_problem": s["seconds"] / n,
                "failures": int(s["failures"]),
                "overflowed": int(s["overflowed"]),
                **{key: int(s[key]) for key in OVERFLOW_COUNTS},
            }
        return out

    def table(self) -> str:
        """The summary as a fixed-width text table."""
        summary = self.summary()
        header = ["task"] + [title for _, title, _ in _COLUMNS]
        rows = [[task] + [fmt.format(vals[key]) for key, _, fmt in _COLUMNS] for task, vals in summary.items()]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in [header, *rows]]
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.summary(), indent=2, allow_nan=True) + "\n", encoding="utf-8")
