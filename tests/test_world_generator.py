"""The synthetic world's generator and ground truth, checked against an independent
recomputation (Python's own arithmetic on the question text)."""

from __future__ import annotations

import random
import re

import pytest

from prm_plugin.world import Difficulty, ErrorModel, is_correct, make_set, true_step_labels
from prm_plugin.world.generator import is_hard, render_solution, sample_solution, transposed
from prm_plugin.world.tokenizer import build_tokenizer, chat_prompt


def _chain_from_question(question: str) -> list[int]:
    """Running values recomputed from the question text alone (independent of the generator)."""
    if question.startswith("Compute"):
        tokens = question[len("Compute ") : -len(" from left to right.")].split()
    else:
        lines = question.splitlines()[1:-1]
        tokens = [lines[0].split(" = ")[1]] + [t for ln in lines[1:] for t in ln.split(" = ")[1].split()[1:]]
    vals = [int(tokens[0])]
    for op, b in zip(tokens[1::2], tokens[2::2]):
        vals.append(eval(f"{vals[-1]} {op} {b}"))  # noqa: S307 - digits and +/- only
    return vals


@pytest.mark.parametrize("domain", ["arith", "codelike"])
def test_reference_solutions_are_right_and_labelled_true(domain: str) -> None:
    for p in make_set(domain, 200, seed=3):
        vals = _chain_from_question(p.question)
        assert vals == p.values and all(0 <= v <= 99 for v in vals)
        steps = p.to_json()["steps"]
        assert len(steps) == len(p.ops) + (1 if domain == "arith" else 2)
        assert true_step_labels(p, steps) == [True] * len(steps)
        assert re.search(r"\\boxed\{(-?\d+)\}", steps[-1]).group(1) == str(vals[-1])
        assert is_correct(p, "\n\n".join(steps))


@pytest.mark.parametrize("domain", ["arith", "codelike"])
def test_noisy_solution_labels_flip_exactly_at_the_first_wrong_value(domain: str) -> None:
    rng = random.Random(0)
    seen_errors = 0
    for p in make_set(domain, 150, seed=5):
        pairs = sample_solution(p, rng, ErrorModel(p_systematic=0.5, p_random=0.2))
        steps = render_solution(p, pairs)
        true_vals = _chain_from_question(p.question)
        wrong = [i for i, pair in enumerate(pairs) if pair != (true_vals[i], true_vals[i + 1])]
        first_bad_op = wrong[0] if wrong else None
        offset = 0 if domain == "arith" else 1  # codelike step i + 1 writes operation i
        expected = [first_bad_op is None or i - offset < first_bad_op for i in range(len(steps))]
        first_bad_value = first_bad_op
        if domain == "arith" and first_bad_value is not None:
            expected[-1] = False
        assert true_step_labels(p, steps) == expected, (p.question, steps)
        seen_errors += first_bad_value is not None
    assert seen_errors > 30  # the error model does produce step errors


def test_systematic_error_is_a_transposed_copy_of_a_hard_value() -> None:
    assert [v for v in range(100) if is_hard(v, 7)] == [18, 19, 29]
    assert transposed(26) == 62 and transposed(transposed(37)) == 37
    p = next(q for q in make_set("arith", 200, seed=2) if is_hard(q.start, 4))
    steps = render_solution(p, sample_solution(p, random.Random(0), ErrorModel(p_systematic=1.0, p_random=0.0)))
    assert steps[0].startswith(f"{transposed(p.start)} ") and true_step_labels(p, steps)[0] is False


def test_labels_reject_malformed_extra_and_missing_steps() -> None:
    p = make_set("arith", 1, seed=11)[0]
    steps = p.to_json()["steps"]
    assert true_step_labels(p, steps[:1] + steps[2:]) [1:] == [False] * (len(steps) - 2)
    assert true_step_labels(p, steps + ["more"])[-1] is False
    assert true_step_labels(p, ["garbage"] + steps[1:]) == [False] * len(steps)
    assert not is_correct(p, "no answer here")


def test_sets_are_reproducible_and_distinct() -> None:
    a, b = make_set("arith", 50, seed=1), make_set("arith", 50, seed=1)
    assert [x.question for x in a] == [x.question for x in b]
    assert len({x.question for x in a}) == 50
    assert {x.question for x in make_set("arith", 50, seed=2)} != {x.question for x in a}


def test_difficulty_and_error_model_validate() -> None:
    with pytest.raises(ValueError, match="min_ops"):
        Difficulty(min_ops=4, max_ops=2)
    with pytest.raises(ValueError, match="p_systematic must be in"):
        ErrorModel(p_systematic=2.0)
    assert all(3 <= len(p.ops) <= 4 for p in make_set("arith", 40, 0, Difficulty(min_ops=3, max_ops=4)))


def test_tokenizer_is_character_level_and_round_trips() -> None:
    tok = build_tokenizer()
    prompt = chat_prompt(tok, "Compute 12 + 34 from left to right.")
    text = prompt + "12 + 34 = 46\n\nThe answer is \\boxed{46}.<|im_end|>"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert tok("123")["input_ids"] == [tok.convert_tokens_to_ids(c) for c in "123"]
    assert ids[-1] == tok.eos_token_id and tok.convert_ids_to_tokens(ids[0]) == "<|im_start|>"
