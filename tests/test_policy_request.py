"""The model-free pieces of the policy backends: requests, stops, decoding, sampling."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_policy_kit import tokenizer

from prm_plugin.policy._detok import Detokenizer, RowText
from prm_plugin.policy._request import StopSet, check_request
from prm_plugin.policy._sampling import row_seed, row_stream, sample_next

TOK = tokenizer()


def test_stopset_earliest_then_longest() -> None:
    s = StopSet(step=("\n\n", "\n"), final=("Answer:", "\n\nAnswer"))
    assert s.find("abc") is None
    m = s.find("x\n\nAnswer: 3")
    assert (m.start, m.string, m.reason) == (1, "\n\nAnswer", "final")  # same start: longer wins
    assert s.find("Answer: 1\n").reason == "final"
    m = s.find("a\nb\n\nAnswer", start=2)
    assert (m.start, m.string, m.reason) == (3, "\n\nAnswer", "final")
    assert s.max_len == len("\n\nAnswer") and s.reason_of("\n") == "step"


def test_check_request_accepts_a_good_request() -> None:
    s = check_request(["p"], n=2, stop=["\n\n"], final_stop=("</s>",), max_tokens=5,
                      temperature=0.0, top_p=1.0, seed=None)
    assert s == StopSet(step=("\n\n",), final=("</s>",))


def _decode(ids: list[int]) -> str:
    return TOK.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


@settings(max_examples=60, deadline=None)
@given(
    prompt=st.text(max_size=12),
    generated=st.lists(st.integers(3, len(TOK) - 1), min_size=1, max_size=20),
)
def test_incremental_decoding_equals_a_full_decode(prompt: str, generated: list[int]) -> None:
    """Byte tokens can split UTF-8 characters: confirmed text only ever grows, and the end
    result is the full decode of the generated ids."""
    detok = Detokenizer(TOK)
    row = RowText.start(TOK(prompt)["input_ids"])
    final = _decode(generated)
    for tok in generated:
        detok.advance([row], [tok])
        assert final.startswith(row.text)
    assert detok.flush(row) == final
    assert row.generated == generated


def test_a_split_character_is_held_back_but_text_before_it_is_visible() -> None:
    detok = Detokenizer(TOK)
    row = RowText.start(TOK("Step 1:")["input_ids"])
    first, second = TOK.convert_tokens_to_ids(["Ã", "©"])  # the two bytes of "é"
    for t in TOK("x\n\n")["input_ids"] + [first]:
        detok.advance([row], [t])
    assert row.visible == "x\n\n"
    detok.advance([row], [second])
    assert row.text == row.visible == "x\n\né"


def test_row_streams_are_stable_and_distinct() -> None:
    assert row_seed(0, "prefix", 0) == 12521103015033479418  # a release must not change streams
    a = [row_stream(3, "p", 0).random() for _ in range(2)]
    assert a[0] == a[1]
    assert row_stream(3, "p", 0).random() != row_stream(3, "p", 1).random()
    assert row_stream(3, "p", 0).random() != row_stream(3, "q", 0).random()


def test_sampling_greedy_inverse_cdf_and_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.0, 0.7], [0.5, 0.25, 0.25, 0.0]]))
    assert sample_next(logits, temperature=0, top_p=1.0, uniforms=None).tolist() == [3, 0]
    # Inverse CDF at u: token i where cdf[i-1] <= u < cdf[i]; zero-mass token 2 never drawn.
    got = [sample_next(logits, temperature=1.0, top_p=1.0, uniforms=[u, u]).tolist() for u in (0.05, 0.29, 0.31, 0.99)]
    assert got == [[0, 0], [1, 0], [3, 0], [3, 2]]
    # top_p=0.75 keeps {3, 1} for row 0 (0.7 < 0.75) and {0, 1} for row 1 (ties keep vocab order).
    for u in (0.0, 0.3, 0.6, 0.9, 0.999):
        a, b = sample_next(logits, temperature=1.0, top_p=0.75, uniforms=[u, u]).tolist()
        assert a in (3, 1) and b in (0, 1)
    with pytest.raises(ValueError, match="one uniform per row"):
        sample_next(logits, temperature=1.0, top_p=1.0, uniforms=[0.5])
