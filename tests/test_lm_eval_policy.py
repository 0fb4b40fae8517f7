"""LMEvalPolicy: a Policy over an lm-eval model's generate_until (policy=<lm-eval name>)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

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


# -- which strategies a wrapped lm-eval model supports ------------------------------------------
class ScriptedChatCompletion(ScriptedLM):
    """Named like lm-eval's chat-completions models (LocalChatCompletion, AnthropicChat, ...)."""


def _arith_problem() -> Any:
    from prm_plugin.search import Problem

    return Problem(prompt="Q: What is 3 + 4?\nA:", question="What is 3 + 4?", max_tokens=60, domain="math")


def test_a_chat_completions_model_is_whole_solutions_only_and_step_level_strategies_refuse_it():
    from lm_eval_fakes import ArithPRM

    from prm_plugin.plugins import get_strategy
    from prm_plugin.search import Budget

    lm = ScriptedChatCompletion(lambda ctx, i: " 3 + 4 = 7\n\nThe answer is \\boxed{7}.")
    policy = LMEvalPolicy(lm)
    assert policy.whole_solutions and not LMEvalPolicy(ScriptedLM(lambda c, i: "")).whole_solutions
    assert not LMEvalPolicy(lm, whole_solutions=False).whole_solutions  # policy.whole_solutions=false
    for name in ("beam", "mcts", "particle_filter", "dvts"):
        strategy: Any = get_strategy(name)()
        with pytest.raises(ValueError, match=r"lm-eval ScriptedChatCompletion returns whole solutions only"):
            strategy.search([_arith_problem()], policy, ArithPRM(), Budget(n=4))
    assert not lm.requests  # refused before any request
    (result,) = get_strategy("majority")(weighted=True).search([_arith_problem()], policy, ArithPRM(), Budget(n=2))
    assert "\\boxed{7}" in result.text and len(lm.requests) == 2


def test_lm_evals_real_hf_model_runs_step_level_beam_search_on_the_world():
    from lm_eval.models.huggingface import HFLM

    from prm_plugin import world
    from prm_plugin._hf_compat import load_tokenizer
    from prm_plugin.plugins import get_strategy
    from prm_plugin.prm.load import load_prm
    from prm_plugin.search import Budget, Problem

    paths = world.paths()
    if not (paths["prm"] / "config.json").exists():
        pytest.skip("the world has not been built")
    tok = load_tokenizer(str(paths["policy"]))
    lm = HFLM(pretrained=str(paths["policy"]), tokenizer=tok, device="cpu", batch_size=4)
    policy = LMEvalPolicy(lm)
    assert not policy.whole_solutions
    question = "Compute 35 - 3 - 4 from left to right."
    prompt = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                     add_generation_prompt=True)
    problem = Problem(prompt=prompt, question=question, max_tokens=48, domain="math")
    beam: Any = get_strategy("beam")(beam_width=2, max_steps=4, max_step_tokens=16, temperature=0.7)
    (result,) = beam.search([problem], policy, load_prm(str(paths["prm"]), device="cpu"), Budget(n=2))
    steps = [s for c in result.candidates for s in c.steps]
    # the search went step by step: candidates have several steps, each one scored by the PRM
    assert any(len(c.steps) >= 2 for c in result.candidates)
    assert all(c.step_scores is not None and len(c.step_scores) == len(c.steps) for c in result.candidates)
    assert any(re.search(r"\d+ - \d+ = \d+", s) for s in steps)
    assert result.cost.policy_calls >= 2 and result.cost.policy_generated_tokens > 0
