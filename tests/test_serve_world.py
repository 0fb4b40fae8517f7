"""The real path: ``prm-plugin serve`` (the console script) on the shipped world's policy and
PRM, driven by stock clients over loopback: the ``openai`` client, ``lm_eval --model
local-completions`` and ``local-chat-completions`` (accuracy against ``lm_eval --model
prm_guided`` with the same settings) and ``evalplus.evaluate --backend openai --base-url``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from serve_cli import BIN, cli_server

from prm_plugin import world

pytestmark = pytest.mark.skipif(not (world.paths()["prm"] / "config.json").exists(),
                                reason="the world has not been built")
KEY = "test-key"
SETTINGS = {"strategy": "bon", "n": "4", "temperature": "0.5"}
QUESTION = "Compute 63 - 2 - 9 + 7 from left to right."
FIXTURES = Path(__file__).parent / "fixtures"


def _flags() -> list[str]:
    p = world.paths()
    return ["--policy", str(p["policy"]), "--prm", str(p["prm"]), "--strategy", SETTINGS["strategy"],
            "--n", SETTINGS["n"], "--model-args", f"temperature={SETTINGS['temperature']}",
            "--served-model-name", "world"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with cli_server(_flags(), log, env={"PRM_PLUGIN_API_KEY": KEY}) as url:  # the key from the environment
        yield url


def _in_process(prompt: str, question: str, seed: int, n: int) -> str:
    from prm_plugin.integrations.search_session import SearchSession
    from prm_plugin.search import Problem

    p = world.paths()
    session = SearchSession.build({"pretrained": str(p["policy"]), "prm": str(p["prm"]), **SETTINGS, "n": n,
                                   "seed": seed}, harness="test")
    (result,) = session.search([Problem(prompt=prompt, question=question, max_tokens=256, domain="math")])
    return result.text


def test_openai_client_chat_gets_the_same_answer_as_an_in_process_search(server):
    import openai

    from prm_plugin._hf_compat import load_tokenizer
    from prm_plugin.world.tokenizer import chat_prompt

    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(model="world", messages=[{"role": "user", "content": QUESTION}], seed=7,
                                           extra_body={"search": {"n": 2}, "return_trace": True})
    (choice,) = reply.choices
    tokenizer = load_tokenizer(str(world.paths()["policy"]))
    expected = _in_process(chat_prompt(tokenizer, QUESTION), QUESTION, seed=7, n=2)
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert "\\boxed{" in expected and choice.finish_reason == "stop"
    ext = choice.model_extra["search"]
    assert len(ext["candidate_list"]) == 2 and ext["cost"]["prm_tokens"] > 0
    assert ext["score"] == max(c["score"] for c in ext["candidate_list"])
    assert reply.usage.completion_tokens == len(tokenizer(expected, add_special_tokens=False)["input_ids"])
    assert reply.usage.prompt_tokens == len(tokenizer(chat_prompt(tokenizer, QUESTION))["input_ids"])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="world", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.BadRequestError, match="fixed when the server starts"):
        client.completions.create(model="world", prompt=QUESTION, extra_body={"search": {"prm": "/tmp/other"}})


def test_token_id_prompts_and_the_prm_question_of_a_templated_prompt(server):
    from prm_plugin._hf_compat import load_tokenizer
    from prm_plugin.world.tokenizer import chat_prompt

    tokenizer = load_tokenizer(str(world.paths()["policy"]))
    prompt = chat_prompt(tokenizer, QUESTION)
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "world", "seed": 3, "search": {"n": 2}, "return_trace": True}
    as_text = httpx.post(server + "/v1/completions", json={**body, "prompt": prompt}, headers=headers, timeout=300)
    as_ids = httpx.post(server + "/v1/completions", json={**body, "prompt": tokenizer(prompt)["input_ids"]},
                        headers=headers, timeout=300)
    assert as_text.status_code == as_ids.status_code == 200, as_text.text + as_ids.text
    text = as_text.json()["choices"][0]["text"]
    assert as_ids.json()["choices"][0]["text"] == text
    # the PRM saw the user turn, not the template: the in-process search with question=QUESTION agrees
    assert text == _in_process(prompt, QUESTION, seed=3, n=2)
    bad = httpx.post(server + "/v1/completions", json={**body, "prompt": [len(tokenizer) + 5]}, headers=headers)
    assert bad.status_code == 400 and "outside the policy's vocabulary" in bad.json()["error"]["message"]


def _lm_eval(tmp: Path, model: str, model_args: str, env: dict[str, str], limit: int,
             batch_size: int = 8) -> dict[int, dict]:
    out = tmp / model
    cmd = [str(BIN / "lm_eval"), "--model", model, "--model_args", model_args, "--tasks", "arith_prm",
           "--include_path", subprocess.check_output([str(BIN / "prm-plugin"), "task-path"], text=True).strip(),
           "--apply_chat_template", "--limit", str(limit), "--batch_size", str(batch_size), "--output_path", str(out),
           "--log_samples"]
    done = subprocess.run(cmd, cwd=tmp, env={**os.environ, "TOKENIZERS_PARALLELISM": "false", **env},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (samples,) = out.rglob("samples_arith_prm_*.jsonl")
    return {s["doc_id"]: s for s in map(json.loads, samples.read_text().splitlines())}


@pytest.mark.slow
def test_stock_lm_eval_api_models_match_prm_guided(server, tmp_path):
    limit = 24
    # lm-eval loads the tokenizer with AutoTokenizer: the world's policy folder as it ships
    tok = world.paths()["policy"]
    served = _lm_eval(tmp_path, "local-completions",
                      f"model=world,base_url={server}/v1/completions,tokenizer={tok},tokenizer_backend=huggingface",
                      {"OPENAI_API_KEY": KEY}, limit)
    chat = _lm_eval(tmp_path, "local-chat-completions",
                    f"model=world,base_url={server}/v1/chat/completions,num_concurrent=8",
                    {"OPENAI_API_KEY": KEY}, limit, batch_size=1)  # chat requests go one per call, 8 at once
    p = world.paths()
    reference = _lm_eval(tmp_path, "prm_guided",
                         f"pretrained={p['policy']},prm={p['prm']},strategy=bon,n=4,temperature=0.5,seed=1234,"
                         "search_batch_size=8", {}, limit)
    acc_reference = sum(s["acc"] for s in reference.values()) / limit
    for name, run in (("local-completions", served), ("local-chat-completions", chat)):
        assert sorted(run) == sorted(reference) and len(run) == limit
        acc = sum(s["acc"] for s in run.values()) / limit
        same = sum(run[d]["resps"][0][0] == reference[d]["resps"][0][0] for d in run)
        print(f"\narith_prm, {limit} problems, bon n=4: {name} {acc:.3f}, prm_guided {acc_reference:.3f}, "
              f"identical answers {same}/{limit}")
        # lm-eval's API models send seed=1234, the search seed; a problem's samples do not
        # depend on its batch, so answers agree up to float noise between batch layouts
        assert same >= 0.9 * limit
        assert abs(acc - acc_reference) <= 0.1


@pytest.mark.slow
def test_stock_evalplus_openai_backend_against_the_server(tmp_path):
    answers = {
        "def has_close_elements(": ["```python\nfrom typing import List\n\n\ndef has_close_elements(numbers: "
                                    "List[float], threshold: float) -> bool:\n    s = sorted(numbers)\n"
                                    "    for i in range(len(s) - 1):\n        if s[i + 1] - s[i] <= threshold:\n"
                                    "            return True\n    return False\n```"],
        # best-of-2 must pick the unmarked (right) one: MarkerPRM scores "# unverified" steps low
        "def truncate_number(": ["```python\ndef truncate_number(number: float) -> float:\n"
                                 "    # unverified\n    return number\n```",
                                 "```python\ndef truncate_number(number: float) -> float:\n"
                                 "    return number % 1.0\n```"],
        "def greatest_common_divisor(": ["```python\ndef greatest_common_divisor(a: int, b: int) -> int:\n"
                                         "    return min(a, b)\n```"],
    }
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    p = world.paths()
    env = {"PYTHONPATH": os.pathsep.join([str(FIXTURES / "evalplus"), str(FIXTURES / "serve")])}
    # the world's PRM has 512 positions, too few for HumanEval prompts in its character tokens
    flags = ["--policy", str(p["policy"]), "--policy-backend", "chat_scripted:ChatScriptedPolicy",
             "--prm", "scripted:MarkerPRM", "--strategy", "bon", "--n", "2", "--served-model-name", "scripted",
             "--model-args", f"policy.answers={tmp_path / 'answers.json'},domain=code"]
    with cli_server(flags, tmp_path / "server.log", env=env) as url:
        run_env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OPENAI_API_KEY": "unused",
                   "HUMANEVAL_OVERRIDE_PATH": str(FIXTURES / "evalplus" / "HumanEvalPlus.jsonl")}
        done = subprocess.run([str(BIN / "evalplus.evaluate"), "--dataset", "humaneval", "--backend", "openai",
                               "--base-url", url + "/v1", "--model", "scripted", "--greedy", "--root",
                               str(tmp_path / "res"), "--parallel", "2"], cwd=tmp_path, env=run_env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        metrics = httpx.get(url + "/metrics").text
    (results,) = (tmp_path / "res" / "humaneval").glob("*_eval_results.json")
    statuses = {t: (r[0]["base_status"], r[0]["plus_status"]) for t, r in json.loads(results.read_text())["eval"].items()}
    assert statuses == {"HumanEval/0": ("pass", "fail"), "HumanEval/2": ("pass", "pass"),
                        "HumanEval/13": ("fail", "pass")}
    assert "prm_serve_problems_searched_total 3.0" in metrics  # one search per task, no retries
    assert 'prm_serve_requests_total{endpoint="/v1/chat/completions",status="200"} 3.0' in metrics
