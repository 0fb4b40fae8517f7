"""Kill a prm_guided run midway, rerun it, and check that no finished problem is
recomputed and none is lost (lm-eval's real evaluator, a slow fake strategy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).parent
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import lm_eval
from lm_eval.tasks import TaskManager
from lm_eval_fakes import AddStrategy, NoCallPolicy
from prm_plugin.integrations.lm_eval import PRMGuidedLM

lm = PRMGuidedLM(policy=NoCallPolicy(), strategy=AddStrategy(), trace_path=sys.argv[1], search_batch_size=1)
tasks = TaskManager(include_path={tasks!r}, include_defaults=False)
out = lm_eval.simple_evaluate(model=lm, tasks=["tiny_prm"], task_manager=tasks, bootstrap_iters=0)
print("RESULT", out["results"]["tiny_prm"]["exact_match,none"])
"""


def _start(script: Path, traces: Path, log: Path, slow: float) -> subprocess.Popen:
    env = dict(os.environ, PRM_TEST_SLOW_SECONDS=str(slow), PRM_TEST_SOLVED_LOG=str(log))
    return subprocess.Popen([sys.executable, str(script), str(traces)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _stored(traces: Path) -> list[dict]:
    files = list((traces / "store").glob("*.jsonl"))
    if not files:
        return []
    lines = files[0].read_text().splitlines()
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        if "key" in entry:
            out.append(entry["record"])
    return out


def test_killed_run_resumes_without_recomputing_or_losing_problems(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), tasks=str(TESTS / "fixtures" / "tasks")))
    traces = tmp_path / "traces"
    first = _start(script, traces, tmp_path / "solved1.log", slow=0.4)
    deadline = time.monotonic() + 180
    while len(_stored(traces)) < 2:
        assert first.poll() is None, f"the first run ended early: {first.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the first run never stored two results"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    stored_uids = {r["uid"] for r in _stored(traces)}
    assert 2 <= len(stored_uids) < 6, "the kill should land midway"

    second = _start(script, traces, tmp_path / "solved2.log", slow=0)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-3000:]
    assert "RESULT 1.0" in out
    recomputed = set((tmp_path / "solved2.log").read_text().split())
    every = {f"tiny_prm/{i}/0" for i in range(6)}
    assert recomputed == every - stored_uids  # nothing finished was recomputed, nothing is missing
    trace_lines = [json.loads(x) for x in (traces / "tiny_prm.traces.jsonl").read_text().splitlines()]
    assert sorted(t["doc_id"] for t in trace_lines) == list(range(6))
    assert sum(t["resumed"] for t in trace_lines) == len(stored_uids)
    assert {r["uid"] for r in _stored(traces)} == every
