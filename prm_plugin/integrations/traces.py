"""Per-sample search traces (sidecar JSONL per task) and the per-task cost summary.

Trace lines are keyed by lm-eval's own ``prompt_hash`` (sha256 of the request's
context string, as in ``--log_samples`` output), so a trace joins its sample with
``jq``/pandas on ``prompt_hash`` (plus ``repeat`` when a task asks for repeats).

Under data parallelism each rank writes its own ``<task>.rank<r>.traces.jsonl`` as it
goes, and rank 0 writes the merged ``<task>.traces.jsonl`` (every rank's lines, in doc
order) once all ranks have finished.
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
    """Writes ``<folder>/<task>.traces.jsonl`` (``<task>.<shard>.traces.jsonl`` for a
    data-parallel rank's own lines); each file is rewritten once per model instance (a
    resumed run re-emits finished problems from the result store, so the file always
    holds exactly the run's samples)."""

    def __init__(self, folder: str | Path, shard: str | None = None) -> None:
        self.folder = Path(folder)
        self.shard = shard
        self._started: set[tuple[str, str | None]] = set()

    def path(self, task: str, shard: str | None = None) -> Path:
        return self.folder / f"{_safe_name(task)}{f'.{shard}' if shard else ''}.traces.jsonl"

    def write(self, task: str, lines: list[dict[str, Any]]) -> None:
        """Add this writer's lines for ``task``."""
        if self.shard is None and (task, None) not in self._started:
            self._drop_rank_files(task, 0)  # a single process: any rank's file is an older run's
        self._write(task, self.shard, lines)

    def write_merged(self, task: str, lines: list[dict[str, Any]], world_size: int) -> None:
        """Rank 0: add every rank's lines to ``<task>.traces.jsonl`` in doc order (the first
        time, also remove the per-rank files a run with more ranks left behind)."""
        if (task, None) not in self._started:
            self._drop_rank_files(task, world_size)
        self._write(task, None, sorted(lines, key=lambda x: (x.get("doc_id") or 0, x.get("repeat") or 0)))

    def _drop_rank_files(self, task: str, world_size: int) -> None:
        prefix = f"{_safe_name(task)}.rank"
        for stale in self.folder.glob(f"{prefix}*.traces.jsonl"):
            rank = stale.name[len(prefix):-len(".traces.jsonl")]
            if not rank.isdigit() or int(rank) >= world_size:
                stale.unlink(missing_ok=True)

    def _write(self, task: str, shard: str | None, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        mode = "a" if (task, shard) in self._started else "w"
        self._started.add((task, shard))
        with self.path(task, shard).open(mode, encoding="utf-8") as f:
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

    def state(self) -> dict[str, dict[str, float]]:
        """The raw sums, to send to another rank (``absorb``)."""
        return {task: dict(sums) for task, sums in self._sums.items()}

    def absorb(self, state: dict[str, dict[str, float]]) -> None:
        """Add another ``CostSummary``'s ``state()`` (another rank's problems) to this one."""
        for task, sums in state.items():
            for key, value in sums.items():
                self._sums[task][key] += value

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
