"""The world's checkpoints are ordinary Hugging Face checkpoints: every stock loader reads
their tokenizer the same way, and stock ``lm_eval --model hf`` scores the world's task as
the project's own greedy search does."""

from __future__ import annotations

import json

import pytest

from prm_plugin import world
from prm_plugin.world.tokenizer import build_tokenizer, chat_prompt

pytestmark = pytest.mark.skipif(not (world.paths()["prm"] / "config.json").exists(),
                                reason="the world has not been built")


def _texts() -> list[str]:
    tok = build_tokenizer()
    rows = [json.loads(line) for name in ("arith_test", "codelike_test")
            for line in world.paths()[name].read_text().splitlines()[:20]]
    return [chat_prompt(tok, r["question"]) + "\n\n".join(r["steps"]) + "<|im_end|>" for r in rows] + [
        "unicode é ü → ∑ and\ttabs\r\nand  double  spaces", "",
    ]


@pytest.mark.parametrize("part", ["policy", "prm"])
def test_every_stock_loader_reads_the_shipped_tokenizer_alike(part: str) -> None:
    import tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from prm_plugin._hf_compat import load_tokenizer

    path = str(world.paths()[part])
    built = build_tokenizer()
    auto = AutoTokenizer.from_pretrained(path)
    assert type(auto).__name__ == "Qwen2Tokenizer" and auto.get_vocab() == built.get_vocab()
    fast = PreTrainedTokenizerFast.from_pretrained(path)
    raw = tokenizers.Tokenizer.from_file(f"{path}/tokenizer.json")
    ours = load_tokenizer(path)
    for text in _texts():
        ids = built(text)["input_ids"]
        assert auto(text)["input_ids"] == fast(text)["input_ids"] == ours(text)["input_ids"] == ids, text
        assert raw.encode(text).ids == ids and auto.decode(ids) == text
    assert auto.eos_token == "<|im_end|>" and auto.pad_token == "<|endoftext|>"


def test_lm_eval_hf_loads_the_policy_with_its_own_tokenizer() -> None:
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(world.paths()["policy"]), batch_size=1, device="cpu")
    for text in _texts():
        assert lm.tok_encode(text, add_special_tokens=False) == build_tokenizer()(text)["input_ids"]


def test_world_tasks_recommend_the_world_sampling_temperature() -> None:
    from prm_plugin.task_configs.arith_prm import utils
    from prm_plugin.world.evaluate import SAMPLE_TEMPERATURE

    docs = utils.process_docs(utils.load_dataset()["test"].select(range(3)))
    assert {d["prm_temperature"] for d in docs} == {SAMPLE_TEMPERATURE}


def test_stock_lm_eval_hf_greedy_answers_as_prm_guided_greedy(tmp_path) -> None:
    """The issue's check on a slice: stock ``--model hf`` and ``prm_guided`` with
    ``strategy=greedy`` write the same answers on the world's task (100 of 100 on the
    first 100 problems, 67% each, measured with the CLIs; README)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    import prm_plugin.task_configs as task_configs

    policy = str(world.paths()["policy"])
    manager = TaskManager(include_path=task_configs.path(), include_defaults=False)
    kw = dict(tasks=["arith_prm"], limit=12, task_manager=manager, apply_chat_template=True, bootstrap_iters=0,
              log_samples=True, device="cpu")
    hf = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={policy},dtype=float32", batch_size=12, **kw)
    ours = lm_eval.simple_evaluate(model="prm_guided", model_args=f"pretrained={policy},strategy=greedy,"
                                   f"dtype=float32,search_batch_size=12", **kw)
    assert hf is not None and ours is not None

    def answers(out: dict) -> list[str]:
        return [s["filtered_resps"][0] for s in sorted(out["samples"]["arith_prm"], key=lambda s: s["doc_id"])]

    assert answers(hf) == answers(ours)
    assert hf["results"]["arith_prm"]["acc,none"] == ours["results"]["arith_prm"]["acc,none"]
