"""PRM inputs longer than the context (``on_overflow``), the same in every family:
truncate cuts the question from the left (then the oldest steps) and scores exactly what
was kept, skip leaves the query unscored, error refuses it."""

from __future__ import annotations

import doctest
import logging
from pathlib import Path

import pytest
from tiny import (
    build_math_shepherd_prm,
    build_qwen_math_prm,
    build_token_classification_prm,
    build_value_head_prm,
)

from prm_plugin.prm import overflow
from prm_plugin.prm.load import load_prm
from prm_plugin.prm.overflow import fit_query, fit_question
from prm_plugin.search import ContextOverflowError, PRMQuery

FAMILIES = ("value_head", "qwen", "trl", "math_shepherd", "rlhflow")
LIMIT = 96
STEPS = ("3 + 4 = 7", "7 * 2 = 14", "The answer is 14")
LONG_Q = "Some long preamble about apples and pears. " * 12 + "What is (3 + 4) * 2?"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prm_overflow")
    return {
        "value_head": build_value_head_prm(root / "value_head", initializer_range=0.1),
        "qwen": build_qwen_math_prm(root / "qwen"),
        "trl": build_token_classification_prm(root / "trl", step_separator="\n"),
        "math_shepherd": build_math_shepherd_prm(root / "math_shepherd"),
        "rlhflow": build_math_shepherd_prm(root / "rlhflow_prm", seed=1),
    }


def _load(path: Path, limit: int = LIMIT, **kw):
    prm = load_prm(str(path), device="cpu", **kw)
    prm.max_length = limit  # a small context, so short texts overflow it
    return prm


def _kept_question(prm, question: str, room: int) -> str:
    """The suffix of ``question`` whose segment ``fit_question`` keeps."""
    grain = max(1, prm.max_length // 16)
    kept = fit_question(question, room, prm._question, grain)
    return next(question[c:] for c in range(len(question) + 1) if prm._question(question[c:]) == kept)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cache_bytes", [0, 1 << 26])
def test_truncate_cuts_the_question_from_the_left_and_scores_what_was_kept(checkpoints, family, cache_bytes):
    prm = _load(checkpoints[family], cache_bytes=cache_bytes)
    query = PRMQuery(LONG_Q, STEPS)
    steps_len = sum(len(s) for s in prm.segments(query)[1:])
    prm.max_length = limit = len(prm._question("")) + steps_len + 24  # room for the steps and some question
    assert prm.count_tokens(query) > limit
    (got,) = prm.score([query])
    assert got.overflow == "truncated" and got.scores is not None and len(got.scores) == len(STEPS)
    assert got.tokens <= limit and got.cut_tokens == prm.count_tokens(query) - got.tokens
    kept = _kept_question(prm, LONG_Q, limit - steps_len)
    assert LONG_Q.endswith(kept) and len(kept) < len(LONG_Q)
    prm.max_length = None  # the reference: the kept question, scored without any limit
    (ref,) = prm.score([PRMQuery(kept, STEPS)])
    assert got.scores == pytest.approx(ref.scores, abs=2e-6)
    assert ref.overflow is None and ref.cut_tokens == 0


@pytest.mark.parametrize("family", ["value_head", "math_shepherd", "qwen"])
def test_too_many_steps_are_scored_in_runs_each_with_what_fits(checkpoints, family):
    prm = _load(checkpoints[family])
    steps = tuple(f"step {i}: {i} + 1 = {i + 1}" for i in range(24))
    query = PRMQuery("What is 24 + 1?", steps)
    (got,) = prm.score([query])
    assert got.overflow == "truncated" and got.scores is not None and len(got.scores) == len(steps)
    assert all(0.0 <= s <= 1.0 for s in got.scores)
    segs = prm.segments(query)
    parts, cut = fit_query(query.question, segs[1:], LIMIT, prm._question, grain=LIMIT // 16)
    assert len(parts) > 1 and cut == got.cut_tokens and all(sum(map(len, p)) <= LIMIT for p in parts)
    first = len(parts[0]) - 1  # steps in the first run: the same as scoring them alone
    (alone,) = prm.score([PRMQuery(query.question, steps[:first])])
    assert got.scores[:first] == pytest.approx(alone.scores, abs=2e-6)


def test_a_single_step_longer_than_the_context_keeps_its_end(checkpoints):
    prm = _load(checkpoints["value_head"])
    (got,) = prm.score([PRMQuery("q?", ("x " * 200, "done"))])
    assert got.scores is not None and len(got.scores) == 2 and got.overflow == "truncated"


@pytest.mark.parametrize("family", FAMILIES)
def test_skip_leaves_the_long_query_unscored_and_the_others_untouched(checkpoints, family):
    prm = _load(checkpoints[family], on_overflow="skip")
    short = PRMQuery("What is 3 + 4?", STEPS[:1])
    prm.max_length = prm.count_tokens(short) + 8
    long_, short_res = prm.score([PRMQuery(LONG_Q, STEPS), short])
    assert long_.scores is None and long_.skipped and long_.overflow == "skipped" and long_.tokens == 0
    (alone,) = prm.score([short])
    assert short_res.overflow is None and short_res.scores == pytest.approx(alone.scores, abs=2e-6)
    assert prm.overflows == {"truncated": 0, "skipped": 1}


def test_error_refuses_and_names_the_setting(checkpoints):
    prm = _load(checkpoints["trl"], on_overflow="error")
    with pytest.raises(ContextOverflowError, match=r"Query 0 takes \d+ tokens.*limit of 96.*on_overflow=truncate"):
        prm.score([PRMQuery(LONG_Q, STEPS)])


def test_a_bad_setting_is_refused_at_load_time(checkpoints):
    with pytest.raises(ValueError, match="on_overflow \\(PRM\\)='cut'.*truncate, skip, error"):
        load_prm(str(checkpoints["value_head"]), device="cpu", on_overflow="cut")


def test_the_first_overflow_is_logged_once_with_counts(checkpoints, caplog):
    prm = _load(checkpoints["value_head"])
    with caplog.at_level(logging.WARNING, logger="prm_plugin.prm.scorer"):
        prm.score([PRMQuery(LONG_Q, STEPS), PRMQuery("q", STEPS)])
        prm.score([PRMQuery(LONG_Q, STEPS)])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "1 of 2 queries" in lines[0] and "96 positions" in lines[0]
    assert prm.overflows["truncated"] == 2


def test_overflow_module_examples():
    assert doctest.testmod(overflow).failed == 0
