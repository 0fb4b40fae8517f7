"""The PRM scorer's micro-batch plan: rows are grouped by how many new tokens they run.

Found by ``benchmarks/search_cost.py``: ordered by total length, one long new step
(a runaway step cut at the token cap) landed in a batch of short ones and padded every
row of it to its length.
"""

from __future__ import annotations

from prm_plugin.prm.kv_cache import Node
from prm_plugin.prm.scorer import _Job, _plan_batches


def _job(query: int, prefix: int, new: int) -> _Job:
    path = [Node(key=tuple(range(prefix)), parent=None)] if prefix else []
    return _Job(query, path, [tuple(range(new))], 1)


def test_long_new_steps_are_batched_together_not_with_short_ones() -> None:
    # totals 210, 205, 200, 205: by total length the two long steps would be split up
    jobs = [_job(0, 200, 10), _job(1, 5, 200), _job(2, 190, 10), _job(3, 0, 205)]
    assert _plan_batches(jobs, batch_size=2, max_tokens=10_000) == [[2, 0], [1, 3]]


def test_plan_respects_both_limits_and_keeps_every_job_once() -> None:
    jobs = [_job(i, 10 * i, 3 + i % 4) for i in range(9)]
    batches = _plan_batches(jobs, batch_size=4, max_tokens=200)
    assert sorted(j for b in batches for j in b) == list(range(9))
    for b in batches:
        width = max(jobs[j].prefix_len for j in b) + max(jobs[j].new_len for j in b)
        assert len(b) <= 4 and (len(b) == 1 or len(b) * width <= 200)
