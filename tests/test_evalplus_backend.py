"""PRMGuidedDecoder in-process: settings, prompts, stop strings, per-sample seeds, traces,
and the real HF policy + PRM path (the stock console script runs in test_evalplus_stock.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalplus.provider.utility import EOS, extra_eos_for_direct_completion, make_raw_chat_prompt
from tiny import build_causal_lm, build_value_head_prm

from prm_plugin.integrations.evalplus import DEFAULT_MAX_TOKENS, PRMGuidedDecoder
from prm_plugin.search import PrefixProposals, Proposal

FIXTURES = Path(__file__).parent / "fixtures" / "evalplus"
INSTRUCTION = "Please provide a self-contained Python script that solves the following problem in a markdown code block:"
RESPONSE = "Below is a Python script with a self-contained function that solves the problem and passes corresponding tests:"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evalplus_models")
    return build_causal_lm(root / "policy"), build_value_head_prm(root / "prm")


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    """Writes an answers file and returns a model_args builder for the scripted policy + marker PRM."""
    monkeypatch.syspath_prepend(str(FIXTURES))

    def make(answers: dict[str, list[str]], extra: str = "") -> str:
        path = tmp_path / "answers.json"
        path.write_text(json.dumps(answers))
        args = f"policy=scripted:ScriptedPolicy,policy.answers={path},prm=scripted:MarkerPRM,strategy=bon,n=2"
        return args + ("," + extra if extra else "")

    return make


class SeedPolicy:
    """Answers ``    return <seed>`` and records (seed, temperature) per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int | None, float]] = []

    def propose(self, prefixes, *, n, stop, final_stop=(), max_tokens, temperature, top_p=1.0, seed=None):
        self.calls.append((seed, temperature))
        return [PrefixProposals(tuple(Proposal(f"    return {seed}\n", 3, "eos") for _ in range(n)), 5)
                for _ in prefixes]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_settings_errors_name_the_problem(scripted, tmp_path):
    with pytest.raises(ValueError, match="EvalPlus runs do not use model_args domain, question_field"):
        PRMGuidedDecoder(scripted({"x": ["y"]}, "question_field=q,domain=math"), dataset="humaneval")
    with pytest.raises(ValueError, match="Unknown model_args key.*bogus"):
        PRMGuidedDecoder(scripted({"x": ["y"]}, "bogus=1"), dataset="humaneval")
    with pytest.raises(ValueError, match="expected key=value pairs"):
        PRMGuidedDecoder("pretrained=x,oops", dataset="humaneval")
    with pytest.raises(ValueError, match="Cannot import 'no_such_module_xyz'"):
        PRMGuidedDecoder("policy=no_such_module_xyz:Policy,strategy=greedy", dataset="humaneval")
    with pytest.raises(ValueError, match="255"):
        PRMGuidedDecoder("pretrained=/" + "a" * 300, dataset="humaneval")


def test_direct_completion_prompt_stops_tabs_and_the_search_choice(scripted):
    answers = {"def f(": ["    # unverified\n    return 0\n", "\tif True:\n\t\treturn 1\n\ndef helper():\n    pass\n"]}
    decoder = PRMGuidedDecoder(scripted(answers), dataset="humaneval")
    prompt = "def f():\n    \"\"\"Return one.\"\"\"\n"
    assert decoder.is_direct_completion()  # the scripted policy has no tokenizer
    assert decoder.policy_prompt(prompt) == prompt
    assert decoder.eos == EOS + extra_eos_for_direct_completion("humaneval")
    problem = decoder.problem(prompt, {}, 0)
    assert (problem.question, problem.domain, problem.max_tokens) == (prompt.strip(), "code", DEFAULT_MAX_TOKENS)
    # bon keeps the unmarked candidate; its "\ndef helper" tail is EvalPlus's stop string
    assert decoder.codegen(prompt, do_sample=False, num_samples=1) == ["    if True:\n        return 1\n"]


def test_each_final_sample_is_a_search_with_its_own_seed_and_resume_keeps_the_index(
        monkeypatch, tmp_path):
    import evalplus.data.humaneval as humaneval

    monkeypatch.setattr(humaneval, "HUMANEVAL_OVERRIDE_PATH", str(FIXTURES / "HumanEvalPlus.jsonl"))
    task = json.loads((FIXTURES / "HumanEvalPlus.jsonl").read_text().splitlines()[1])
    prompt = task["prompt"].strip() + "\n"
    policy = SeedPolicy()
    decoder = PRMGuidedDecoder("strategy=greedy", dataset="humaneval", batch_size=3, policy=policy)
    target = tmp_path / "humaneval" / "run.jsonl"
    decoder.begin_run(target_path=str(target), n_samples=3, dataset="humaneval")
    first = decoder.codegen(prompt, do_sample=True, num_samples=3)
    seeds = [s for s, _ in policy.calls]
    assert len(set(seeds)) == 3 and first == [f"    return {s}\n" for s in seeds]
    # EvalPlus resuming with 2 of 3 solutions on disk asks for 1 more: sample index 2
    resumed = PRMGuidedDecoder("strategy=greedy", dataset="humaneval", batch_size=3, policy=SeedPolicy())
    resumed.begin_run(target_path=str(target), n_samples=3, dataset="humaneval")
    assert resumed.codegen(prompt, do_sample=True, num_samples=1) == [first[2]]
    resumed.end_run()
    traces = [json.loads(line) for line in (tmp_path / "humaneval" / "run.prm_traces.jsonl").read_text().splitlines()]
    assert [(t["task_id"], t["sample"]) for t in traces] == [(task["task_id"], i) for i in (0, 1, 2, 2)]
    assert traces[0]["solution"] == first[0] and traces[0]["strategy"] == "greedy"
    run = json.loads((tmp_path / "humaneval" / "run.prm_run.json").read_text())
    assert run["config"]["strategy"] == "greedy" and run["cost_summary"]["humaneval"]["problems"] == 1


@pytest.mark.parametrize(("model_args", "evalplus_temperature", "expected"), [
    ("strategy=majority,n=1", 0.7, 0.7),       # EvalPlus's --temperature drives the sampling
    ("strategy=majority,n=1,temperature=0.5", 0.7, 0.5),  # unless --model sets it
    ("strategy=majority,n=1", 0.0, 0.8),       # EvalPlus's 0 (greedy) keeps the strategy's default
])
def test_sampling_temperature(model_args, evalplus_temperature, expected):
    policy = SeedPolicy()
    decoder = PRMGuidedDecoder(model_args, dataset="mbpp", temperature=evalplus_temperature, policy=policy)
    decoder.codegen("def g():\n", num_samples=1)
    assert [t for _, t in policy.calls] == [expected]


def test_chat_prompting_with_the_real_hf_policy_and_prm(tiny_models, tmp_path):
    policy_path, prm_path = tiny_models
    model = f"pretrained={policy_path},prm={prm_path},strategy=bon,n=2,max_gen_toks=8,dtype=float32,device=cpu"
    decoder = PRMGuidedDecoder(model, dataset="mbpp", instruction_prefix=INSTRUCTION, response_prefix=RESPONSE)
    prompt = '"""\nWrite a function that returns the perimeter of a square.\n"""\n'
    assert not decoder.is_direct_completion()  # the tiny tokenizer has a chat template
    chat = decoder.policy_prompt(prompt)
    assert chat == make_raw_chat_prompt(prompt, INSTRUCTION, RESPONSE, decoder.tokenizer)
    assert chat.endswith("```python\n") and INSTRUCTION in chat and RESPONSE in chat
    assert decoder.eos == EOS + ["\n```\n"]
    (solution,) = decoder.codegen(prompt, do_sample=False, num_samples=1)
    assert not any(stop in solution for stop in decoder.eos)
    (costs,) = decoder.session.costs.summary().values()
    assert costs["mean_prm_tokens"] > 0 and costs["mean_policy_generated_tokens"] > 0
    base = PRMGuidedDecoder(model, dataset="mbpp", force_base_prompt=True, policy=decoder.session.backends.policy,
                            prm=decoder.session.backends.prm)
    assert base.is_direct_completion() and base.policy_prompt(prompt) == prompt
    assert base.eos == EOS + extra_eos_for_direct_completion("mbpp")


def test_settings_from_a_yaml_file(scripted, tmp_path):
    args = dict(item.split("=", 1) for item in scripted({"def f(": ["    return 1\n"]}).split(","))
    path = tmp_path / "run.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in args.items()))
    decoder = PRMGuidedDecoder(str(path), dataset="humaneval")
    assert decoder.session.config["strategy"] == "bon" and decoder.session.budget.n == 2
    assert decoder.codegen("def f():\n", num_samples=1) == ["    return 1\n"]
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="expected a mapping of prm_guided settings"):
        PRMGuidedDecoder(str(tmp_path / "bad.yaml"), dataset="humaneval")


def test_resuming_samples_of_another_configuration_is_refused(monkeypatch, tmp_path):
    import evalplus.data.mbpp as mbpp

    monkeypatch.setattr(mbpp, "MBPP_OVERRIDE_PATH", str(FIXTURES / "MbppPlus.jsonl"))
    target = tmp_path / "humaneval" / "run.jsonl"
    first = PRMGuidedDecoder("strategy=greedy,n=1", dataset="mbpp", policy=SeedPolicy())
    first.begin_run(target_path=str(target), n_samples=1, dataset="mbpp")
    target.write_text('{"task_id": "Mbpp/3", "solution": "x"}\n')  # EvalPlus wrote a sample
    same = PRMGuidedDecoder("strategy=greedy,n=1", dataset="mbpp", policy=SeedPolicy())
    same.begin_run(target_path=str(target), n_samples=1, dataset="mbpp")  # same settings: resumes
    other = PRMGuidedDecoder("strategy=greedy,n=1,max_step_tokens=64", dataset="mbpp", policy=SeedPolicy())
    with pytest.raises(ValueError, match="samples of another prm_guided configuration"):
        other.begin_run(target_path=str(target), n_samples=1, dataset="mbpp")


def test_majority_votes_by_behaviour_on_the_task_doctests(scripted, monkeypatch, tmp_path):
    import evalplus.data.humaneval as humaneval

    monkeypatch.setattr(humaneval, "HUMANEVAL_OVERRIDE_PATH", str(FIXTURES / "HumanEvalPlus.jsonl"))
    task = json.loads((FIXTURES / "HumanEvalPlus.jsonl").read_text().splitlines()[2])  # greatest_common_divisor
    answers = {"def greatest_common_divisor(": [
        "    return min(a, b)\n",  # differs from the others on the doctest (25, 15)
        "    import math\n    return math.gcd(a, b)\n",
        "    while b:\n        a, b = b, a % b\n    return a\n",
    ]}
    args = scripted(answers).replace("prm=scripted:MarkerPRM,strategy=bon,n=2", "strategy=majority,n=3")
    decoder = PRMGuidedDecoder(args, dataset="humaneval")
    decoder.begin_run(target_path=str(tmp_path / "run.jsonl"), n_samples=1, dataset="humaneval")
    problem = decoder.problem(task["prompt"], decoder._run.task(task["prompt"]), 0)
    assert problem.doc is not None and problem.doc["entry_point"] == "greatest_common_divisor"
    (solution,) = decoder.codegen(task["prompt"].strip() + "\n", do_sample=False, num_samples=1)
    assert solution in answers["def greatest_common_divisor("][1:]


def test_a_task_whose_search_fails_gets_an_empty_solution_and_the_run_goes_on(scripted, tmp_path, caplog):
    """The scripted policy has no answer for the second task (KeyError inside propose)."""
    decoder = PRMGuidedDecoder(scripted({"def f(": ["    return 1\n"]}), dataset="humaneval")
    decoder.begin_run(target_path=str(tmp_path / "samples.jsonl"), n_samples=1, dataset="no_such_dataset")
    assert decoder.codegen("def g():\n    pass\n", do_sample=False, num_samples=1) == [""]
    assert decoder.codegen("def f():\n    pass\n", do_sample=False, num_samples=1) == ["    return 1\n"]
    decoder.end_run()
    traces = [json.loads(x) for x in decoder._run.traces.read_text().splitlines()]
    assert [("error" in t, t["solution"]) for t in traces] == [(True, ""), (False, "    return 1\n")]
    assert traces[0]["error"]["type"] == "KeyError" and traces[0]["error"]["where"] == "policy"
    (costs,) = decoder.session.costs.summary().values()
    assert costs["failures"] == 1 and costs["problems"] == 2
    assert "1 problem(s) failed" in caplog.text
