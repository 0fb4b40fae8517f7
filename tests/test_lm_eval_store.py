"""The resume store and the cost summary behind prm_guided."""

from __future__ import annotations

import json
import math

import pytest

from prm_plugin.integrations.result_store import ResultStore, request_key
from prm_plugin.integrations.traces import CostSummary, TraceWriter, prompt_hash


def test_records_survive_reopening_and_keys_depend_on_the_configuration(tmp_path):
    store = ResultStore(tmp_path, "cfgA", {"strategy": "bon"})
    key = request_key("cfgA", "prompt", {"until": []}, "q", 0)
    store.put_many([(key, {"text": "42"})])
    again = ResultStore(tmp_path, "cfgA")
    assert again.get(key) == {"text": "42"} and len(again) == 1
    assert request_key("cfgB", "prompt", {"until": []}, "q", 0) != key
    assert request_key("cfgA", "prompt", {"until": []}, "q", 1) != key  # repeats differ
    other = ResultStore(tmp_path, "cfgB")
    assert other.path != store.path and other.get(key) is None


def test_a_truncated_last_line_is_skipped_and_overwritten(tmp_path, caplog):
    store = ResultStore(tmp_path, "cfg")
    store.put_many([("k1", {"text": "a"})])
    with store.path.open("ab") as f:
        f.write(b'{"key": "k2", "record": {"te')  # killed mid-write
    again = ResultStore(tmp_path, "cfg")
    assert again.skipped_lines == 1 and "k2" not in again and again.get("k1") == {"text": "a"}
    assert "truncated" in caplog.text
    again.put_many([("k3", {"text": "c"})])
    lines = again.path.read_text().splitlines()
    assert [json.loads(x).get("key") for x in lines] == [None, "k1", "k3"]
    assert ResultStore(tmp_path, "cfg").get("k3") == {"text": "c"}


def test_a_store_file_of_another_configuration_is_refused(tmp_path):
    store = ResultStore(tmp_path, "aaaaaaaaaaaaaaaaaaaaaaaaZZZ")
    with pytest.raises(ValueError, match="another configuration"):
        ResultStore(tmp_path, "aaaaaaaaaaaaaaaaaaaaaaaaYYY")  # same 24-char file name
    assert store.path.exists()


def test_cost_summary_means_and_ratio():
    costs = CostSummary()
    costs.add("t", {"policy_prefill_tokens": 10, "policy_generated_tokens": 30, "prm_tokens": 40,
                    "unique_tokens": 20}, seconds=1.0, resumed=False)
    costs.add("t", {"policy_prefill_tokens": 0, "policy_generated_tokens": 10, "prm_tokens": 20,
                    "unique_tokens": 20}, seconds=3.0, resumed=True)
    costs.add("u", {}, seconds=0.5, resumed=False)
    s = costs.summary()
    assert s["t"]["problems"] == 2 and s["t"]["resumed"] == 1
    assert s["t"]["mean_policy_tokens"] == 25.0 and s["t"]["mean_policy_generated_tokens"] == 20.0
    assert s["t"]["mean_prm_tokens"] == 30.0 and s["t"]["prm_tokens_per_unique_token"] == 1.5
    assert s["t"]["seconds_per_problem"] == 2.0
    assert math.isnan(s["u"]["prm_tokens_per_unique_token"])
    table = costs.table().splitlines()
    assert table[0].startswith("task") and table[1].split()[:3] == ["t", "2", "1"]


def test_trace_files_are_rewritten_per_writer_and_appended_within_it(tmp_path):
    TraceWriter(tmp_path).write("a/b", [{"x": 1}])
    writer = TraceWriter(tmp_path)
    writer.write("a/b", [{"x": 2}])
    writer.write("a/b", [{"x": 3}])
    assert writer.path("a/b").name == "a_b.traces.jsonl"
    assert [json.loads(x)["x"] for x in writer.path("a/b").read_text().splitlines()] == [2, 3]


def test_prompt_hash_is_lm_evals():
    from lm_eval.utils import hash_string

    assert prompt_hash("Q: 1+1?\nA:") == hash_string("Q: 1+1?\nA:")


def test_a_checkpoint_changed_in_place_changes_its_stamp(tmp_path):
    import os

    from prm_plugin.integrations.lm_eval_config import checkpoint_stamp

    (tmp_path / "model.safetensors").write_bytes(b"v1")
    first = checkpoint_stamp(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"v2!")
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))
    assert first is not None and checkpoint_stamp(str(tmp_path)) != first
    assert checkpoint_stamp("org/hub-id") is None and checkpoint_stamp(None) is None
