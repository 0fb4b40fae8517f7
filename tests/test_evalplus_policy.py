"""policy=evalplus:<backend>: EvalPlus's own decoders as a whole-solution policy.

EvalPlus's real ``openai`` decoder runs against a stub chat server on 127.0.0.1 (fast,
no model), and its real ``hf`` decoder on the shipped world's policy through lm-eval's
evaluator. Step-level strategies are refused before anything loads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from lm_eval_fakes import ArithPRM
from served_stub import Stub, running

from prm_plugin import world
from prm_plugin._hf_compat import load_tokenizer
from prm_plugin.integrations.search_session import SearchSession
from prm_plugin.search import Budget, Problem

POLICY = str(world.paths()["policy"])
PRM = str(world.paths()["prm"])
STEP_LEVEL = ("beam", "mcts", "particle_filter", "dvts")


def _chat(answers: list[str]) -> Any:
    """A chat-completions responder: choice ``j`` of request ``r`` is ``answers[(r*n + j) % len]``."""
    count = [0]

    def respond(path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path.endswith("/chat/completions"), path
        n = int(body.get("n", 1))
        start, count[0] = count[0], count[0] + n
        choices = [{"index": j, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": answers[(start + j) % len(answers)]}}
                   for j in range(n)]
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": choices}

    return respond


def _session(stub: Stub, prm: Any = None, **args: Any) -> SearchSession:
    base = {"policy": "evalplus:openai", "pretrained": "stub-model", "base_url": f"{stub.url}/v1"}
    return SearchSession.build({**base, **{k: str(v) for k, v in args.items()}}, harness="test", prm=prm)


def _problem(question: str = "What is 3 + 4?") -> Problem:
    return Problem(prompt=question, question=question, stop=["\n\n\n"], max_tokens=40, domain="math")


ANSWERS = [" 3 + 4 = 7\n\nThe answer is \\boxed{7}.", " 3 + 4 = 8\n\nThe answer is \\boxed{8}.",
           " 3 + 4 = 7\n\nThe answer is \\boxed{7}.\n\n\nQ: ignored after the final stop"]


def test_majority_over_evalplus_openai_decoder_votes_and_counts_tokens():
    tok = load_tokenizer(POLICY)
    with running(Stub(_chat(ANSWERS))) as stub:
        session = _session(stub, strategy="majority", n=5, temperature=0.6, tokenizer=POLICY,
                           **{"policy.batch_size": 2})
        (result,) = session.search([_problem()])
    chats = [body for path, body in stub.requests if path.endswith("/chat/completions")]
    # n=5 in codegen calls of at most batch_size=2 solutions, at the strategy's temperature and cap
    assert [b["n"] for b in chats] == [2, 2, 1]
    assert {b["temperature"] for b in chats} == {0.6} and {b["max_tokens"] for b in chats} == {40}
    assert "What is 3 + 4?" in chats[0]["messages"][-1]["content"]  # EvalPlus's instruction prompt around it
    texts = [c.text("\n\n") for c in result.candidates]
    assert texts[2] == ANSWERS[2].split("\n\n\n")[0]  # cut at the problem's final stop
    # answers 7, 8, 7, 7, 8 (the stub cycles through ANSWERS)
    assert [(g["answer"], g["votes"]) for g in result.trace["groups"]] == [("7", 3), ("8", 2)]
    assert "\\boxed{7}" in result.text
    # token counts: the local tokenizer's count of every returned (cut) text; the prompt once per call
    assert result.cost.policy_generated_tokens == sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)
    assert result.cost.policy_prefill_tokens == 3 * len(tok.encode("What is 3 + 4?", add_special_tokens=False))
    assert result.cost.policy_calls == 1 and "policy_tokens" not in session.config


def test_bon_with_a_prm_picks_the_best_scored_solution():
    with running(Stub(_chat([ANSWERS[1], ANSWERS[0]]))) as stub:
        session = _session(stub, strategy="bon", n=2, temperature=0.8, prm=ArithPRM())
        (result,) = session.search([_problem()])
    assert result.chosen == 1 and "\\boxed{7}" in result.text
    assert [c.score for c in result.candidates][1] > [c.score for c in result.candidates][0]


def test_greedy_asks_once_and_repeats_and_unknown_counts_are_reported_not_invented():
    with running(Stub(_chat(ANSWERS))) as stub:
        session = _session(stub, strategy="majority", n=3, temperature=0)
        (result,) = session.search([_problem()])
        with pytest.raises(ValueError, match="max_policy_tokens needs the policy's token counts"):
            _session(stub, strategy="majority", n=3, max_policy_tokens=100)
    chats = [body for path, body in stub.requests if path.endswith("/chat/completions")]
    assert len(chats) == 1 and chats[0]["n"] == 1 and chats[0]["temperature"] == 0
    assert len(result.candidates) == 3 and len({c.text("\n\n") for c in result.candidates}) == 1
    # no tokenizer: EvalPlus returns text only, so the counts are recorded as unknown
    assert result.cost.policy_generated_tokens == 0 and session.config["policy_tokens"] == "unknown"


def test_auto_chooses_among_whole_solution_entries_and_refuses_a_table_without_any(tmp_path: Path):
    from prm_plugin.calibration import Entry, table_json

    with running(Stub(_chat(ANSWERS))) as stub:
        session = _session(stub, strategy="auto", n=16, prm=ArithPRM())
        (result,) = session.search([_problem()])
        record = result.trace["auto"]
        # the shipped table's best entry at n <= 16 is step-level (dvts); a whole-solution one runs
        assert record["strategy"] in ("bon", "majority", "greedy") and record["whole_solutions_only"] is True
        steps_only = tmp_path / "steps_only.json"
        steps_only.write_text(json.dumps(table_json(
            [Entry("beam", {"beam_width": 2}, 4, 0.9, 100.0, 0.1)], {"tasks": ["t"]})))
        with pytest.raises(ValueError, match="Strategy 'auto'.*returns whole solutions only"):
            _session(stub, strategy="auto", n=4, table=str(steps_only), prm=ArithPRM())


@pytest.mark.parametrize("strategy", STEP_LEVEL)
def test_step_level_strategies_are_refused_before_anything_loads(strategy):
    args = {"policy": "evalplus:hf", "pretrained": "/nonexistent/model", "strategy": strategy}
    with pytest.raises(ValueError) as err:
        SearchSession.build(args, harness="test", prm=ArithPRM())
    message = str(err.value)
    assert f"Strategy {strategy!r}" in message and "evalplus:hf returns whole solutions only" in message
    assert "bon, greedy, majority" in message and "majority weighted=true" in message
    assert "policy=hf, vllm, openai" in message


def test_step_level_strategy_refuses_the_policy_object_in_python_use():
    from prm_plugin.plugins import get_strategy
    from prm_plugin.policy.evalplus import EvalPlusPolicy

    with running(Stub(_chat(ANSWERS))) as stub:
        policy = EvalPlusPolicy.from_settings("openai", "stub-model", base_url=f"{stub.url}/v1")
        beam: Any = get_strategy("beam")()
        with pytest.raises(ValueError, match=r"evalplus:openai \(stub-model\) returns whole solutions only"):
            beam.search([_problem()], policy, ArithPRM(), Budget(n=4))
        with pytest.raises(ValueError, match="cannot stop at step boundaries"):
            policy.propose(["x"], n=1, stop=["\n\n"], max_tokens=8, temperature=0.5)
        with pytest.raises(ValueError, match="EvalPlus's own top_p"):
            policy.propose(["x"], n=1, stop=[], max_tokens=8, temperature=0.5, top_p=0.5)
    assert not stub.requests  # nothing reached the server


@pytest.mark.parametrize(("policy", "expected"), [
    ("evalplus:ollama", r"Unknown EvalPlus backend 'ollama'.*base_url=http://localhost:11434/v1.*"
                        r"EvalPlus's backends: vllm, hf, openai, anthropic, google"),
    ("evalplus:gpt", r"Unknown EvalPlus backend 'gpt'.*backends: vllm, hf, openai, anthropic, google"),
    ("evalplus:", r"needs a backend"),
    ("evalplus:prm_guided", r"would wrap itself"),
])
def test_bad_backend_names_are_refused(policy, expected):
    with pytest.raises(ValueError, match=expected):
        SearchSession.build({"policy": policy, "pretrained": "m", "strategy": "majority"}, harness="test")


def test_unknown_backend_setting_lists_make_models_arguments():
    with pytest.raises(ValueError, match=r"takes no temprature .*takes: .*base_url.*force_base_prompt"):
        SearchSession.build({"policy": "evalplus:openai", "pretrained": "m", "base_url": "http://127.0.0.1:9/v1",
                             "strategy": "majority", "policy.temprature": "0.2"}, harness="test")


def test_evalplus_backend_hands_the_task_prompt_to_an_evalplus_chat_decoder_once():
    from prm_plugin.integrations.evalplus import PRMGuidedDecoder

    prompt = 'def add(a, b):\n    """Add two numbers."""\n'
    code = "```python\ndef add(a, b):\n    return a + b\n```\nThat adds them."
    with running(Stub(_chat([code]))) as stub:
        decoder = PRMGuidedDecoder(model="policy=evalplus:openai,pretrained=stub-model,strategy=majority,n=2",
                                   dataset="humaneval", backend="prm_guided", base_url=f"{stub.url}/v1")
        (out,) = decoder.codegen(prompt, do_sample=False, num_samples=1)
    (chat,) = [body for path, body in stub.requests if path.endswith("/chat/completions")]
    message = chat["messages"][-1]["content"]
    # EvalPlus's own instruction prompt around the raw task prompt (not a chat prompt inside one)
    assert message.startswith("Please provide a self-contained Python script") and message.count("def add") == 1
    assert not decoder.is_direct_completion() and chat["n"] == 2
    assert out == "```python\ndef add(a, b):\n    return a + b"  # cut at EvalPlus's chat stop "\n```\n"


# -- EvalPlus's hf decoder on the world's policy, through lm-eval's evaluator ----------------
@pytest.mark.skipif(not (world.paths()["prm"] / "config.json").exists(), reason="the world has not been built")
def test_lm_eval_runs_bon_and_majority_with_evalplus_hf_on_the_world(tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from prm_plugin import task_configs

    tasks = TaskManager(include_path=str(task_configs.path()), include_defaults=False)
    common = (f"policy=evalplus:hf,pretrained={POLICY},policy.force_base_prompt=true,dtype=float32,"
              f"max_gen_toks=64,temperature=0.7,search_batch_size=2")
    runs = {"bon": f"{common},strategy=bon,n=2,prm={PRM},device=cpu",
            "majority": f"{common},strategy=majority,n=3"}
    tok = load_tokenizer(POLICY)
    for name, model_args in runs.items():
        out = lm_eval.simple_evaluate(model="prm_guided", model_args=f"{model_args},trace_path={tmp_path / name}",
                                      tasks=["arith_prm"], task_manager=tasks, limit=2, apply_chat_template=True,
                                      bootstrap_iters=0)
        assert out["config"]["prm_guided"]["policy"] == "evalplus:hf"
        assert "acc,none" in out["results"]["arith_prm"]
        traces = [json.loads(x) for x in (tmp_path / name / "arith_prm.traces.jsonl").read_text().splitlines()]
        assert len(traces) == 2
        for t in traces:
            cands = t["candidates"]
            assert len(cands) == (2 if name == "bon" else 3) and t["strategy"] == name
            assert all(re.search(r"\d", c["steps"][0]) for c in cands)  # the world's arithmetic, not garbage
            texts = ["\n\n".join(c["steps"]) for c in cands]
            # counted with the decoder's tokenizer; steps re-joined may differ from the raw
            # text by the blank lines split off, so allow a few tokens either way
            counted = sum(len(tok.encode(x, add_special_tokens=False)) for x in texts)
            assert abs(t["cost"]["policy_generated_tokens"] - counted) <= 2 * len(cands)
            assert t["cost"]["policy_prefill_tokens"] > 0
            if name == "bon":
                scores = [c["score"] for c in cands]
                assert all(s is not None for s in scores) and t["chosen"] == scores.index(max(scores))
                assert t["cost"]["prm_tokens"] > 0
            else:
                assert t["cost"]["prm_tokens"] == 0 and "groups" in t["trace"]


def test_lm_eval_refuses_a_chat_template_the_evalplus_decoder_would_apply_again():
    from prm_plugin.integrations.lm_eval_backends import Backends

    class ChatDecoderPolicy:
        formats_prompt = True

    backends = Backends(policy=ChatDecoderPolicy(), prm=None, policy_name="evalplus:openai", prm_name=None,
                        settings=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="applied twice.*force_base_prompt=true"):
        backends.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)


def test_the_readme_names_the_command():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "policy=evalplus:openai" in readme and "Any EvalPlus model as the policy" in readme
