"""The RLHFlow chat layout of a ``+`` / ``-`` PRM (``RLHFlow/Llama3.1-8B-PRM-*``).

Each step is a user turn and the assistant answers ``+`` (or ``-``); the first turn is
``question + " " + step1``. A step's score is P(``+``) vs P(``-``) at the last token of
the assistant header that follows its turn — the position whose logits predict the
answer (RLHFlow's reference code reads position -3 of a conversation ending in
``+<|eot_id|>``, the same token). Earlier answers are ``+``, as in that code.

The chat template is rendered once with markers to learn its pieces, so segments are
additive and the prefix cache works::

    head  question | " " step1  turn_end | "+" answer_end  step2  turn_end | ...
                                      ^                            ^
                               score of step 1              score of step 2
"""

from __future__ import annotations

from typing import Any

from prm_plugin.prm.kv_cache import Segment
from prm_plugin.prm.layout import encode_after, encode_piece

_M = ("\u2063PRM_A\u2063", "\u2063PRM_B\u2063", "\u2063PRM_C\u2063")


def chat_pieces(tokenizer: Any) -> tuple[str, str, str, bool]:
    """``(head, turn_end, answer_end, strips)`` of the tokenizer's chat template.

    ``head`` precedes the first user content, ``turn_end`` runs from the end of a user
    turn to the start of the assistant's answer, ``answer_end`` from the end of an answer
    to the next user content; ``strips`` tells whether the template trims contents.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("The RLHFlow layout needs the tokenizer's chat template; this tokenizer has none.")
    a, b, c = _M
    conv = [{"role": "user", "content": a}, {"role": "assistant", "content": b}, {"role": "user", "content": c}]
    text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    if not all(m in text for m in _M):
        raise ValueError("The chat template drops conversation turns; cannot lay out RLHFlow steps.")
    head, rest = text.split(a)
    turn_end, rest = rest.split(b)
    answer_end, tail = rest.split(c)
    if tail != turn_end:
        raise ValueError(
            "The chat template renders the assistant header differently after the last turn "
            f"({tail!r} vs {turn_end!r}); cannot lay out RLHFlow steps additively."
        )
    padded = tokenizer.apply_chat_template([{"role": "user", "content": f" {a} "}], tokenize=False)
    return head, turn_end, answer_end, f" {a} " not in padded


class RLHFlowSegmenter:
    """Segments of the RLHFlow layout (see the module docstring)."""

    def __init__(self, tokenizer: Any, good_token_id: int) -> None:
        self.tokenizer = tokenizer
        head, turn_end, answer_end, self.strips = chat_pieces(tokenizer)
        self.head = encode_piece(tokenizer, head)
        self.turn_end = encode_piece(tokenizer, turn_end)
        self.answer_end = encode_piece(tokenizer, answer_end)
        self.turn_end_text = turn_end
        self.good = good_token_id

    def _text(self, text: str) -> str:
        return text.strip() if self.strips else text

    def question_segment(self, question: str) -> Segment:
        text = question.lstrip() if self.strips else question
        return (*self.head, *encode_piece(self.tokenizer, text))

    def step_segment(self, step: str, index: int) -> Segment:
        if index == 0:  # same user turn as the question: " " + step, trimmed at the end only
            text = " " + step.rstrip() if self.strips else " " + step
            return (*encode_after(self.tokenizer, "x", text), *self.turn_end)
        body = encode_piece(self.tokenizer, self._text(step))
        return (self.good, *self.answer_end, *body, *self.turn_end)
