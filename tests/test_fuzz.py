"""Fuzzing with hypothesis: model_args strings, strategy parameters, task rows, PRM and
policy inputs. Whatever comes in, the outcome is a result or a rejection of a declared
type (``ValueError``, ``TypeError``, the registry's ``UnknownNameError``) whose message
names the bad field; never another exception type, never a score out of range or one a
batch changes."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import types
import typing
from collections.abc import Sequence
from typing import Any

import pytest
from fakes import FakePRM
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from lm_eval.api.instance import Instance

from prm_plugin import world
from prm_plugin.integrations.lm_eval_config import own_keys
from prm_plugin.integrations.lm_eval_jobs import JobBuilder
from prm_plugin.integrations.search_session import SearchSession, parse_model_args
from prm_plugin.plugins import UnknownNameError, get_strategy
from prm_plugin.search import (
    Budget,
    ContextOverflowError,
    PrefixProposals,
    PRMQuery,
    Problem,
    Proposal,
    StepScores,
)
from prm_plugin.strategy import params_from_kwargs

#: Examples per property (PRM_FUZZ_EXAMPLES raises it for a longer hunt).
EXAMPLES = int(os.environ.get("PRM_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REJECTED = (ValueError, TypeError, UnknownNameError)
STRATEGIES = ("bon", "beam", "majority", "mcts", "greedy", "particle_filter", "dvts")
WORLD = pytest.mark.skipif(not (world.paths()["prm"] / "config.json").exists(), reason="the world has not been built")

NASTY = ["", " ", "0", "-1", "1", "2", "3", "8", "nan", "inf", "-inf", "1e309", "true", "false", "none", "abc",
         "1.5", " 3 ", "\\n", "min", "last", "prod", "beam", "bon", "mcts", "majority", "greedy", "truncate", "skip",
         "error", "puct", "rollout", "\x00", "é🙂", "x" * 300]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
# Unicode, control characters, whitespace only, long runs.
WILD_TEXT = st.one_of(TEXT, st.sampled_from(["", " ", "\n\n", "\t\x00\x1b\x7f", "🙂" * 40, "é" * 3, "\r\n" * 20]),
                      st.builds(lambda s, k: s * k, st.sampled_from(["ab ", "7 + 8 = 15\n", "🙂"]),
                                st.integers(1, 400)))


def _hash(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def _names_a_field(message: str, fields: Sequence[str]) -> bool:
    return any(f in message for f in fields)


# -- model_args strings ----------------------------------------------------------------
def _param_keys() -> list[str]:
    keys = set(own_keys())
    for name in STRATEGIES:
        keys |= {f.name for f in dataclasses.fields(get_strategy(name).Params)}
    return sorted(keys)


KEYS = _param_keys()
PAIR = st.tuples(st.one_of(st.sampled_from(KEYS + ["prm.batch_size", "policy.x", "bogus", "n "]), TEXT),
                 st.one_of(st.sampled_from(NASTY), TEXT))
MODEL_ARGS = st.one_of(st.lists(PAIR, max_size=6).map(lambda ps: ",".join(f"{k}={v}" for k, v in ps)), TEXT)


class GenerativePolicy:
    """Any prefix: ``n`` deterministic continuations (steps when asked to stop at a step
    boundary, else whole answers), within ``max_tokens``."""

    def propose(self, prefixes, *, n, stop, final_stop=(), max_tokens, temperature, top_p=1.0, seed=None):
        caps = [max_tokens] * len(prefixes) if isinstance(max_tokens, int) else list(max_tokens)
        out = []
        for p, cap in zip(prefixes, caps, strict=True):
            props = []
            for j in range(n):
                h = _hash(p, j if temperature else 0, seed)
                if stop:
                    deep = p.count(stop[0]) >= 2 + h % 3
                    text, reason = (f"so \\boxed{{{h % 3}}}", "eos") if deep else (f"step {h % 5}", "step")
                else:
                    text, reason = f"work {h % 7}{stop[0] if stop else chr(10) * 2}so \\boxed{{{h % 3}}}", "eos"
                tokens = len(text.split())
                props.append(Proposal(text, cap, "length") if tokens > cap else Proposal(text, tokens, reason))
            out.append(PrefixProposals(tuple(props), len(p.split())))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def _prm() -> FakePRM:
    return FakePRM(lambda q, steps: [(_hash(q, steps[: k + 1]) % 1000) / 999 for k in range(len(steps))])


@FUZZ
@given(MODEL_ARGS)
def test_model_args_strings_build_a_session_or_name_the_bad_key(text: str) -> None:
    try:
        args = parse_model_args(text)
        session = SearchSession.build(args, harness="fuzz", policy=GenerativePolicy(), prm=_prm())
    except REJECTED as exc:
        event(f"rejected: {type(exc).__name__}")
        keys = [part.partition("=")[0].strip() for part in text.split(",")] + ["model_args"]
        assert _names_a_field(str(exc), [k for k in keys if k] or ["model_args"]), str(exc)
        return
    event("built")
    assert session.budget.n >= 1 and session.settings.on_overflow in ("truncate", "skip", "error")
    assert all(math.isfinite(v) for v in dataclasses.asdict(session.strategy.params).values()
               if isinstance(v, float))


# -- strategy parameters -----------------------------------------------------------------
PLAUSIBLE = st.one_of(st.integers(0, 4), st.sampled_from(["1", "2", "0.5", "0.9", "min", "last", "mean", "puct", "uct",
                                                            "rollout", "sampled", "best_terminal", "true", "false"]))
VALUE = st.one_of(PLAUSIBLE, PLAUSIBLE, st.sampled_from(NASTY), st.integers(-3, 6),
                  st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
                  st.lists(st.integers(), max_size=2))


@st.composite
def strategy_settings(draw: Any, values: Any = VALUE) -> tuple[str, dict[str, Any], int]:
    name = draw(st.sampled_from(STRATEGIES))
    fields = [f.name for f in dataclasses.fields(get_strategy(name).Params) if f.name != "step_delimiter"]
    kwargs = draw(st.dictionaries(st.sampled_from(fields), values, max_size=3))
    return name, kwargs, draw(st.integers(1, 6))


@FUZZ
@given(strategy_settings())
def test_strategy_parameters_are_built_or_name_the_bad_field(setting: tuple[str, dict[str, Any], int]) -> None:
    name, kwargs, n = setting
    try:
        params = params_from_kwargs(get_strategy(name).Params, kwargs)
    except REJECTED as exc:
        event("params rejected")
        assert _names_a_field(str(exc), list(kwargs)), str(exc)
        return
    event("params built")
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        assert not isinstance(value, float) or math.isfinite(value), f.name
    _search_checks(name, params, n)


def _typed(annotation: Any, field: str) -> Any:
    """Values of a params field's type, as Python values or as the strings model_args carry."""
    args, origin = typing.get_args(annotation), typing.get_origin(annotation)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([st.none() if a is type(None) else _typed(a, field) for a in args])
    if annotation is bool:
        base = st.booleans()
    elif annotation is int:
        base = st.integers(0, 4)
    elif annotation is float:
        base = st.floats(0.05, 1.0) if field == "top_p" else st.floats(0.0, 2.0)
    elif field == "aggregation":
        base = st.sampled_from(["min", "last", "prod", "mean"])
    else:
        base = st.just("x")
    return st.one_of(base, base.map(str))


@st.composite
def valid_settings(draw: Any) -> tuple[str, dict[str, Any], int]:
    name = draw(st.sampled_from(STRATEGIES))
    hints = typing.get_type_hints(get_strategy(name).Params)
    fields = [f for f in hints if f != "step_delimiter"]
    chosen = draw(st.lists(st.sampled_from(fields), max_size=4, unique=True))
    return name, {f: draw(_typed(hints[f], f)) for f in chosen}, draw(st.integers(1, 6))


@FUZZ
@given(valid_settings())
def test_valid_strategy_settings_search_without_a_wrong_score(setting: tuple[str, dict[str, Any], int]) -> None:
    name, kwargs, n = setting
    try:
        params = params_from_kwargs(get_strategy(name).Params, kwargs)
    except REJECTED:
        assume(False)
    if name == "beam":
        n = params.beam_width * (1 + n % 3)
    _search_checks(name, params, n)


class SkippingGenerativePolicy(GenerativePolicy):
    """Skips the prefixes a salted hash picks (one in ``rate``), as a policy whose
    context they overflow with ``on_overflow=skip``."""

    def __init__(self, salt: int, rate: int) -> None:
        self.salt, self.rate = salt, rate

    def propose(self, prefixes, **kw):
        out = super().propose(prefixes, **kw)
        return [PrefixProposals((), 0, "skipped") if _hash(self.salt, p) % self.rate == 0 else g
                for p, g in zip(prefixes, out, strict=True)]


def _skipping_prm(salt: int, rate: int) -> FakePRM:
    class Skipping(FakePRM):
        def score(self, queries):
            return [StepScores(None, 0, "skipped") if _hash(salt, q) % rate == 0 else r
                    for q, r in zip(queries, super().score(queries), strict=True)]

    return Skipping(lambda q, steps: [(_hash(q, steps[: k + 1]) % 1000) / 999 for k in range(len(steps))])


@FUZZ
@given(valid_settings(), st.integers(0, 10**6), st.integers(2, 5), st.booleans())
def test_strategies_survive_skipped_prefixes_and_unscorable_candidates(setting, salt, rate, policy_skips) -> None:
    name, kwargs, n = setting
    try:
        params = params_from_kwargs(get_strategy(name).Params, kwargs)
    except REJECTED:
        assume(False)
    if name == "beam":
        n = params.beam_width * (1 + n % 3)
    policy = SkippingGenerativePolicy(salt, rate) if policy_skips else GenerativePolicy()
    _search_checks(name, params, n, policy=policy, prm=_skipping_prm(salt + 1, rate))


def _search_checks(name: str, params: Any, n: int, policy: Any = None, prm: Any = None) -> None:
    cls = get_strategy(name)
    problems = [Problem(prompt="P:", question="p", stop=["</s>"], max_tokens=24),
                Problem(prompt="Q:", question="q", stop=["</s>"], max_tokens=24)]
    try:
        results = cls(params).search(problems, policy or GenerativePolicy(), prm or _prm(), Budget(n=n))
    except ValueError as exc:  # settings that only conflict with the budget (beam: n % beam_width)
        event("search rejected")
        assert _names_a_field(str(exc), ["beam_width", "Budget.n"]), str(exc)
        return
    event(f"ran {name}")
    assert len(results) == 2
    for res in results:
        assert res.chosen is None or 0 <= res.chosen < len(res.candidates)
        if res.chosen is not None:
            assert res.text == res.candidates[res.chosen].text("\n\n")
        scores = [c.score for c in res.candidates if c.score is not None]
        assert all(0.0 <= s <= 1.0 for s in scores)
        if name in ("bon", "beam", "dvts") and scores:  # never a silent wrong score: the chosen one is scored...
            assert res.chosen is not None and res.candidates[res.chosen].score is not None
        if name == "bon" and scores:  # ... and the best
            assert res.candidates[res.chosen].score == max(scores)


# -- task rows (lm-eval requests) -----------------------------------------------------------
GEN_KWARGS = st.dictionaries(
    st.sampled_from(["until", "max_gen_toks", "do_sample", "temperature", "top_p", "bogus"]),
    st.one_of(VALUE, st.lists(st.one_of(TEXT, st.integers()), max_size=3)), max_size=5)
DOC = st.dictionaries(st.sampled_from(["prm_question", "prm_domain", "question", "answer"]),
                      st.one_of(WILD_TEXT, st.integers(), st.none()), max_size=4)


@FUZZ
@given(WILD_TEXT, GEN_KWARGS, DOC)
def test_task_rows_become_problems_or_name_the_bad_field(context: str, gen_kwargs: dict, doc: dict) -> None:
    request = Instance("generate_until", doc=doc, arguments=(context, gen_kwargs), idx=0, metadata=("t", 0, 1))
    builder = JobBuilder(question_field=None, default_domain="math", default_max_gen_toks=64, eos=None)
    try:
        (job,) = builder.build([request])
    except REJECTED as exc:
        event("row rejected")
        assert _names_a_field(str(exc), ["until", "max_gen_toks", "temperature", "top_p", "do_sample", "stop",
                                         "gen_kwargs", "max_tokens", "Problem."]), str(exc)
        return
    event("row accepted")
    p = job.problem
    assert isinstance(p.question, str) and isinstance(p.domain, str) and p.max_tokens >= 1
    assert all(isinstance(s, str) and s for s in p.stop)
    assert job.temperature is None or (math.isfinite(job.temperature) and job.temperature > 0)


VALID_GEN_KWARGS = st.fixed_dictionaries({}, optional={
    "until": st.one_of(st.text(min_size=1, max_size=5), st.lists(st.text(min_size=1, max_size=5), max_size=3)),
    "max_gen_toks": st.one_of(st.integers(1, 4096), st.integers(1, 4096).map(str)),
    "temperature": st.one_of(st.just(0.0), st.just(0), st.floats(0.0, 2.0)),
    "top_p": st.floats(0.01, 1.0),
    "do_sample": st.booleans(),
})


@FUZZ
@given(TEXT, VALID_GEN_KWARGS)
def test_valid_task_rows_are_always_accepted(question: str, gen_kwargs: dict) -> None:
    request = Instance("generate_until", doc={"prm_question": question}, arguments=("Q:", gen_kwargs), idx=0,
                       metadata=("t", 0, 1))
    (job,) = JobBuilder(question_field=None, default_domain="math", default_max_gen_toks=64, eos="</s>").build(
        [request])
    assert job.problem.question == question and "</s>" in job.problem.stop
    assert job.problem.max_tokens == int(gen_kwargs.get("max_gen_toks", 64))


# -- PRM and policy inputs on the shipped world's models ------------------------------------------
@pytest.fixture(scope="module")
def world_prms() -> dict[str, Any]:
    from prm_plugin.prm import load_prm

    out = {}
    for mode in ("truncate", "skip", "error"):
        out[mode] = load_prm(str(world.paths()["prm"]), device="cpu", on_overflow=mode)
        out[mode].max_length = 48
    out["unlimited"] = load_prm(str(world.paths()["prm"]), device="cpu", cache_bytes=0)
    return out


QUERY = st.builds(PRMQuery, WILD_TEXT, st.lists(WILD_TEXT, max_size=5).map(tuple))


@WORLD
@FUZZ
@given(st.lists(QUERY, min_size=1, max_size=4), st.sampled_from(["truncate", "skip", "error"]))
def test_prm_inputs_get_one_score_per_step_never_a_silent_wrong_one(world_prms, queries, mode) -> None:
    prm = world_prms[mode]
    limit = prm.max_length
    long_ = [prm.count_tokens(q) > limit and len(q.steps) > 0 for q in queries]
    if mode == "error" and any(long_):
        with pytest.raises(ContextOverflowError, match="on_overflow=error"):
            prm.score(queries)
        return
    got = prm.score(queries)
    for q, res, too_long in zip(queries, got, long_, strict=True):
        if mode == "skip" and too_long:
            assert res.scores is None and res.overflow == "skipped"
            continue
        assert res.scores is not None and len(res.scores) == len(q.steps)
        assert all(0.0 <= s <= 1.0 and math.isfinite(s) for s in res.scores)
        assert (res.overflow == "truncated") == too_long
        if not too_long:  # what fits is scored exactly as without any limit, whatever shares the batch
            (ref,) = world_prms["unlimited"].score([q])
            assert res.scores == pytest.approx(ref.scores, abs=1e-5)
        (alone,) = prm.score([q])
        assert alone.scores == pytest.approx(res.scores, abs=1e-5)


@pytest.fixture(scope="module")
def world_policy() -> Any:
    from prm_plugin.policy.hf import HFPolicy

    return HFPolicy.from_pretrained(str(world.paths()["policy"]), device="cpu", max_length=48)


@WORLD
@settings(max_examples=max(10, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(WILD_TEXT, min_size=1, max_size=3), st.integers(1, 6))
def test_policy_prefixes_are_continued_or_named(world_policy, prefixes, max_tokens) -> None:
    try:
        groups = world_policy.propose(prefixes, n=2, stop=["\n\n"], max_tokens=max_tokens, temperature=0.7, seed=1)
    except REJECTED as exc:
        assert _names_a_field(str(exc), ["prefix", "prompt"]), str(exc)
        return
    assert len(groups) == len(prefixes)
    for p, g in zip(prefixes, groups, strict=True):
        assert len(g) == 2 and all(0 <= x.n_tokens <= max_tokens for x in g)
        assert (g.overflow == "truncated") == (len(world_policy.encode(p)) > 48 - min(max_tokens, 12))
