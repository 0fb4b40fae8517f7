"""VLLMPolicy against a fake ``vllm`` module that follows vLLM's documented API.

The fake engine emulates what the mapping depends on: ``SamplingParams`` accepts only
real field names; ``n`` samples run as children seeded ``seed + j`` (vLLM V1); stop
strings are checked on each token's new text *in list order* and cut from the text;
``token_ids`` include the stopping token; EOS gives ``finish_reason="stop"`` with
``stop_reason=None``; ``num_cached_tokens`` is the longest previously seen prompt prefix.
"""

from __future__ import annotations

import importlib
import random
import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest
from test_policy_kit import tokenizer

from prm_plugin.policy._request import StopSet
from prm_plugin.policy._sampling import row_seed
from prm_plugin.search import Proposal

TOK = tokenizer()
EOS = "<EOS>"  # in a canned continuation: the model emits its EOS token here
CANNED = [
    "Let x = 2.\n\nSo x + 1 = 3",
    "def add(a, b):\n    return a + b\n\nThe answer is 14" + EOS,
    "x = [1, 2, 3]" + EOS,
    "The answer is 14\n\nmore",
]

_SAMPLING_FIELDS = {  # a subset of vllm.SamplingParams' fields (vllm/sampling_params.py)
    "n", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "max_tokens",
    "min_tokens", "skip_special_tokens", "spaces_between_special_tokens",
    "include_stop_str_in_output", "detokenize", "ignore_eos", "logprobs",
}


class SamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - _SAMPLING_FIELDS
        if unknown:
            raise TypeError(f"SamplingParams got unexpected fields {sorted(unknown)}")
        self.__dict__.update(dict(n=1, temperature=1.0, top_p=1.0, seed=None, stop=None, max_tokens=16))
        self.__dict__.update(kwargs)


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int | None = None


class LLM:
    instances: list[LLM] = []

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.model, self.kwargs = model, kwargs
        self.calls: list[tuple[list[str], list[SamplingParams]]] = []
        self.seen: list[list[int]] = []
        self.report_cached = True
        self.finish_override: str | None = None
        LLM.instances.append(self)

    def get_tokenizer(self) -> Any:
        return TOK

    def generate(self, prompts: list[str], sampling_params: list[SamplingParams], use_tqdm: bool = True):
        assert use_tqdm is False
        self.calls.append((list(prompts), list(sampling_params)))
        outs = []
        for i, (prompt, sp) in enumerate(zip(prompts, sampling_params, strict=True)):
            ids = TOK(prompt)["input_ids"]
            cached = max((_common(ids, old) for old in self.seen), default=0)
            self.seen.append(ids)
            children = [self._child(j, sp) for j in range(sp.n)]
            outs.append(RequestOutput(str(i), prompt, ids, None, children, True,
                                      cached if self.report_cached else None))
        return outs

    def _child(self, j: int, sp: SamplingParams) -> CompletionOutput:
        if sp.temperature == 0:
            script = CANNED[0]
        else:
            script = CANNED[random.Random(sp.seed + j).randrange(len(CANNED))]
        body, eos = (script[: -len(EOS)], True) if script.endswith(EOS) else (script, False)
        ids = TOK(body)["input_ids"] + ([TOK.eos_token_id] if eos else [])
        text, out_ids = "", []
        for t in ids:
            out_ids.append(t)
            if t == TOK.eos_token_id:
                return CompletionOutput(j, text, out_ids, finish_reason="stop", stop_reason=None)
            new = TOK.decode([t])
            text += new
            for s in sp.stop or []:  # list order, on the new text's window, like vLLM
                k = text.find(s, max(0, len(text) - len(new) - len(s) + 1))
                if k >= 0:
                    return CompletionOutput(j, text[:k], out_ids, finish_reason="stop", stop_reason=s)
            if len(out_ids) == sp.max_tokens:
                return CompletionOutput(j, text, out_ids, finish_reason=self.finish_override or "length")
        return CompletionOutput(j, text, out_ids, finish_reason="length")


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    LLM.instances.clear()
    return module


@pytest.fixture
def policy(fake_vllm):
    from prm_plugin.policy.vllm import VLLMPolicy

    return VLLMPolicy.from_pretrained("some/model", dtype="bfloat16", gpu_memory_utilization=0.5)


def _flat(groups) -> list[tuple[str, int, str]]:
    return [(p.text, p.n_tokens, p.stop_reason) for g in groups for p in g]


def test_importable_without_vllm_and_a_clear_error_when_used(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    module = importlib.reload(importlib.import_module("prm_plugin.policy.vllm"))
    with pytest.raises(ImportError, match=r"pip install 'prm-plugin\[vllm\]'"):
        module.VLLMPolicy.from_pretrained("some/model")
    with pytest.raises(ImportError, match="prm-plugin"):
        module.VLLMPolicy(object())


def test_engine_is_built_with_prefix_caching(policy) -> None:
    [llm] = LLM.instances
    assert llm.model == "some/model"
    assert llm.kwargs == dict(dtype="bfloat16", enable_prefix_caching=True, gpu_memory_utilization=0.5)
    assert policy.count_tokens("def add(a, b):") == len(TOK("def add(a, b):")["input_ids"])


def test_bad_device_is_refused(fake_vllm) -> None:
    from prm_plugin.policy.vllm import VLLMPolicy

    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        VLLMPolicy.from_pretrained("m", device="cuda:1")


def test_reasons_texts_counts_and_requests(policy) -> None:
    prompts = ["Question: 1 + 1?\n\n", "def f():\n"]
    out = policy.propose(prompts, n=8, stop=["\n\n"], final_stop=["The answer"], max_tokens=20,
                         temperature=0.7, top_p=0.9, seed=5)
    expected = {  # per canned continuation, mapped onto the contract
        0: ("Let x = 2.", 7, "step"),
        1: ("def add(a, b):\n    return a + b", 16, "step"),
        2: ("x = [1, 2, 3]", 11, "eos"),  # 10 tokens + EOS
        3: ("", 6, "final"),  # "The answer" is complete after 6 tokens
    }
    seen: set[int] = set()
    for text, group in zip(prompts, out, strict=True):
        base = row_seed(5, text, 0) % (1 << 62)
        picks = [random.Random(base + j).randrange(len(CANNED)) for j in range(8)]
        assert _flat([group]) == [expected[k] for k in picks]
        seen.update(picks)
        assert group.prefill_tokens == len(TOK(text)["input_ids"])
    assert seen == {0, 1, 2, 3}  # every kind of ending was exercised
    [(sent, params)] = LLM.instances[0].calls
    assert sent == [text for text in prompts for _ in range(8)]  # one request per sample
    for k, (text, sp) in enumerate(zip(sent, params, strict=True)):
        assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens) == (1, 0.7, 0.9, 20)
        assert sp.stop == ["\n\n", "The answer"] and sp.seed == row_seed(5, text, 0) % (1 << 62) + k % 8
        assert sp.skip_special_tokens is False and sp.spaces_between_special_tokens is False


def test_length_and_batch_independence(policy) -> None:
    kw = dict(n=3, stop=["\n\n"], max_tokens=3, temperature=1.0, seed=1)
    [group] = policy.propose(["a"], **kw)
    assert all(p.stop_reason in ("length", "final", "step", "eos") and p.n_tokens <= 3 for p in group)
    assert any(p.stop_reason == "length" and p.n_tokens == 3 for p in group)
    together = policy.propose(["b", "a", "c"], **kw)
    assert list(together[1]) == list(group)


def test_prefill_uses_num_cached_tokens(policy) -> None:
    prompt = "Question: what is 12 - 5?\n\n"
    [first] = policy.propose([prompt], n=1, stop=["\n\n"], max_tokens=8, temperature=0)
    [second] = policy.propose([prompt + first[0].text + "\n\n"], n=1, stop=["\n\n"], max_tokens=8,
                              temperature=0)
    full = len(TOK(prompt + first[0].text + "\n\n")["input_ids"])
    assert first.prefill_tokens == len(TOK(prompt)["input_ids"])
    assert second.prefill_tokens == full - _common(TOK(prompt)["input_ids"], TOK(prompt + first[0].text + "\n\n")["input_ids"])
    assert second.prefill_tokens < full
    LLM.instances[0].report_cached = False  # an engine that does not report cache hits
    [third] = policy.propose([prompt], n=1, stop=["\n\n"], max_tokens=8, temperature=0)
    assert third.prefill_tokens == len(TOK(prompt)["input_ids"])


def test_greedy_runs_once_per_text_and_repeats(policy) -> None:
    out = policy.propose(["p", "q", "p"], n=3, stop=["\n\n"], max_tokens=20, temperature=0)
    assert [len(g) for g in out] == [3, 3, 3]
    assert len({p for g in out for p in g}) == 1 and out[0][0] == Proposal("Let x = 2.", 7, "step")
    [(sent, params)] = LLM.instances[0].calls
    assert sent == ["p", "q"] and [sp.n for sp in params] == [1, 1]  # greedy: one request per text
    assert out[0].prefill_tokens == 1 and out[2].prefill_tokens == 0


def test_repeated_prefix_draws_further_samples(policy) -> None:
    kw = dict(stop=["\n\n"], max_tokens=20, temperature=1.0, seed=9)
    twice = policy.propose(["p", "p"], n=2, **kw)
    once = policy.propose(["p"], n=4, **kw)
    assert list(twice[0]) + list(twice[1]) == list(once[0])
    seeds = [sp.seed for sp in LLM.instances[0].calls[0][1]]
    assert seeds == [seeds[0] + j for j in range(4)]  # the second "p" goes on where the first stopped


def test_the_earliest_stop_in_the_text_wins_over_list_order() -> None:
    # vLLM checks "urn" first (list order) in the new text " return" and cuts there;
    # "ret" starts earlier in the same token, so the proposal ends before "ret".
    from prm_plugin.policy.vllm import to_proposal

    stops = StopSet(step=("urn",), final=("ret",))
    done = CompletionOutput(0, "def add(a, b):\n    ret", [1] * 11, finish_reason="stop", stop_reason="urn")
    assert to_proposal(done, stops) == Proposal("def add(a, b):\n    ", 11, "final")
    stop_id = CompletionOutput(0, "x", [5, 7], finish_reason="stop", stop_reason=7)
    assert to_proposal(stop_id, stops) == Proposal("x", 2, "eos")


def test_engine_failures_raise(policy) -> None:
    from prm_plugin.policy.vllm import to_proposal

    LLM.instances[0].finish_override = "abort"
    with pytest.raises(RuntimeError, match="finish_reason='abort'"):
        policy.propose(["p"], n=1, stop=["\n\n"], max_tokens=2, temperature=0)
    odd = CompletionOutput(0, "x", [1], finish_reason="stop", stop_reason="zzz")
    with pytest.raises(RuntimeError, match="not a requested stop string"):
        to_proposal(odd, StopSet(step=("\n\n",)))
    with pytest.raises(ValueError, match="empty"):
        policy.propose([""], n=1, stop=[], max_tokens=2, temperature=0)


# --- the context (on_overflow), as in HFPolicy --------------------------------------------
class ContextLLM(LLM):
    """The fake engine with a context (``llm_engine.model_config.max_model_len``), taking
    token-id prompts as vLLM does (``{"prompt_token_ids": [...]}``)."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=24))

    def generate(self, prompts, sampling_params, use_tqdm=True):
        texts = [TOK.decode(p["prompt_token_ids"]) if isinstance(p, dict) else p for p in prompts]
        outs = super().generate(texts, sampling_params, use_tqdm)
        self.calls[-1] = (list(prompts), list(sampling_params))
        return outs


@pytest.mark.parametrize("on_overflow", ["truncate", "skip", "error"])
def test_prompts_longer_than_the_context_follow_on_overflow(fake_vllm, on_overflow) -> None:
    from prm_plugin.policy.vllm import VLLMPolicy
    from prm_plugin.search import ContextOverflowError

    policy = VLLMPolicy(ContextLLM("m"), on_overflow=on_overflow)
    long_prompt, short = "The quick brown fox jumps over the lazy dog. " * 3, "x = 1"
    ids = TOK(long_prompt)["input_ids"]
    assert policy.max_length == 24 and len(ids) > 24
    kw = dict(n=2, stop=["\n\n"], max_tokens=16, temperature=0.7, seed=3)
    if on_overflow == "error":
        with pytest.raises(ContextOverflowError, match="Prefix 0 takes .* context of 24 positions"):
            policy.propose([long_prompt, short], **kw)
        return
    long_group, short_group = policy.propose([long_prompt, short], **kw)
    (sent, params), = policy.llm.calls
    assert short_group.overflow is None and len(short_group) == 2
    assert params[-1].max_tokens == min(16, 24 - len(TOK(short)["input_ids"]))  # stops at the context's end
    if on_overflow == "skip":
        assert long_group.skipped and len(long_group) == 0 and sent == [short, short]  # one request per sample
        return
    keep = 24 - min(16, 24 // 4)
    assert long_group.overflow == "truncated" and long_group.cut_tokens == len(ids) - keep
    assert sent[:2] == [{"prompt_token_ids": ids[-keep:]}] * 2 and params[0].max_tokens == 24 - keep
    assert len(long_group) == 2
