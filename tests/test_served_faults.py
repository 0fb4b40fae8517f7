"""Served models (``policy=openai``, ``prm=http://...``) against a stub server on 127.0.0.1:
the completions mapping and its accounting, retries on timeouts / 429 / 5xx / dropped
connections, clear errors naming the server, round-robin over replicas, and the served
PRM's requests. The real vLLM server: tests/test_served_real.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from served_stub import Stub, running

from prm_plugin.policy.openai import OpenAIPolicy
from prm_plugin.prm.served import ServedPooling, _spread_cached
from prm_plugin.prm.vllm_pooling import Pooled, VLLMPoolingPRM
from prm_plugin.search import PRMQuery
from prm_plugin.served import JSONClient, ServerError

TAG = 7


class CharTokenizer:
    """One token per character; no special tokens."""

    bos_token_id = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


def completion(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Sample text ``"<seed mod 1000>"``; the prompt's last char picks how it ends:
    ``s`` a step stop, ``f`` the final stop, ``e`` EOS, ``l`` the token cap."""
    prompt = body["prompt"]
    last = prompt[-1] if isinstance(prompt, str) else chr(prompt[-1])
    ending = {"s": ("stop", "\n\n"), "f": ("stop", "<end>"), "e": ("stop", None), "l": ("length", None)}[last]
    text = f"t{body['seed'] % 1000}"
    return {"choices": [{"index": 0, "text": text, "finish_reason": ending[0], "stop_reason": ending[1]}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": 4, "total_tokens": len(prompt) + 4,
                      "prompt_tokens_details": {"cached_tokens": 2}}}


def policy(url: str, **kw: Any) -> OpenAIPolicy:
    client = JSONClient(url, timeout=kw.pop("timeout", 5.0), backoff=0.01, max_retries=kw.pop("max_retries", 3),
                        concurrency=4, name="policy server (stub-model)")
    kw.setdefault("max_model_len", 10_000)  # None: read from /models
    return OpenAIPolicy(client, "stub-model", CharTokenizer(), **kw)


KW: dict[str, Any] = dict(stop=["\n\n"], final_stop=["<end>"], max_tokens=8, temperature=1.0, seed=3)


def test_completions_map_onto_the_policy_contract() -> None:
    with running(Stub(completion)) as stub:
        out = policy(stub.url + "/v1").propose(["a s", "b f", "c e", "d l", "a s"], n=2, **KW)
    assert [[p.stop_reason for p in g] for g in out] == [["step"] * 2, ["final"] * 2, ["eos"] * 2,
                                                       ["length"] * 2, ["step"] * 2]
    assert all(p.n_tokens == 4 for g in out for p in g)  # usage.completion_tokens
    assert [g.prefill_tokens for g in out] == [2 * (3 - 2)] * 5  # prompt_tokens - cached, per request
    bodies = [b for path, b in stub.requests if path == "/v1/completions"]
    assert len(bodies) == 10 and all(b["n"] == 1 and b["stop"] == ["\n\n", "<end>"] for b in bodies)
    assert all(b["model"] == "stub-model" and b["skip_special_tokens"] is False for b in bodies)
    seeds = {}
    for b in bodies:
        seeds.setdefault(b["prompt"], []).append(b["seed"])
    first = sorted(seeds["a s"])  # sample j of the k-th occurrence: base + k * n + j, as VLLMPolicy seeds
    assert first == list(range(first[0], first[0] + 4)) and seeds["b f"] != seeds["a s"][:2]


def test_the_same_seed_gives_the_same_samples_and_greedy_sends_one_request() -> None:
    with running(Stub(completion)) as stub:
        pol = policy(stub.url + "/v1")
        one = pol.propose(["x s", "y s"], n=3, **KW)
        two = pol.propose(["y s", "x s"], n=3, **KW)
        assert [p.text for p in one[0]] == [p.text for p in two[1]]
        stub.requests.clear()
        (greedy,) = pol.propose(["x s"], n=4, **{**KW, "temperature": 0.0})
    assert len(stub.requests) == 1 and len(greedy) == 4 and len({p.text for p in greedy}) == 1
    assert greedy.prefill_tokens == 1


def test_429_then_success_is_retried() -> None:
    with running(Stub(completion, faults=["429", "503"])) as stub:
        pol = policy(stub.url + "/v1")
        (group,) = pol.propose(["a s"], n=1, **KW)
    assert group[0].stop_reason == "step" and pol.client.retries == 2 and len(stub.requests) == 3


def test_a_slow_answer_times_out_and_is_retried() -> None:
    with running(Stub(completion, faults=["slow:1.5"])) as stub:
        pol = policy(stub.url + "/v1", timeout=0.5)
        (group,) = pol.propose(["a s"], n=1, **KW)
    assert group[0].text.startswith("t") and pol.client.retries == 1 and len(stub.requests) == 2


def test_a_dropped_connection_is_retried() -> None:
    with running(Stub(completion, faults=["drop"])) as stub:
        pol = policy(stub.url + "/v1")
        (group,) = pol.propose(["a s"], n=1, **KW)
    assert group[0].stop_reason == "step" and pol.client.retries == 1


def test_500s_until_the_last_retry_fail_with_the_server_named() -> None:
    with running(Stub(completion, faults=["500"] * 10)) as stub:
        pol = policy(stub.url + "/v1", max_retries=2)
        with pytest.raises(ServerError) as err:
            pol.propose(["a s"], n=1, **KW)
    message = str(err.value)
    assert f"{stub.url}/v1/completions" in message and "HTTP 500" in message and "3 attempts" in message
    assert "policy server (stub-model)" in message and len(stub.requests) == 3


@pytest.mark.parametrize(("fault", "expected"), [("garbage", "not a JSON object"), ("400", "HTTP 400")])
def test_a_malformed_or_refused_reply_fails_at_once(fault: str, expected: str) -> None:
    with running(Stub(completion, faults=[fault])) as stub, pytest.raises(ServerError, match=expected) as err:
        policy(stub.url + "/v1").propose(["a s"], n=1, **KW)
    assert stub.url in str(err.value) and len(stub.requests) == 1  # retrying cannot mend it


def test_an_unreachable_server_fails_with_its_url() -> None:
    with running(Stub(completion)) as stub:
        url = stub.url
    with pytest.raises(ServerError, match="connection failed") as err:
        policy(url + "/v1", max_retries=1).propose(["a s"], n=1, **KW)
    assert url in str(err.value)


def test_requests_spread_round_robin_and_fail_over() -> None:
    with running(Stub(completion)) as a, running(Stub(completion)) as b:
        pol = policy(f"{a.url}/v1|{b.url}/v1/")
        pol.propose(["a s", "b s"], n=4, **KW)
        assert len(a.requests) == len(b.requests) == 4
        down = b.url
    with running(Stub(completion)) as a2:
        pol = policy(f"{down}/v1|{a2.url}/v1")  # one replica gone: its requests move to the next
        out = pol.propose(["a s"], n=4, **KW)
    assert len(out[0]) == 4 and len(a2.requests) == 4 and pol.client.retries >= 2


def test_the_context_is_read_from_the_server_and_long_prompts_are_cut() -> None:
    models = {"object": "list", "data": [{"id": "stub-model", "root": "/x", "max_model_len": 40}]}
    with running(Stub(completion, models=models)) as stub:
        pol = policy(stub.url + "/v1", max_model_len=None)
        (group,) = pol.propose(["z" * 60 + "s"], n=1, **{**KW, "max_tokens": 8})
    assert pol.max_length == 40 and group.overflow == "truncated" and group.cut_tokens == 29
    body = stub.requests[-1][1]
    assert body["prompt"] == [ord("z")] * 31 + [ord("s")] and body["max_tokens"] == 8


def test_servers_without_stop_reason_are_read_from_the_text(caplog: pytest.LogCaptureFixture) -> None:
    def plain(path: str, body: dict[str, Any]) -> dict[str, Any]:
        text = "a<end>b" if body["prompt"].endswith("f") else "abc"
        return {"choices": [{"index": 0, "text": text, "finish_reason": "stop"}]}

    with running(Stub(plain)) as stub, caplog.at_level(logging.WARNING):
        pol = policy(stub.url + "/v1", openai_only=True)
        out = pol.propose(["q f", "q s"], n=1, **KW)
    assert (out[0][0].text, out[0][0].stop_reason) == ("a", "final")
    assert (out[1][0].text, out[1][0].stop_reason) == ("abc", "step") and "which stop" in caplog.text
    assert out[1][0].n_tokens == 3 and out[1].prefill_tokens == 0  # no usage: counted locally
    assert "skip_special_tokens" not in stub.requests[-1][1]


# -- the served PRM ---------------------------------------------------------------------


class Segmenter:
    def question_segment(self, question: str) -> tuple[int, ...]:
        return tuple(ord(c) for c in "Q:" + question)

    def step_segment(self, step: str, index: int) -> tuple[int, ...]:
        return (*(ord(c) for c in step), TAG)


def fake_score(ids: list[int]) -> float:
    return (sum(i * (k + 1) for k, i in enumerate(ids)) % 101) / 101


def pooling(path: str, body: dict[str, Any]) -> dict[str, Any]:
    assert path == "/pooling" and body["task"] == "token_classify"
    data = []
    for index, ids in enumerate(body["input"]):
        rows = [[1 - fake_score(ids[: p + 1]), fake_score(ids[: p + 1])] for p, t in enumerate(ids) if t == TAG]
        data.append({"index": index, "object": "pooling", "data": rows})
    total = sum(len(ids) for ids in body["input"])
    return {"data": data[::-1], "usage": {"prompt_tokens": total, "total_tokens": total}}  # any order


class LocalEngine:
    def pool(self, sequences: list[list[int]]) -> list[Pooled]:
        return [Pooled(pooling("/pooling", {"task": "token_classify", "input": [ids]})["data"][0]["data"], len(ids))
                for ids in sequences]

    def reset_prefix_cache(self) -> None:
        pass


def served_prm(url: str, limit: int | None = None, **kw: Any) -> VLLMPoolingPRM:
    client = JSONClient(url, backoff=0.01, max_retries=2, concurrency=2, name="PRM server")
    return VLLMPoolingPRM(ServedPooling(client, "prm", batch_size=2), Segmenter(), step_separator="\n\n",
                          tag_id=TAG, max_length=limit, **kw)


QUERIES = [PRMQuery("1+1?", ("one", "two")), PRMQuery("q", ("a",)), PRMQuery("x\x07y", ("s\x07t", "u", "v")),
           PRMQuery("no steps", ())]


def test_served_prm_scores_as_the_in_process_layout_does() -> None:
    local = VLLMPoolingPRM(LocalEngine(), Segmenter(), step_separator="\n\n", tag_id=TAG, max_length=None)
    with running(Stub(pooling, faults=["500", "drop"])) as stub:
        prm = served_prm(stub.url)
        ours = prm.score(QUERIES)
    theirs = local.score(QUERIES)
    assert [s.scores for s in ours] == [s.scores for s in theirs] and ours[0].scores is not None
    assert [s.tokens for s in ours] == [prm.count_tokens(q) if q.steps else 0 for q in QUERIES]
    posts = [b for _, b in stub.requests]
    assert len(posts) == 4 and {len(b["input"]) for b in posts} == {1, 2} and all(b["model"] == "prm" for b in posts)
    assert prm.engine.client.retries == 2  # type: ignore[attr-defined]


def test_served_prm_follows_on_overflow() -> None:
    long = PRMQuery("w" * 30, ("abc", "def"))
    with running(Stub(pooling)) as stub:
        cut = served_prm(stub.url, limit=16).score([long])[0]
        skipped = served_prm(stub.url, limit=16, on_overflow="skip").score([long])[0]
    assert cut.overflow == "truncated" and cut.cut_tokens > 0 and len(cut.scores or ()) == 2
    assert skipped.overflow == "skipped" and skipped.scores is None


def test_served_prm_names_a_server_pooling_the_wrong_positions() -> None:
    def every_position(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"data": [{"index": i, "data": [[0.5, 0.5]] * len(ids)} for i, ids in enumerate(body["input"])]}

    with running(Stub(every_position)) as stub, pytest.raises(RuntimeError, match="step_tag_id 7"):
        served_prm(stub.url).score(QUERIES[:1])


def test_a_served_prm_needs_a_local_copy_of_its_checkpoint() -> None:
    from prm_plugin.prm import load_prm

    models = {"object": "list", "data": [{"id": "Qwen/Qwen2.5-Math-PRM-7B", "max_model_len": 4096}]}
    with running(Stub(pooling, models=models)) as stub, pytest.raises(ValueError, match="prm_tokenizer="):
        load_prm(stub.url + "/v1")
    assert [path for path, _ in stub.requests] == ["/v1/models"]


def test_cached_tokens_are_spread_over_a_requests_sequences() -> None:
    assert _spread_cached([10, 30], 20) == [5, 15]
    assert _spread_cached([3, 3], 0) == [3, 3] and sum(_spread_cached([7, 5, 1], 9)) == 4


def test_lm_eval_settings_for_served_models() -> None:
    from prm_plugin.integrations.lm_eval_config import ModelSettings

    with pytest.raises(ValueError, match="base_url"):
        ModelSettings(policy="openai", pretrained="m")
    settings = ModelSettings(policy="openai", pretrained="m", base_url="http://a/v1", prm_url="http://b:1")
    assert settings.prm == "http://b:1" and not settings.wraps_lm_eval_model
    with pytest.raises(ValueError, match="give one of them"):
        ModelSettings(prm="/ckpt", prm_url="http://b:1")


def test_a_failing_server_fails_only_its_problems_in_a_harness_run() -> None:
    """``policy=openai`` built from model_args; the server fails every request for one
    problem: that problem is recorded with an error naming the server, the others answer."""
    from lm_eval_fakes import ArithPRM

    from prm_plugin import world
    from prm_plugin.integrations.search_session import SearchSession
    from prm_plugin.search import Problem

    def arith(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if "5 + 6" in body["prompt"]:
            return {"__status__": 503, "error": {"message": "overloaded"}}
        a, b = (int(x) for x in body["prompt"].split("What is ")[1].split("?")[0].split(" + "))
        text = f"{a} + {b} = {a + b}"
        return {"choices": [{"index": 0, "text": text, "finish_reason": "stop", "stop_reason": None}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7}}

    problems = [Problem(prompt=f"Q: What is {a} + {b}?\nA:", question=f"What is {a} + {b}?", uid=f"p{k}")
                for k, (a, b) in enumerate([(1, 2), (5, 6), (7, 8)])]
    with running(Stub(arith)) as stub:
        args = {"policy": "openai", "base_url": stub.url + "/v1", "pretrained": "stub-model",
                "tokenizer": str(world.paths()["policy"]), "strategy": "bon", "n": "2",
                "policy.max_retries": "1", "policy.backoff": "0.01", "policy.max_model_len": "4096"}
        session = SearchSession.build(args, harness="test", prm=ArithPRM())
        got = session.search(problems)
    assert [r.text for r in got] == ["1 + 2 = 3", "", "7 + 8 = 15"]
    assert got[0].cost.policy_generated_tokens == 14 and got[0].cost.policy_prefill_tokens == 10
    error = got[1].error
    assert error is not None and error["where"] == "policy" and error["type"] == "ServerError"
    assert f"{stub.url}/v1/completions" in error["message"] and "HTTP 503" in error["message"]
