"""A kit of tiny models built locally: a tokenizer trained with ``tokenizers`` and
random-init Qwen2 models from configs, saved with ``save_pretrained`` so tests load
them through the real ``from_pretrained`` paths. Nothing comes from the Hub."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config

EOS = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL = [EOS, IM_START, IM_END]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "Step 1: 3 + 4 = 7\n\nStep 2: 7 * 2 = 14\n\nThe answer is \\boxed{14}",
    "def add(a, b):\n    return a + b\n\nprint(add(1, 2))",
    "Question: what is 12 - 5? Let's think step by step.\n\n12 - 5 = 7",
    "x = [1, 2, 3]\n\nfor i in x:\n    print(i * i)",
    "The quick brown fox jumps over the lazy dog. Solve for x: 2x + 1 = 5, x = 2.",
    "if n % 2 == 0:\n    return 'even'\nelse:\n    return 'odd'",
]


def train_tokenizer(extra_special: list[str] | None = None, vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a small math/code corpus.

    ``extra_special`` become single added tokens (e.g. ``<extra_0>`` or ``ки``).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, bos_token=None, unk_token=None
    )
    if extra_special:
        fast.add_tokens(list(extra_special), special_tokens=False)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_qwen2_config(vocab_size: int, **overrides: object) -> Qwen2Config:
    kwargs: dict[str, object] = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    kwargs.update(overrides)
    return Qwen2Config(**kwargs)


def build_causal_lm(path: Path, seed: int = 0) -> Path:
    """Save a random-init Qwen2 causal LM with its tokenizer under ``path``."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = train_tokenizer()
    torch.manual_seed(seed)
    config = tiny_qwen2_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_value_head_prm(path: Path, seed: int = 0, step_separator: str = "\n\n",
                         **config_overrides: object) -> Path:
    """Save a random-init value-head PRM (Qwen2 backbone) with its tokenizer.

    ``config_overrides`` go to the backbone config (e.g. ``initializer_range=0.1`` for
    scores that spread over [0, 1] instead of sitting near 0.5)."""
    import torch

    from prm_plugin.prm.value_head_model import ValueHeadPRM, ValueHeadPRMConfig

    tokenizer = train_tokenizer()
    torch.manual_seed(seed)
    config = ValueHeadPRMConfig(
        backbone_config=tiny_qwen2_config(len(tokenizer), **config_overrides),
        step_separator=step_separator,
    )
    model = ValueHeadPRM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_qwen_math_prm(path: Path, seed: int = 0, init_std: float = 0.1) -> Path:
    """Save a Qwen2.5-Math-PRM-shaped checkpoint: config ``architectures`` and remote
    ``auto_map`` as on the Hub, weights ``model.*`` + ``score.0.*`` / ``score.2.*``
    (Linear, ReLU, Linear), a tokenizer with ``<extra_0>`` and a chat template."""
    import json

    import torch
    from safetensors.torch import save_file
    from torch import nn
    from transformers import Qwen2Model

    tokenizer = train_tokenizer(["<extra_0>"])
    torch.manual_seed(seed)
    config = tiny_qwen2_config(len(tokenizer), initializer_range=init_std)
    backbone = Qwen2Model(config)
    hidden = config.hidden_size
    score = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    for layer in (score[0], score[2]):
        nn.init.normal_(layer.weight, std=init_std)
    state = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    state.update({f"score.{k}": v.contiguous() for k, v in score.state_dict().items()})
    path.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    raw = config.to_dict()
    raw["architectures"] = ["Qwen2ForProcessRewardModel"]
    raw["auto_map"] = {
        "AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
        "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel",
    }
    (path / "config.json").write_text(json.dumps(raw, indent=2))
    tokenizer.save_pretrained(path)
    return path


def build_token_classification_prm(path: Path, seed: int = 0, step_separator: str | None = "\n",
                                   init_std: float = 0.1) -> Path:
    """Save a TRL-style 2-label ``Qwen2ForTokenClassification`` PRM; ``step_separator``
    is recorded in ``prm_config.json`` (None records nothing, as TRL itself does)."""
    import json

    import torch
    from transformers import AutoModelForTokenClassification

    tokenizer = train_tokenizer()
    torch.manual_seed(seed)
    config = tiny_qwen2_config(len(tokenizer), num_labels=2, initializer_range=init_std)
    model = AutoModelForTokenClassification.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if step_separator is not None:
        (path / "prm_config.json").write_text(json.dumps({"step_separator": step_separator}))
    return path


def build_math_shepherd_prm(path: Path, seed: int = 0, tag: str = " ки", init_std: float = 0.1) -> Path:
    """Save a Math-Shepherd-style causal-LM PRM whose tokenizer has ``tag`` as one token."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = train_tokenizer([tag])
    torch.manual_seed(seed)
    config = tiny_qwen2_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id, initializer_range=init_std)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
