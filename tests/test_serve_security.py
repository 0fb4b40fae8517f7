"""``prm-plugin serve`` refuses what a request must never do: choose models, paths or
Python objects, exceed the server's bounds, skip the API key, or send oversize bodies;
bad requests get 4xx errors in the OpenAI shape and never reach the search."""

from __future__ import annotations

import json

import httpx
import pytest
from serve_fakes import AnyPolicy, fake_session, serving

from prm_plugin.serve.cli import main as serve_main


@pytest.fixture(scope="module")
def server():
    policy = AnyPolicy()
    with serving(fake_session(policy, strategy="beam", n=4, beam_width=2), max_n=16, max_tokens=512,
                 max_choices=2, max_body_bytes=4096) as srv:
        srv.policy = policy
        yield srv


def _post(server, body, path="/v1/completions", **kw) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30, **kw)


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize("search, words", [
    ({"policy": "gpt2"}, "fixed when the server starts"),
    ({"prm": "/etc/passwd"}, "fixed when the server starts"),
    ({"pretrained": "../../other-model"}, "fixed when the server starts"),
    ({"policy.trust_remote_code": True}, "fixed when the server starts"),
    ({"prm.cache_bytes": 1}, "fixed when the server starts"),
    ({"trace_path": "/tmp/x"}, "fixed when the server starts"),
    ({"device": "cuda"}, "fixed when the server starts"),
    ({"model": "evil"}, "fixed when the server starts"),
    ({"step_delimiter": "\n"}, "free-text parameter"),
    ({"strategy": "os:system"}, "Unknown strategy 'os:system'"),
    ({"strategy": "prm_plugin.strategies.beam:BeamSearch"}, "Unknown strategy"),
    ({"strategy": "bem"}, "Did you mean: beam?"),
    ({"beam_widht": 2}, "did you mean beam_width?"),
])
def test_settings_outside_the_allow_list_are_refused(server, search, words):
    calls = len(server.policy.calls)
    err = _error(_post(server, {"prompt": "x", "search": search}), 400)
    assert words in err["message"] and err["type"] == "invalid_request_error"
    assert err["param"].startswith("search")
    assert len(server.policy.calls) == calls  # nothing was searched


@pytest.mark.parametrize("search, words", [
    ({"n": 17}, "allowed 1..16 (the server's --max-n)"),
    ({"n": 0}, "allowed 1..16"),
    ({"beam_width": 1000}, "allowed 0..16"),
    ({"max_steps": 10**9}, "allowed 0..16"),
    ({"max_step_tokens": 100000}, "allowed 1..512"),
    ({"seed": -1}, "allowed 0.."),
    ({"n": "8"}, "must be an integer"),
    ({"n": 2.5}, "must be an integer"),
    ({"temperature": "hot"}, "must be a finite number"),
    ({"aggregation": "max"}, "must be one of min, last, prod, mean"),
    ({"beam_width": 3}, "multiple of beam_width"),  # the strategy's own check, as a 400
])
def test_values_out_of_bounds_or_of_the_wrong_type_are_refused(server, search, words):
    err = _error(_post(server, {"prompt": "x", "search": search}), 400)
    assert words in err["message"]


def test_non_finite_and_nested_values_are_refused(server):
    raw = b'{"prompt": "x", "search": {"temperature": Infinity}}'
    err = _error(httpx.post(server.url + "/v1/completions", content=raw,
                            headers={"content-type": "application/json"}), 400)
    assert "finite" in err["message"]
    err = _error(_post(server, {"prompt": "x", "search": {"beam_width": {"__class__": "os.system"}}}), 400)
    assert err["param"].startswith("search.beam_width")


@pytest.mark.parametrize("body, status, words", [
    ({"prompt": "x", "policy": "gpt2"}, 400, "Unknown field 'policy'"),
    ({"prompt": "x", "n": 3}, 400, "limit of 2 (--max-choices)"),
    ({"prompt": "x", "max_tokens": 513}, 400, "limit of 512 (--max-tokens)"),
    ({"prompt": "x", "stream": True}, 400, "stream=true"),
    ({"prompt": "x", "logprobs": 1, "echo": True}, 400, "logprobs"),
    ({"prompt": "x", "best_of": 4}, 400, "set search.n"),
    ({"prompt": "x", "stop": [str(i) for i in range(17)]}, 400, "At most 16 stop strings"),
    ({"prompt": ""}, 400, "non-empty"),
    ({"prompt": [10**9]}, 400, "Token-id prompts need the policy's tokenizer"),
    ({"search": {"n": 2}}, 400, "Missing required field 'prompt'"),
    ({"prompt": "x", "model": "other"}, 404, "serves 'prm-plugin'"),
])
def test_bad_requests_get_openai_errors(server, body, status, words):
    err = _error(_post(server, body), status)
    assert words in err["message"]


def test_malformed_json_and_unknown_paths(server):
    err = _error(httpx.post(server.url + "/v1/completions", content=b'{"prompt": "x",',
                            headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in err["message"]
    assert "Endpoints:" in _error(httpx.get(server.url + "/v1/embeddings"), 404)["message"]
    assert _error(httpx.get(server.url + "/v1/completions"), 405)["type"] == "invalid_request_error"
    chat = _post(server, {"messages": [{"role": "tool", "content": "x"}]}, "/v1/chat/completions")
    assert "messages.0.role" in _error(chat, 400)["param"]


def test_oversize_bodies_get_413_with_and_without_content_length(server):
    calls = len(server.policy.calls)
    big = {"prompt": "x" * 5000}
    err = _error(_post(server, big), 413)
    assert "limit of 4096 bytes" in err["message"]
    payload = json.dumps(big).encode()
    chunks = (payload[i:i + 1000] for i in range(0, len(payload), 1000))  # chunked: no Content-Length
    r = httpx.post(server.url + "/v1/completions", content=chunks, headers={"content-type": "application/json"})
    assert "limit of 4096 bytes" in _error(r, 413)["message"]
    assert len(server.policy.calls) == calls
    assert _post(server, {"prompt": "x" * 3000}).status_code == 200  # under the limit


def test_api_key_is_required_everywhere_but_health():
    with serving(fake_session(), api_key="s3cret") as srv:
        body = {"prompt": "x"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Basic s3cret"}):
            r = httpx.post(srv.url + "/v1/completions", json=body, headers=headers)
            err = _error(r, 401)
            assert err["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
        for path in ("/v1/models", "/metrics"):
            assert httpx.get(srv.url + path).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert httpx.post(srv.url + "/v1/completions", json=body, headers=ok).status_code == 200
        assert httpx.get(srv.url + "/v1/models", headers=ok).status_code == 200
        assert httpx.get(srv.url + "/health").status_code == 200
        chat = httpx.post(srv.url + "/v1/chat/completions", json={"messages": []})
        assert chat.status_code == 401  # the key is checked before the body is judged


def test_cli_checks_flags_before_loading_anything():
    with pytest.raises(SystemExit, match="give at least --policy"):
        serve_main([])
    with pytest.raises(SystemExit, match="--n 100 exceeds --max-n 64"):
        serve_main(["--policy", "p", "--n", "100"])
    with pytest.raises(SystemExit, match="given both by --strategy and in --model-args"):
        serve_main(["--policy", "p", "--strategy", "beam", "--model-args", "strategy=bon"])
    from prm_plugin.serve.server import bind

    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(SystemExit, match="cannot listen on 127.0.0.1"):
            serve_main(["--policy", "p", "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
