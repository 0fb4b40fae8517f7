"""``VLLMPoolingPRM``'s layout and context rule against a fake pooling engine (the real
engine: tests/test_vllm_real.py). One token per character; the tag token closes each step;
the fake engine's score at a tag is a function of every id up to it, so a cut context shows."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from prm_plugin.prm.overflow import fit_query
from prm_plugin.prm.vllm_pooling import VLLMPoolingPRM
from prm_plugin.search import ContextOverflowError, PRMQuery

TAG = 7


class Segmenter:
    def question_segment(self, question: str) -> tuple[int, ...]:
        return tuple(ord(c) for c in "Q:" + question)

    def step_segment(self, step: str, index: int) -> tuple[int, ...]:
        return (*(ord(c) for c in step), TAG)


def fake_score(ids: list[int]) -> float:
    return (sum(i * (k + 1) for k, i in enumerate(ids)) % 101) / 101


class PoolingLLM:
    def __init__(self) -> None:
        self.sent: list[list[int]] = []

    def encode(self, prompts: list[Any], pooling_task: str, use_tqdm: bool) -> list[Any]:
        assert pooling_task == "token_classify"
        outs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            self.sent.append(ids)
            data = [[1 - fake_score(ids[: p + 1]), fake_score(ids[: p + 1])] for p, t in enumerate(ids) if t == TAG]
            outs.append(types.SimpleNamespace(outputs=types.SimpleNamespace(data=data), num_cached_tokens=0))
        return outs


@pytest.fixture(autouse=True)
def fake_vllm_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)


def prm(limit: int | None, on_overflow: str = "truncate") -> VLLMPoolingPRM:
    return VLLMPoolingPRM(PoolingLLM(), Segmenter(), step_separator="\n\n", tag_id=TAG, max_length=limit,
                          on_overflow=on_overflow)


def test_scores_sit_on_the_tags_that_close_steps() -> None:
    model = prm(None)
    q = PRMQuery("a\x07b", ("xy", "z\x07w"))  # the tag id also inside the question and a step
    (out,) = model.score([q])
    ids = [ord(c) for c in "Q:a\x07b"] + [ord("x"), ord("y"), TAG] + [ord("z"), TAG, ord("w"), TAG]
    assert model.llm.sent == [ids]
    ends = [len(ids) - 5, len(ids) - 1]
    assert out.scores == pytest.approx([fake_score(ids[: e + 1]) for e in ends])
    assert out.tokens == len(ids) and out.overflow is None


def test_truncate_cuts_the_question_then_the_oldest_steps_as_the_shared_rule() -> None:
    model = prm(20)
    q = PRMQuery("abcdefghijklmnop", ("step-one", "step-two", "step-three"))
    (out,) = model.score([q])
    seg = model.segmenter
    parts, cut = fit_query(q.question, [seg.step_segment(s, k) for k, s in enumerate(q.steps)], 20,
                           seg.question_segment, grain=max(1, 20 // 16))
    assert len(parts) > 1 and out.overflow == "truncated" and out.cut_tokens == cut > 0
    sent = [[t for s in part for t in s] for part in parts]
    assert model.llm.sent == sent and all(len(ids) <= 20 for ids in sent)
    expected = [fake_score(ids[: p + 1]) for ids in sent for p, t in enumerate(ids) if t == TAG]
    assert out.scores == pytest.approx(expected) and len(out.scores) == 3


def test_skip_leaves_the_query_unscored_and_error_says_how_to_fix() -> None:
    short, long = PRMQuery("a", ("b",)), PRMQuery("a" * 40, ("b",))
    skipped = prm(20, "skip").score([short, long])
    assert skipped[0].scores is not None and skipped[1].skipped and skipped[1].overflow == "skipped"
    with pytest.raises(ContextOverflowError, match="Query 1 takes 44 tokens.*on_overflow=truncate"):
        prm(20, "error").score([short, long])
    with pytest.raises(ValueError, match="on_overflow"):
        prm(20, "drop")


def test_a_query_without_steps_costs_nothing() -> None:
    model = prm(20)
    (out,) = model.score([PRMQuery("a" * 100, ())])
    assert out.scores == () and out.tokens == 0 and model.llm.sent == []
