"""benchmarks/search_cost.py on a tiny random-init shape: ours and the naive reference
choose identical answers, and ours runs every tree token through the PRM once.

Assertions are on measured counts only, never on time.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
KEYS = {"strategy", "impl", "budget", "depth", "prm_tokens", "unique_tokens", "policy_prefill_tokens",
        "unique_prompt_tokens", "generated_tokens", "seconds", "peak_rss_mb", "answers_sha256"}


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> Any:
    return _load("search_cost")


@pytest.fixture(scope="module")
def rows(bench: Any, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("search_cost") / "rows.json"
    argv = ["--shape", "tiny", "--device", "cpu", "--threads", "1", "--problems", "3", "--budgets", "4", "--ops", "2-3",
            "--strategies", "bon,beam,mcts", "--max-tokens", "72", "--step-tokens", "10",
            "--solution-tokens", "60", "--json"]
    got = bench.main(argv)
    out.write_text(json.dumps(got))
    return list(got)


def _by(rows: list[dict[str, Any]], strategy: str, impl: str) -> dict[str, Any]:
    [row] = [r for r in rows if r["strategy"] == strategy and r["impl"] == impl]
    return row


def test_rows_have_the_issue_keys(rows: list[dict[str, Any]]) -> None:
    assert len(rows) == 6
    for row in rows:
        assert set(row) >= KEYS, KEYS - set(row)
        assert row["budget"] == 4 and row["depth"] == 2 and row["impl"] in ("ours", "naive")


@pytest.mark.parametrize("strategy", ["bon", "beam", "mcts"])
def test_ours_and_naive_search_the_same_tree_and_choose_the_same_answers(
    rows: list[dict[str, Any]], strategy: str
) -> None:
    ours, naive = _by(rows, strategy, "ours"), _by(rows, strategy, "naive")
    assert ours["answers_sha256"] == naive["answers_sha256"]
    # the same samples were drawn, so the trees are the same
    for key in ("generated_tokens", "unique_tokens", "unique_prompt_tokens"):
        assert ours[key] == naive[key], key
    assert ours["prm_tokens"] <= 1.05 * ours["unique_tokens"]
    assert naive["prm_tokens"] > ours["prm_tokens"]  # the reference rescoring full prefixes


@pytest.mark.parametrize("strategy", ["beam", "mcts"])
def test_tree_search_reuses_prefixes_and_the_reference_does_not(rows: list[dict[str, Any]], strategy: str) -> None:
    ours, naive = _by(rows, strategy, "ours"), _by(rows, strategy, "naive")
    assert ours["mean_steps"] > 1.5  # the steered random policy really writes steps
    assert ours["policy_prefill_tokens"] <= 1.2 * ours["unique_prompt_tokens"]
    assert naive["policy_prefill_tokens"] > 1.2 * naive["unique_prompt_tokens"]


def test_table_and_targets_read_the_rows(bench: Any, rows: list[dict[str, Any]]) -> None:
    text = bench.table(rows, {"peak_memory_method": "test"})
    assert text.count(" equal") == 3 and "DIFFER" not in text
    checks = dict((msg, ok) for ok, msg in bench.targets(rows))
    assert all(ok for msg, ok in checks.items() if msg.startswith(("T_R/U", "identical")))
    assert any(msg.startswith("beam@4 <= 1.5x bon@4") for msg in checks)
    broken = [dict(r, answers_sha256="x") if r["impl"] == "naive" else r for r in rows]
    assert "DIFFER" in bench.table(broken, {})
    assert not any(ok for ok, msg in bench.targets(broken) if msg.startswith("identical"))


def test_shapes_build_qwen2_of_the_stated_size(bench: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    lib = sys.modules["search_cost_lib"]
    config = Qwen2Config(vocab_size=99, tie_word_embeddings=False, **lib.SHAPES["0.5b"])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    body = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    assert 350e6 < body < 370e6  # Qwen2-0.5B without its 151,936-row vocabulary: ~358M


def test_steering_sets_step_and_solution_lengths(bench: Any, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from prm_plugin.world.tokenizer import build_tokenizer

    lib = sys.modules["search_cost_lib"]
    folder = lib.build_shape_world(tmp_path, "tiny", step_tokens=10, solution_tokens=60)
    model = AutoModelForCausalLM.from_pretrained(folder / "policy")
    tok = build_tokenizer()
    assert model.config.hidden_size == lib.SHAPES["tiny"]["hidden_size"]
    assert (folder / "prm" / "config.json").exists()
    ids = tok("Compute 1 + 2 from left to right.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
    (step,) = tok("\n\n", add_special_tokens=False)["input_ids"]
    (newline,) = tok("\n", add_special_tokens=False)["input_ids"]
    p_step, p_eos = float(probs[step]), float(probs[tok.eos_token_id])
    # a step token every ~10 tokens, EOS every ~60; chat specials and lone newlines never drawn
    assert 0.07 < p_step < 0.14 and 0.008 < p_eos < 0.03
    assert float(probs[tok.pad_token_id]) < 1e-6 and float(probs[newline]) < 1e-6
    with pytest.raises(ValueError, match="step_tokens"):
        lib.build_shape_world(tmp_path / "bad", "tiny", step_tokens=50, solution_tokens=20)
