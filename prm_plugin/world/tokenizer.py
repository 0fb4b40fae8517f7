"""The world's tokenizer: a small byte-level BPE in exactly the Qwen2 format.

Byte-level BPE over Qwen2's pre-tokenizer (its split regex, which keeps every digit a
token of its own, so arithmetic stays learnable by a tiny model), NFC normalisation and
the byte-level decoder, saved as a ``Qwen2Tokenizer``. Every stock loader therefore reads
it the same way: ``AutoTokenizer`` (which rebuilds a ``Qwen2Tokenizer`` from the vocab and
merges), ``PreTrainedTokenizerFast`` and ``tokenizers.Tokenizer`` (which read
``tokenizer.json``), lm-eval's ``hf`` model and vLLM. The merges are trained on a fixed
corpus from the world's generator, so ``build_tokenizer()`` gives the same ids every time
(a test checks the shipped checkpoints against it).
"""

from __future__ import annotations

import functools
import random
from typing import Any

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIALS = (PAD, IM_START, IM_END)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: 256 byte tokens + 3 special tokens + merges.
VOCAB_SIZE = 448
CORPUS_SIZE, CORPUS_SEED = 3000, 7


def corpus(n: int = CORPUS_SIZE, seed: int = CORPUS_SEED) -> list[str]:
    """World text to learn merges from: questions and (noisy) solutions of both domains,
    and the chat roles."""
    from prm_plugin.world.generator import (
        DOMAINS,
        Difficulty,
        ErrorModel,
        render_solution,
        sample_problem,
        sample_solution,
    )

    rng, difficulty, errors = random.Random(seed), Difficulty(), ErrorModel()
    texts = []
    for i in range(n):
        problem = sample_problem(rng, DOMAINS[i % len(DOMAINS)], difficulty, f"tok-{i}")
        texts.append(f"user\n{problem.question}\n")
        texts.append("assistant\n" + "\n\n".join(render_solution(problem, sample_solution(problem, rng, errors))))
    return texts


@functools.lru_cache(maxsize=1)
def _trained() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE's vocab and merges, trained once per process."""
    """Train the world's BPE (deterministic) and return it as a ``Qwen2Tokenizer``."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    bpe.train_from_iterator(corpus(), trainer=trainer)
    return bpe.get_vocab(), _merges(bpe)


def build_tokenizer() -> Any:
    """Train the world's BPE (deterministic) and return it as a ``Qwen2Tokenizer``."""
    from transformers.models.qwen2 import tokenization_qwen2

    vocab, merges = _trained()
    qwen2: Any = tokenization_qwen2.Qwen2Tokenizer  # its stubs type merges as strings; it takes pairs too
    tok = qwen2(vocab=dict(vocab), merges=list(merges), unk_token=None, eos_token=IM_END, pad_token=PAD,
                bos_token=None, additional_special_tokens=[IM_START])
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = 512
    return tok


def _merges(bpe: Any) -> list[tuple[str, str]]:
    import json

    pairs: list[tuple[str, str]] = []
    for m in json.loads(bpe.to_str())["model"]["merges"]:
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        pairs.append((left, right))
    return pairs


def load_tokenizer(path: Any = None) -> Any:
    """The shipped policy's tokenizer (or the one saved at ``path``), as ``AutoTokenizer`` loads it."""
    from transformers import AutoTokenizer

    from prm_plugin.world import paths

    return AutoTokenizer.from_pretrained(str(path or paths()["policy"]))


def chat_prompt(tokenizer: Any, question: str) -> str:
    """The policy prompt for a question (generation prompt appended)."""
    return str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    )
