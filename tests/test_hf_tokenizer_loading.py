"""Checkpoints load the tokenizer they saved, whatever their model type.

transformers 5.x's ``AutoTokenizer`` picks the class registered for the config's
``model_type`` (``Qwen2Tokenizer`` for ``qwen2``), which re-tokenises a saved
character-level ``tokenizer.json`` without its spaces and newlines. Third-party
checkpoints whose ``tokenizer_config.json`` names the generic fast class (as the world's
first, character-level tokenizer did) must still tokenise as saved in the policy, the PRM
and the trainer (``prm_plugin._hf_compat.load_tokenizer``).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

from prm_plugin.world.tokenizer import CHAT_TEMPLATE, chat_prompt


def _char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable character, saved with the generic fast class."""
    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>", *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def test_policy_tokenises_a_qwen2_checkpoint_as_its_saved_tokenizer(tmp_path: Path) -> None:
    from prm_plugin._hf_compat import load_tokenizer
    from prm_plugin.policy.hf import HFPolicy

    tok = _char_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    text = chat_prompt(tok, "Compute 12 + 3 from left to right.") + "12 + 3 = 15\n\n"
    expected = tok(text)["input_ids"]
    assert len(expected) == len(text) - len("<|im_start|>") * 2 - len("<|im_end|>") + 3  # one per character
    assert load_tokenizer(str(tmp_path))(text)["input_ids"] == expected
    policy = HFPolicy.from_pretrained(str(tmp_path))
    assert policy.tokenizer(text)["input_ids"] == expected
    assert policy.count_tokens(text) == len(expected)
