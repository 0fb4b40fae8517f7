"""Small shims over transformers API renames, so one code path works across releases."""

from __future__ import annotations

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
