"""How a question and its steps become token ids for a value-head PRM.

One layout serves training (``trainers/``) and scoring (``value_head`` family), so a
checkpoint is always scored the way it was trained. Each piece is tokenised on its
own and the ids are concatenated, so positions are exact, pieces are additive (a
prefix of steps is a prefix of ids — what the KV-reusing scorer relies on) and no
tokenizer merge can blur the step/separator boundary::

    [bos?] question  separator | step_1 separator | step_2 separator | ...
                             ^                  ^                  ^
                  (not scored)      score of step 1    score of step 2

The score (or training label) of step ``i`` sits on the last token of the separator
that closes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepLayout:
    """Token ids of one (question, steps) pair.

    Attributes:
        input_ids: the whole sequence.
        prefix_len: tokens of the question segment (bos, question, separator).
        step_ends: for each step, the index of its score token (last separator token).
    """

    input_ids: list[int]
    prefix_len: int
    step_ends: list[int]


def encode_piece(tokenizer: Any, text: str) -> list[int]:
    """Ids of ``text`` without special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def encode_after(tokenizer: Any, anchor: str, text: str) -> list[int]:
    """Ids of ``text`` as tokenised right after ``anchor`` (no special tokens).

    Falls back to tokenising ``text`` alone when the boundary merges across the anchor.

    >>> class CharTok:
    ...     def __call__(self, text, add_special_tokens=False):
    ...         return {"input_ids": [ord(c) for c in text]}
    >>> encode_after(CharTok(), "x", " ab")
    [32, 97, 98]
    """
    head = encode_piece(tokenizer, anchor)
    full = encode_piece(tokenizer, anchor + text)
    if full[: len(head)] == head:
        return full[len(head):]
    return encode_piece(tokenizer, text)


def question_ids(tokenizer: Any, question: str, separator: str) -> list[int]:
    """The question segment: optional BOS, the question, then the separator."""
    bos = getattr(tokenizer, "bos_token_id", None)
    head = [bos] if bos is not None and _adds_bos(tokenizer, bos) else []
    return head + encode_piece(tokenizer, question) + encode_piece(tokenizer, separator)


def _adds_bos(tokenizer: Any, bos: int) -> bool:
    # Follow what the tokenizer itself does with special tokens (Llama: yes, GPT-2: no).
    with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(with_special) and with_special[0] == bos and encode_piece(tokenizer, "x")[:1] != [bos]


def step_ids(tokenizer: Any, step: str, separator: str) -> list[int]:
    """One step's segment: the step's ids then the separator's ids."""
    return encode_piece(tokenizer, step) + encode_piece(tokenizer, separator)


def layout_steps(tokenizer: Any, question: str, steps: Sequence[str], separator: str) -> StepLayout:
    """Lay out a question and its steps.

    Example, with a tokenizer that maps every character to one id (``ord``)::

        >>> class CharTok:
        ...     bos_token_id = None
        ...     def __call__(self, text, add_special_tokens=False):
        ...         return {"input_ids": [ord(c) for c in text]}
        >>> lay = layout_steps(CharTok(), "Q", ["a", "bc"], "|")
        >>> "".join(map(chr, lay.input_ids)), lay.prefix_len, lay.step_ends
        ('Q|a|bc|', 2, [3, 6])
    """
    if not separator:
        raise ValueError("The step separator must be a non-empty string.")
    if not encode_piece(tokenizer, separator):
        raise ValueError(f"The step separator {separator!r} encodes to no tokens with this tokenizer.")
    ids = question_ids(tokenizer, question, separator)
    prefix_len = len(ids)
    ends: list[int] = []
    for step in steps:
        ids += step_ids(tokenizer, step, separator)
        ends.append(len(ids) - 1)
    return StepLayout(ids, prefix_len, ends)
