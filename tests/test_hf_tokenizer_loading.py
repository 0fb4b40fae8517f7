"""Checkpoints load the tokenizer they saved, whatever their model type.

transformers 5.x's ``AutoTokenizer`` picks the class registered for the config's
``model_type`` (``Qwen2Tokenizer`` for ``qwen2``), which re-tokenises a saved
character-level ``tokenizer.json`` without its spaces and newlines. The policy, the
PRM and the trainer must all tokenise as the saved tokenizer does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from prm_plugin.world.tokenizer import build_tokenizer, chat_prompt


def test_policy_tokenises_a_qwen2_checkpoint_as_its_saved_tokenizer(tmp_path: Path) -> None:
    from prm_plugin._hf_compat import load_tokenizer
    from prm_plugin.policy.hf import HFPolicy

    tok = build_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    text = chat_prompt(tok, "Compute 12 + 3 from left to right.") + "12 + 3 = 15\n\n"
    expected = tok(text)["input_ids"]
    assert load_tokenizer(str(tmp_path))(text)["input_ids"] == expected
    policy = HFPolicy.from_pretrained(str(tmp_path))
    assert policy.tokenizer(text)["input_ids"] == expected
    assert policy.count_tokens(text) == len(expected)
