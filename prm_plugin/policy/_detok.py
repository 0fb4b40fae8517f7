"""Incremental detokenisation for the HF decode loop.

Each row decodes only a short window of its newest tokens per step (the prefix/read
offset scheme of text-generation servers), never the whole sequence: decode
``ids[prefix:]`` and ``ids[prefix:read]`` and keep the difference. Decoding a window that
starts at an already-decoded token keeps tokenizers that drop a leading space on the
first token (SentencePiece) right. Text ending in U+FFFD is an incomplete UTF-8 character
split across tokens: it is held back until the next token completes it, but the part
before it is still shown to the stop matcher, so a stop string is found on the token
that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Prompt tokens decoded as context before the first generated token (as vLLM does).
CONTEXT_TOKENS = 5
_REPLACEMENT = "\ufffd"


@dataclass
class RowText:
    """Decoding state of one row: the context tail plus its generated ids."""

    ids: list[int]
    prefix_offset: int
    read_offset: int
    text: str = ""  # confirmed generated text
    pending: str = ""  # decoded but not yet confirmed (ends before an incomplete char)
    searched: int = 0  # length of text + pending already searched for stops
    generated: list[int] = field(default_factory=list)

    @classmethod
    def start(cls, prompt_ids: Sequence[int]) -> RowText:
        tail = list(prompt_ids[-CONTEXT_TOKENS:])
        return cls(ids=tail, prefix_offset=0, read_offset=len(tail))

    @property
    def visible(self) -> str:
        """The generated text so far, including tentatively decoded characters."""
        return self.text + self.pending


class Detokenizer:
    """Batched incremental decoding with a Hugging Face tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def _decode(self, windows: list[list[int]]) -> list[str]:
        return list(
            self.tokenizer.batch_decode(
                windows, skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
        )

    def advance(self, rows: Sequence[RowText], tokens: Sequence[int]) -> None:
        """Append one token to each row and decode the new text."""
        for row, tok in zip(rows, tokens, strict=True):
            row.ids.append(tok)
            row.generated.append(tok)
        if not rows:
            return
        prev = self._decode([r.ids[r.prefix_offset : r.read_offset] for r in rows])
        full = self._decode([r.ids[r.prefix_offset :] for r in rows])
        for row, p, f in zip(rows, prev, full, strict=True):
            new = f[len(p) :]
            if new and not new.endswith(_REPLACEMENT):
                row.text += new
                row.pending = ""
                row.prefix_offset, row.read_offset = row.read_offset, len(row.ids)
            else:
                row.pending = new.rstrip(_REPLACEMENT)

    def flush(self, row: RowText) -> str:
        """All generated text, including a trailing incomplete character (as U+FFFD)."""
        prev, full = self._decode(
            [row.ids[row.prefix_offset : row.read_offset], row.ids[row.prefix_offset :]]
        )
        return row.text + full[len(prev) :]
