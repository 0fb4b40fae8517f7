"""Small shims over transformers API renames, so one code path works across releases."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from transformers.modeling_outputs import BaseModelOutputWithPast

#: The keyword a model's forward takes for its KV cache ("cache" since transformers 5.x,
#: "past_key_values" before).
CACHE_KW = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned, whatever the release calls it."""
    if isinstance(output, dict):  # ModelOutput is an OrderedDict
        return next((output[k] for k in ("cache", "past_key_values") if output.get(k) is not None), None)
    return getattr(output, CACHE_KW, None)


def load_tokenizer(path: str, hub_kwargs: Mapping[str, Any] | None = None) -> Any:
    """The tokenizer class the checkpoint saved, so text tokenises as it did in training.

    A checkpoint whose ``tokenizer_config.json`` names the generic fast class
    (``TokenizersBackend`` / ``PreTrainedTokenizerFast``) loads exactly its
    ``tokenizer.json``: ``AutoTokenizer`` (transformers 5.x) would instead pick the class
    registered for the config's ``model_type`` (e.g. ``Qwen2Tokenizer`` for ``qwen2``),
    which rebuilds the pre-tokenizer and can split text differently (a character-level
    tokenizer loses its spaces and newlines that way).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    from transformers.utils import cached_file

    kw = dict(hub_kwargs or {})
    hub = {k: v for k, v in kw.items() if k in ("revision", "token", "cache_dir", "local_files_only")}
    config_file = cached_file(path, "tokenizer_config.json", _raise_exceptions_for_missing_entries=False,
                              _raise_exceptions_for_connection_errors=False, **hub)
    saved_class = None
    if config_file is not None:
        with open(config_file, encoding="utf-8") as fh:
            saved_class = json.load(fh).get("tokenizer_class")
    if saved_class in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        return PreTrainedTokenizerFast.from_pretrained(path, **hub)
    return AutoTokenizer.from_pretrained(path, **kw)
