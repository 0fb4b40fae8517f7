"""Incremental PRM scoring: the prefix KV trie, exact token counts, scores equal to
full recomputation (mixed lengths, shared prefixes, eviction under a tiny budget)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from tiny import build_math_shepherd_prm, build_qwen_math_prm, build_value_head_prm

from prm_plugin.prm.kv_cache import PrefixCache
from prm_plugin.prm.load import load_prm
from prm_plugin.search import PRMQuery

QUESTION_A = "What is 3 + 4, times 2?"
QUESTION_B = "Solve for x: 2x + 1 = 5."
STEPS = ("Step 1: 3 + 4 = 7", "Step 2: 7 * 2 = 14", "The answer is \\boxed{14}", "x = [1, 2, 3]")


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prm_cache")
    return {
        "value_head": build_value_head_prm(root / "vh", initializer_range=0.1),
        "qwen": build_qwen_math_prm(root / "qwen"),
        "math_shepherd": build_math_shepherd_prm(root / "math_shepherd_prm"),
    }


def _pair(path: Path, **kw):
    """(cached scorer, uncached reference scorer) for one checkpoint."""
    return load_prm(str(path), device="cpu", **kw), load_prm(str(path), device="cpu", cache_bytes=0)


def _assert_same(got, ref) -> None:
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.scores == pytest.approx(r.scores, abs=2e-6)


# -- the trie ------------------------------------------------------------------------
def _kv(n: int) -> torch.Tensor:
    return torch.zeros(1, 1, n, 1)  # 4 bytes per token


def test_trie_longest_prefix_and_byte_accounting() -> None:
    cache = PrefixCache(max_bytes=1000)
    q = cache.insert(None, (1, 2), _kv(2), _kv(2), None)
    s1 = cache.insert(q, (3,), _kv(1), _kv(1), 0.5)
    assert cache.longest_prefix([(1, 2), (3,), (4,)]) == [q, s1]
    assert cache.longest_prefix([(1, 9)]) == []
    assert cache.nbytes == (2 + 2 + 1 + 1) * 4
    assert s1.path() == [q, s1]


def test_trie_evicts_least_recent_leaves_first_and_respects_pins() -> None:
    cache = PrefixCache(max_bytes=10_000)
    q = cache.insert(None, (1,), _kv(10), _kv(10), None)
    a = cache.insert(q, (2,), _kv(10), _kv(10), 0.1)
    cache.insert(q, (3,), _kv(10), _kv(10), 0.2)
    cache.touch([q, a])  # (3,) is now the least recently used leaf
    cache.max_bytes = 2 * 80  # each node: 10 tokens x 4 bytes x (keys + values)
    assert cache.evict() == 80
    assert cache.longest_prefix([(1,), (3,)]) == [q] and len(cache) == 2
    cache.max_bytes = 0
    cache.evict(pinned=[q, a])  # everything over budget, but pinned nodes stay
    assert len(cache) == 2
    cache.evict()
    assert len(cache) == 0 and cache.nbytes == 0


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="cache_bytes must be >= 0"):
        PrefixCache(-1)


# -- incremental scoring ---------------------------------------------------------------
@pytest.mark.parametrize("family", ["value_head", "qwen", "math_shepherd"])
def test_extending_a_scored_prefix_runs_only_the_new_step(paths, family: str) -> None:
    prm, ref = _pair(paths[family])
    previous = 0
    for k in range(1, len(STEPS) + 1):
        q = PRMQuery(QUESTION_A, STEPS[:k])
        (got,) = prm.score([q])
        expected_tokens = prm.count_tokens(q) - previous
        assert got.tokens == expected_tokens  # the question's tokens run once, with step 1
        previous = prm.count_tokens(q)
        _assert_same([got], ref.score([q]))
    assert prm.tokens_run == prm.count_tokens(PRMQuery(QUESTION_A, STEPS))
    (again,) = prm.score([PRMQuery(QUESTION_A, STEPS)])
    assert again.tokens == 0  # fully cached: scores come from the trie


def test_best_of_n_shares_the_question_within_one_call(paths) -> None:
    prm, ref = _pair(paths["qwen"])
    candidates = [PRMQuery(QUESTION_A, (s, STEPS[2])) for s in STEPS]
    got = prm.score(candidates)
    _assert_same(got, ref.score(candidates))
    question_tokens = prm.count_tokens(PRMQuery(QUESTION_A, ()))
    unique = question_tokens + sum(prm.count_tokens(c) - question_tokens for c in candidates)
    assert sum(r.tokens for r in got) == prm.tokens_run == unique
    assert got[0].tokens == prm.count_tokens(candidates[0])  # the first carries the question
    assert all(r.tokens == prm.count_tokens(c) - question_tokens for r, c in zip(got[1:], candidates[1:], strict=True))


def test_duplicates_in_one_call_run_once_and_questions_do_not_mix(paths) -> None:
    prm, ref = _pair(paths["value_head"])
    queries = [PRMQuery(QUESTION_A, STEPS[:2]), PRMQuery(QUESTION_A, STEPS[:2]), PRMQuery(QUESTION_B, STEPS[:2])]
    got = prm.score(queries)
    _assert_same(got, ref.score(queries))
    assert got[1].tokens == 0 and got[1].scores == got[0].scores
    # Same steps under another question: nothing shared, everything runs.
    assert got[2].tokens == prm.count_tokens(queries[2])
    assert got[2].scores != pytest.approx(got[0].scores, abs=1e-6)


def _beam_like_workload(seed: int) -> list[list[PRMQuery]]:
    """Rounds of a beam search over two questions: extend surviving prefixes by new steps."""
    rng = random.Random(seed)
    pool = [f"Step {i}: {a} + {b} = {a + b}" for i, (a, b) in enumerate(zip(range(9), range(3, 12), strict=True))]
    pool += ["x = [1, 2, 3]", "The answer is \\boxed{7}", "for i in x:\n    print(i * i)"]
    beams = {q: [()] for q in (QUESTION_A, QUESTION_B)}
    rounds = []
    for _ in range(4):
        queries = []
        for q, prefixes in beams.items():
            for prefix in prefixes:
                queries += [PRMQuery(q, (*prefix, rng.choice(pool))) for _ in range(3)]
        rounds.append(queries)
        beams = {q: [x.steps for x in rng.sample([x for x in queries if x.question == q], 2)] for q in beams}
    return rounds


@pytest.mark.parametrize("family", ["value_head", "math_shepherd"])
def test_beam_like_rounds_equal_full_recomputation_with_mixed_lengths(paths, family: str) -> None:
    prm, ref = _pair(paths[family], batch_size=4)
    seen: set[PRMQuery] = set()
    unique = 0
    for queries in _beam_like_workload(seed=1):
        _assert_same(prm.score(queries), ref.score(queries))
        for q in queries:  # unique tokens U of the tree so far (additive pieces)
            for k in range(len(q.steps) + 1):
                node = PRMQuery(q.question, q.steps[:k])
                if node not in seen:
                    seen.add(node)
                    parent = prm.count_tokens(PRMQuery(q.question, q.steps[: k - 1])) if k else 0
                    unique += prm.count_tokens(node) - parent
    assert prm.tokens_run == unique  # T_R / U = 1 with an ample cache
    assert ref.tokens_run > 2 * unique


def test_tiny_byte_budget_evicts_and_stays_exact(paths) -> None:
    prm, ref = _pair(paths["value_head"], cache_bytes=32768, batch_size=3)
    rounds = _beam_like_workload(seed=2)
    for queries in rounds:
        _assert_same(prm.score(queries), ref.score(queries))
        assert prm.cache.nbytes <= 32768
    assert len(prm.cache) > 0
    unlimited, _ = _pair(paths["value_head"])
    for queries in rounds:
        unlimited.score(queries)
    # Evictions cost recomputation, never correctness.
    assert unlimited.tokens_run < prm.tokens_run <= ref.tokens_run


def test_zero_budget_turns_the_cache_off(paths) -> None:
    prm = load_prm(str(paths["value_head"]), device="cpu", cache_bytes=0)
    q = PRMQuery(QUESTION_A, STEPS[:2])
    assert prm.cache is None
    assert [r.tokens for r in prm.score([q, q])] == [prm.count_tokens(q)] * 2


@pytest.mark.requires_gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bfloat16_cached_scores_match_full_recomputation(paths) -> None:
    """Runs only where a GPU exists: defaults pick CUDA + bfloat16; the KV cache lives there."""
    prm = load_prm(str(paths["qwen"]), batch_size=4)
    ref = load_prm(str(paths["qwen"]), cache_bytes=0)
    assert prm.device.type == "cuda" and next(prm.backbone.parameters()).dtype == torch.bfloat16
    for queries in _beam_like_workload(seed=3):
        for g, r in zip(prm.score(queries), ref.score(queries), strict=True):
            assert g.scores == pytest.approx(r.scores, abs=2e-2)  # bfloat16 rounding
    assert prm.cache.nbytes > 0 and prm.tokens_run < ref.tokens_run
