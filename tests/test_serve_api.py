"""``prm-plugin serve`` over real HTTP on loopback, with a fake policy and PRM: the OpenAI
response shape, dynamic batching, per-request settings, failures, disconnects, metrics."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from serve_fakes import AnyPolicy, fake_session, metric, serving, wait_for


def _post(url: str, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30, **kw)


async def _concurrently(url: str, bodies: list[dict], path: str = "/v1/completions") -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return list(await asyncio.gather(*(client.post(url + path, json=b) for b in bodies)))


def test_completion_is_the_searched_answer_in_openai_shape():
    policy = AnyPolicy()
    with serving(fake_session(policy), model_name="m") as server:
        r = _post(server.url, "/v1/completions", {"model": "m", "prompt": "Q: 2+2?", "return_trace": True})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "text_completion" and body["model"] == "m"
        (choice,) = body["choices"]
        assert choice["text"] == "answer 1 to Q: 2+2?"  # best-of-2 picks what the PRM prefers
        assert choice["finish_reason"] == "stop" and choice["index"] == 0
        assert choice["search"]["score"] == pytest.approx(0.9) and choice["search"]["chosen"] == 1
        assert [c["step_scores"] for c in choice["search"]["candidate_list"]] == [[0.2], [0.9]]
        assert choice["search"]["cost"]["policy_generated_tokens"] == 6  # two samples of 3 tokens
        assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}  # words
        assert body["search"]["strategy"] == "bon" and body["search"]["n"] == 2
        assert policy.calls[0][1] == 2


def test_a_list_of_prompts_and_openai_n_give_one_choice_per_search():
    policy = AnyPolicy()
    with serving(fake_session(policy, temperature=0.5)) as server:
        r = _post(server.url, "/v1/completions", {"prompt": ["first one", "second one"], "n": 2, "seed": 3})
        assert r.status_code == 200, r.text
        texts = [c["text"] for c in r.json()["choices"]]
        assert texts == ["answer 1 to first one", "answer 1 to first one",
                         "answer 1 to second one", "answer 1 to second one"]
        # each OpenAI choice is its own search, with the seed offset by the choice index
        seeds = sorted({call[3] for call in policy.calls})
        assert len(seeds) == 2 and seeds[0] == 3 * 1_000_003


def test_concurrent_requests_are_gathered_into_batches():
    policy = AnyPolicy()
    with serving(fake_session(policy), max_batch=4, batch_wait_s=2.0, batch_max_wait_s=5.0) as server:
        responses = asyncio.run(_concurrently(server.url, [{"prompt": f"problem {i}"} for i in range(8)]))
        assert all(r.status_code == 200 for r in responses)
        assert [r.json()["choices"][0]["text"] for r in responses] == [f"answer 1 to problem {i}" for i in range(8)]
        assert sorted(len(call[0]) for call in policy.calls) == [4, 4]  # two strategy.search calls, four each
        assert sorted(policy.prompts()) == sorted(f"problem {i}" for i in range(8))  # none lost or repeated
        assert metric(server.url, 'prm_serve_batch_size_count') == 2
        assert metric(server.url, 'prm_serve_problems_searched_total') == 8


def test_requests_with_different_search_settings_never_share_a_search():
    policy = AnyPolicy()
    with serving(fake_session(policy), batch_wait_s=1.0, batch_max_wait_s=5.0) as server:
        responses = asyncio.run(_concurrently(server.url, [
            {"prompt": "a", "search": {"n": 3}}, {"prompt": "b", "search": {"n": 3}},
            {"prompt": "c", "search": {"strategy": "majority", "n": 5}}, {"prompt": "d"}]))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        calls = sorted((sorted(call[0]), call[1]) for call in policy.calls)
        assert calls == [(["a", "b"], 3), (["c"], 5), (["d"], 2)]
        assert responses[2].json()["search"]["strategy"] == "majority"


def test_per_request_strategy_parameters_reach_the_strategy():
    policy = AnyPolicy()
    with serving(fake_session(policy)) as server:
        r = _post(server.url, "/v1/completions",
                  {"prompt": "x", "search": {"temperature": 0.25, "seed": 9, "aggregation": "last"}})
        assert r.status_code == 200, r.text
        assert r.json()["search"]["params"]["aggregation"] == "last"
        assert policy.calls[-1][2] == 0.25 and policy.calls[-1][3] == 9 * 1_000_003
        # OpenAI's temperature replaces the search's; 0 (lm-eval's greedy gen_kwargs) keeps the search's own
        _post(server.url, "/v1/completions", {"prompt": "y", "temperature": 0})
        assert policy.calls[-1][2] == 0.8
        _post(server.url, "/v1/completions", {"prompt": "z", "temperature": 0.3})
        assert policy.calls[-1][2] == 0.3
        # ... unless search sets it; greedy fixes it at 0 whatever the client says
        _post(server.url, "/v1/completions", {"prompt": "w", "temperature": 0.3, "search": {"temperature": 0.6}})
        assert policy.calls[-1][2] == 0.6
        r = _post(server.url, "/v1/completions", {"prompt": "v", "temperature": 0.3, "search": {"strategy": "greedy"}})
        assert r.status_code == 200 and policy.calls[-1][2] == 0


def test_a_temperature_the_server_set_is_not_replaced_by_the_client():
    policy = AnyPolicy()
    with serving(fake_session(policy, temperature=0.5)) as server:
        _post(server.url, "/v1/completions", {"prompt": "y", "temperature": 1.2, "top_p": 0.9})
        assert policy.calls[-1][2] == 0.5
        r = _post(server.url, "/v1/completions", {"prompt": "y", "search": {"strategy": "majority"}, "temperature": 1.2})
        assert r.status_code == 200 and policy.calls[-1][2] == 0.5  # carried over to the other strategy


def test_a_failing_search_fails_only_its_own_request():
    policy = AnyPolicy()
    with serving(fake_session(policy), batch_wait_s=1.0, batch_max_wait_s=5.0) as server:
        ok1, bad, ok2 = asyncio.run(_concurrently(server.url, [{"prompt": "fine 1"}, {"prompt": "boom"},
                                                               {"prompt": "fine 2"}]))
        assert ok1.status_code == 200 and ok1.json()["choices"][0]["text"] == "answer 1 to fine 1"
        assert ok2.status_code == 200 and ok2.json()["choices"][0]["text"] == "answer 1 to fine 2"
        assert bad.status_code == 500
        assert bad.json()["error"]["type"] == "server_error" and "blew up" in bad.json()["error"]["message"]
        # the batch, then halves until the failing problem is alone (the session isolates faults)
        prompts = [tuple(c[0]) for c in policy.calls]
        assert len(prompts[0]) == 3 and [p for p in prompts if "boom" in p][-1] == ("boom",)
        assert all(any(f in p and "boom" not in p for p in prompts) for f in ("fine 1", "fine 2"))
        assert metric(server.url, "prm_serve_search_failures_total") == 1
        assert _post(server.url, "/v1/completions", {"prompt": "after"}).status_code == 200


def test_a_client_that_disconnects_frees_its_place_in_the_queue():
    gate = threading.Event()
    policy = AnyPolicy(gate=gate)
    with serving(fake_session(policy)) as server:
        def depth() -> int:
            return int(httpx.get(server.url + "/health").json()["queue_depth"])

        async def scenario() -> httpx.Response:
            async with httpx.AsyncClient(timeout=30) as client:
                first = asyncio.create_task(client.post(server.url + "/v1/completions", json={"prompt": "first"}))
                await asyncio.to_thread(wait_for, policy.busy.is_set, 10, "the first search")
                async with httpx.AsyncClient(timeout=30) as other:
                    leaver = asyncio.create_task(other.post(server.url + "/v1/completions", json={"prompt": "leaver"}))
                    await asyncio.to_thread(wait_for, lambda: depth() == 2, 10, "the second request to queue")
                    leaver.cancel()
                await asyncio.to_thread(wait_for, lambda: depth() == 1, 10, "the queue to free the leaver's place")
                gate.set()
                return await first

        try:
            first = asyncio.run(scenario())
        finally:
            gate.set()
        assert first.status_code == 200 and first.json()["choices"][0]["text"] == "answer 1 to first"
        assert policy.prompts() == ["first"]  # the leaver was never searched
        assert metric(server.url, "prm_serve_client_disconnects_total") == 1
        assert depth() == 0


def test_metrics_count_requests_problems_tokens_and_latency():
    with serving(fake_session()) as server:
        for prompt in ("one two", "three"):
            assert _post(server.url, "/v1/completions", {"prompt": prompt}).status_code == 200
        assert _post(server.url, "/v1/completions", {"prompt": 5}).status_code == 400
        text = httpx.get(server.url + "/metrics").text
        assert 'prm_serve_requests_total{endpoint="/v1/completions",status="200"} 2.0' in text
        assert 'prm_serve_requests_total{endpoint="/v1/completions",status="400"} 1.0' in text
        assert metric(server.url, "prm_serve_problems_searched_total") == 2
        assert metric(server.url, 'prm_serve_policy_tokens_total{kind="generated"}') == 12  # 2 problems x 2 x 3
        assert metric(server.url, 'prm_serve_policy_tokens_total{kind="prefill"}') == 3
        assert metric(server.url, "prm_serve_prm_tokens_total") > 0
        assert metric(server.url, 'prm_serve_request_latency_seconds_count{endpoint="/v1/completions"}') == 2
        assert metric(server.url, "prm_serve_queue_depth") == 0


def test_models_and_health():
    with serving(fake_session(n=4), model_name="search-model") as server:
        health = httpx.get(server.url + "/health").json()
        assert health == {"status": "ok", "model": "search-model", "queue_depth": 0}
        (model,) = httpx.get(server.url + "/v1/models").json()["data"]
        assert model["id"] == "search-model" and model["search"]["strategy"] == "bon" and model["search"]["n"] == 4
        assert "samples_per_call" in model["search"]["per_request_settings"]
        assert "step_delimiter" not in model["search"]["per_request_settings"]


def test_stop_strings_cut_the_answer():
    with serving(fake_session()) as server:
        r = _post(server.url, "/v1/completions", {"prompt": "Q", "stop": [" to"]})
        assert r.json()["choices"][0]["text"] == "answer 1" and r.json()["choices"][0]["finish_reason"] == "stop"


def test_chat_without_a_chat_template_is_a_clear_error():
    with serving(fake_session()) as server:
        r = _post(server.url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "no chat template" in r.json()["error"]["message"]
