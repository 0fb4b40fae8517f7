"""Models for the policy tests, and tests that they behave as designed.

* ``random_lm``: a random-init Qwen2 (untied, wider init so greedy output varies with
  the context) — for invariance and equivalence tests of the real RoPE/KV path.
* ``scripted_lm``: a GPT-2 whose output depends only on the absolute position, set by
  hand so that at position ``p`` it predicts ``script[p + 1]`` with near-certainty. Any
  prompt made of the first ``L`` script tokens is continued by exactly ``script[L:]``,
  which makes stops, EOS and counts exact; it also checks positions under padding
  (a wrong position id would emit the wrong token).
"""

from __future__ import annotations

import torch
from tiny import tiny_qwen2_config, train_tokenizer
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

SCRIPT = "Let x = 2.\n\nSo def add(a, b):\n    return a + b\n\nThe answer is 14"


def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer()


def random_lm(seed: int = 0, tok: PreTrainedTokenizerFast | None = None) -> AutoModelForCausalLM:
    tok = tok or tokenizer()
    torch.manual_seed(seed)
    config = tiny_qwen2_config(
        len(tok), tie_word_embeddings=False, initializer_range=0.2,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return AutoModelForCausalLM.from_config(config).eval()


def scripted_lm(script_ids: list[int], tok: PreTrainedTokenizerFast, seed: int = 0) -> GPT2LMHeadModel:
    """A GPT-2 that emits ``script_ids[p + 1]`` at position ``p`` (see the module doc)."""
    d = 64
    config = GPT2Config(
        vocab_size=len(tok), n_positions=len(script_ids) + 8, n_embd=d, n_layer=1, n_head=2,
        tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # the token carries no signal: position does
        for block in model.transformer.h:  # blocks add nothing to the residual stream
            block.attn.c_proj.weight.zero_()
            block.attn.c_proj.bias.zero_()
            block.mlp.c_proj.weight.zero_()
            block.mlp.c_proj.bias.zero_()
        wpe = torch.randn(config.n_positions, d)
        model.transformer.wpe.weight.copy_(wpe)
        normed = torch.nn.functional.layer_norm(wpe, (d,))  # ln_f starts as the identity affine
        head = torch.zeros(len(tok), d)
        for p in range(len(script_ids) - 1):
            head[script_ids[p + 1]] += 60.0 * normed[p] / d
        model.lm_head.weight.copy_(head)
    return model


def test_scripted_lm_continues_the_script_from_any_point() -> None:
    tok = tokenizer()
    ids = tok(SCRIPT)["input_ids"]
    model = scripted_lm(ids, tok)
    for cut in (1, 5, 12):
        out = model.generate(torch.tensor([ids[:cut]]), do_sample=False, max_new_tokens=6,
                             eos_token_id=None, pad_token_id=tok.pad_token_id)
        assert out[0, cut:].tolist() == ids[cut : cut + 6]


def test_random_lm_greedy_depends_on_context() -> None:
    tok = tokenizer()
    model = random_lm(0, tok)
    outs = set()
    for prompt in ("Step 1:", "def add", "x = [1"):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        out = model.generate(ids, do_sample=False, max_new_tokens=8, eos_token_id=None,
                             pad_token_id=tok.pad_token_id)
        tail = out[0, ids.shape[1]:].tolist()
        assert len(set(tail)) > 1  # not one token repeated
        outs.add(tuple(tail))
    assert len(outs) == 3
