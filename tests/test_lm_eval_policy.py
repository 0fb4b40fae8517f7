"""LMEvalPolicy: a Policy over an lm-eval model's generate_until (policy=<lm-eval name>)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lm_eval.api.model import LM

from prm_plugin.integrations.lm_eval_policy import LMEvalPolicy


class ScriptedLM(LM):
    """generate_until answers from ``script(context, request_number)``; tokens = chars."""

    def __init__(self, script: Callable[[str, int], str]) -> None:
        super().__init__()
        self.script = script
        self.requests: list[tuple[str, dict]] = []

    def tok_encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        return [ord(c) for c in text]

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for req in requests:
            context, kwargs = req.args
            self.requests.append((context, kwargs))
            text = self.script(context, len(self.requests) - 1)
            for stop in kwargs["until"]:  # what lm-eval models do with `until`
                text = text.split(stop)[0]
            out.append(text[: kwargs["max_gen_toks"]])
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


def test_step_final_and_length_are_told_apart_exactly():
    outputs = ["a=1\n\nb=2\n\nEND", "c=3", "x" * 50]
    lm = ScriptedLM(lambda ctx, i: outputs[i])
    policy = LMEvalPolicy(lm)
    groups = policy.propose(["Q:"] * 3, n=1, stop=["\n\n"], final_stop=["END"], max_tokens=20, temperature=0.7)
    (step,), (final,), (length,) = groups
    assert (step.text, step.stop_reason) == ("a=1", "step")
    assert (final.text, final.stop_reason) == ("c=3", "final")
    assert (length.stop_reason, length.n_tokens) == ("length", 20)
    # the step delimiter is never sent as a stop string (lm-eval would hide which stop hit)
    assert all(kwargs["until"] == ["END"] for _, kwargs in lm.requests)
    assert all(kwargs["max_gen_toks"] == 20 and kwargs["do_sample"] for _, kwargs in lm.requests)


def test_rest_of_a_sample_serves_the_next_step_once_and_costs_nothing_more():
    lm = ScriptedLM(lambda ctx, i: "a=1\n\nb=2\n\nanswer 3" if i == 0 else f"fresh{i}")
    policy = LMEvalPolicy(lm)
    (first,) = policy.propose(["Q:"], n=1, stop=["\n\n"], max_tokens=100, temperature=0.7)
    assert first[0].text == "a=1" and first[0].n_tokens == len("a=1\n\nb=2\n\nanswer 3")
    (second,) = policy.propose(["Q:a=1\n\n"], n=2, stop=["\n\n"], max_tokens=100, temperature=0.7)
    assert [p.text for p in second] == ["b=2", "fresh1"]
    assert [p.n_tokens for p in second] == [0, len("fresh1")]
    assert second.prefill_tokens == len("Q:a=1\n\n")  # one request sent for this prefix
    (third,) = policy.propose(["Q:a=1\n\nb=2\n\n"], n=1, stop=["\n\n"], max_tokens=100, temperature=0.7)
    assert (third[0].text, third[0].stop_reason, third[0].n_tokens) == ("answer 3", "final", 0)
    (again,) = policy.propose(["Q:a=1\n\n"], n=1, stop=["\n\n"], max_tokens=100, temperature=0.7)
    assert again[0].text == "fresh2"  # the pending continuation was used up


def test_pending_continuations_are_not_shared_across_sampling_settings():
    lm = ScriptedLM(lambda ctx, i: "a\n\nb" if i == 0 else "other")
    policy = LMEvalPolicy(lm)
    policy.propose(["Q:"], n=1, stop=["\n\n"], max_tokens=50, temperature=0.7)
    (greedy,) = policy.propose(["Q:a\n\n"], n=1, stop=["\n\n"], max_tokens=50, temperature=0.0)
    assert greedy[0].text == "other"


def test_greedy_sends_one_request_and_repeats_it_without_recounting():
    lm = ScriptedLM(lambda ctx, i: "same")
    policy = LMEvalPolicy(lm)
    (group,) = policy.propose(["Q:"], n=4, stop=[], max_tokens=50, temperature=0.0)
    assert len(lm.requests) == 1 and not lm.requests[0][1]["do_sample"]
    assert [p.text for p in group] == ["same"] * 4
    assert [p.n_tokens for p in group] == [4, 0, 0, 0]
    assert group.prefill_tokens == len("Q:")


def test_a_capped_remainder_without_a_step_is_not_served():
    lm = ScriptedLM(lambda ctx, i: "a\n\nbbbbbbbbbb" if i == 0 else "new")
    policy = LMEvalPolicy(lm)
    policy.propose(["Q:"], n=1, stop=["\n\n"], max_tokens=8, temperature=0.5)  # cut at 8 chars
    (group,) = policy.propose(["Q:a\n\n"], n=1, stop=["\n\n"], max_tokens=8, temperature=0.5)
    assert group[0].text == "new"


def test_model_without_tokenizer_is_refused_with_a_fix():
    class NoTok(ScriptedLM):
        tok_encode = None  # type: ignore[assignment]

    with pytest.raises(ValueError, match="cannot be measured"):
        LMEvalPolicy(NoTok(lambda c, i: ""))
