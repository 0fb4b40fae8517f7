"""Requests to problem texts: the policy's chat template, token-id prompts, the PRM's
question, stop strings and usage counts.

The server keeps its own copy of the policy's tokenizer for this, so the event loop
never shares a tokenizer with the search thread (HF fast tokenizers refuse concurrent
use while one call changes their padding settings).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

from prm_plugin.serve.errors import bad_request

logger = logging.getLogger(__name__)
_SENTINEL = "\x00prm-plugin-question\x00"


class TextTools:
    """Text work for one server: templates, decoding, questions, token counts.

    Args:
        tokenizer: the policy's tokenizer (copied), or None when the policy has none.
        count_tokens: the policy's ``count_tokens`` (used when there is no tokenizer).
    """

    def __init__(self, tokenizer: Any, count_tokens: Any) -> None:
        self.tokenizer = _private_copy(tokenizer)
        self._count = count_tokens
        self._frame = self._question_frame()

    # -- prompts --------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The policy prompt for a chat: its template with the assistant turn opened (or,
        when the last message is the assistant's, continued)."""
        template = getattr(self.tokenizer, "chat_template", None) if self.tokenizer is not None else None
        if not template:
            raise bad_request("This server's policy has no chat template, so /v1/chat/completions cannot build a "
                              "prompt. Use /v1/completions with the full prompt text.", "messages")
        prefill = messages[-1]["role"] == "assistant"
        return str(self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill))

    def decode(self, ids: Sequence[int]) -> str:
        """A token-id prompt (lm-eval's ``tokenized_requests``) as text."""
        if self.tokenizer is None:
            raise bad_request("Token-id prompts need the policy's tokenizer, and this policy has none; send text.",
                              "prompt")
        size = len(self.tokenizer)
        bad = [i for i in ids if not 0 <= i < size]
        if bad:
            raise bad_request(f"Token id {bad[0]} is outside the policy's vocabulary (0..{size - 1}).", "prompt")
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    def question(self, prompt: str) -> str:
        """The PRM's question for a completions prompt: the user turn when the prompt is the
        policy's chat template around one user message, else the whole prompt."""
        if self._frame is not None:
            head, tail = self._frame
            if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail):
                middle = prompt[len(head):len(prompt) - len(tail)]
                if head.strip() not in middle and tail.strip() not in middle:
                    return middle
        return prompt

    def count(self, text: str) -> int:
        """Tokens ``text`` takes in the policy's tokenizer (for ``usage``)."""
        if not text:
            return 0
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return int(self._count(text))

    def eos(self) -> str | None:
        eos = getattr(self.tokenizer, "eos_token", None)
        return eos if isinstance(eos, str) and eos else None

    def _question_frame(self) -> tuple[str, str] | None:
        if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
            return None
        try:
            text = str(self.tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], tokenize=False,
                                                          add_generation_prompt=True))
        except Exception as exc:  # a template that needs more than one user turn
            logger.info("prm-plugin serve: cannot frame the chat template (%s); PRM questions are whole prompts.", exc)
            return None
        if text.count(_SENTINEL) != 1:
            return None
        head, tail = text.split(_SENTINEL)
        return head, tail


def last_user_text(messages: Sequence[dict[str, str]]) -> str:
    """The PRM's question for a chat: the last user message."""
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    raise bad_request("A chat needs at least one user message (the question the search answers).", "messages")


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded), and whether one was found."""
    cut = min((text.index(s) for s in stop if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _private_copy(tokenizer: Any) -> Any:
    if tokenizer is None:
        return None
    try:
        return copy.deepcopy(tokenizer)
    except Exception as exc:  # a tokenizer that cannot be copied is shared (and used lightly)
        logger.warning("prm-plugin serve: could not copy the policy's tokenizer (%s); sharing it.", exc)
        return tokenizer
