"""Bounded parallel execution: many programs, a few sandboxes at a time.

Threads in the parent each supervise one sandbox (the work happens in the sandboxes, so
the GIL is not a bottleneck). Per-test limits are CPU time read by the parent, so results
do not drift when the pool oversubscribes the cores; wall time only backs them up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .api import check_solution, default_sandbox, run_python
from .box import Sandbox
from .model import ExecResult, Verdict


def _workers(workers: int | None, n: int) -> int:
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return max(1, min(n, workers or os.cpu_count() or 1))


def run_many(codes: Sequence[str], *, stdins: Sequence[str | bytes | None] | None = None,
             workers: int | None = None, sandbox: Sandbox | None = None, **kwargs: Any) -> list[ExecResult]:
    """:func:`run_python` over many programs, at most ``workers`` at once; results in order.

    ``stdins`` (optional) gives one stdin per program; other keywords go to ``run_python``.
    """
    if stdins is not None and len(stdins) != len(codes):
        raise ValueError(f"stdins has {len(stdins)} entries for {len(codes)} programs")
    if not codes:
        return []
    box = sandbox or default_sandbox()
    ins = list(stdins) if stdins is not None else [None] * len(codes)
    with ThreadPoolExecutor(_workers(workers, len(codes)), thread_name_prefix="sandbox") as pool:
        futures = [pool.submit(run_python, c, stdin=s, sandbox=box, **kwargs) for c, s in zip(codes, ins, strict=True)]
        return [f.result() for f in futures]


def check_many(jobs: Sequence[Any], *, workers: int | None = None, sandbox: Sandbox | None = None,
               **kwargs: Any) -> list[Verdict]:
    """:func:`check_solution` over many jobs, at most ``workers`` at once; verdicts in order.

    A job is ``(program, tests)`` or a mapping with ``program`` and ``tests`` plus any
    per-job keyword (``entry_point``, ``kind``, ...); ``kwargs`` apply to every job.
    """
    calls = [_job(j, i, kwargs) for i, j in enumerate(jobs)]
    if not calls:
        return []
    box = sandbox or default_sandbox()
    with ThreadPoolExecutor(_workers(workers, len(calls)), thread_name_prefix="sandbox") as pool:
        futures = [pool.submit(check_solution, program, tests, sandbox=box, **kw) for program, tests, kw in calls]
        return [f.result() for f in futures]


def _job(job: Any, i: int, shared: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    if isinstance(job, Mapping):
        if "program" not in job or "tests" not in job:
            raise ValueError(f"job {i}: a mapping job needs 'program' and 'tests' keys, got {sorted(job)}")
        extra = {k: v for k, v in job.items() if k not in ("program", "tests")}
        return job["program"], job["tests"], {**shared, **extra}
    if isinstance(job, tuple) and len(job) == 2:
        return job[0], job[1], dict(shared)
    raise ValueError(f"job {i}: expected (program, tests) or a mapping, got {type(job).__name__}")
