"""What ``load_prm`` knows about a checkpoint before loading it, and shared load options.

``CheckpointInfo`` is what every family's ``detect(info)`` receives: the raw
``config.json``, the optional ``prm_config.json`` (the step separator / tag travel
there or in the config), the tokenizer, and the weight names (read lazily from the
safetensors header or index, without loading weights). Paths and Hub ids both work
through the normal Hugging Face cache.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from prm_plugin._hf_compat import load_tokenizer

PRM_CONFIG_NAME = "prm_config.json"

#: Options every family's ``load`` accepts on top of its own (see ``StepScorer``).
SCORER_OPTIONS = ("batch_size", "max_batch_tokens", "cache_bytes", "on_overflow")
#: Options passed to ``from_pretrained`` / file resolution.
HUB_OPTIONS = ("revision", "token", "cache_dir", "local_files_only")


@dataclass
class CheckpointInfo:
    """A checkpoint as seen by ``detect``.

    Attributes:
        path: the local directory or Hub id given to ``load_prm``.
        config: ``config.json`` as a dict.
        prm_config: ``prm_config.json`` as a dict (empty when absent).
        tokenizer: the checkpoint's tokenizer (None when it has none).
        hub_kwargs: ``revision`` / ``token`` / ... to pass on to ``from_pretrained``.
    """

    path: str
    config: dict[str, Any]
    prm_config: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None
    hub_kwargs: dict[str, Any] = field(default_factory=dict)
    _weights: set[str] | None = None

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    @property
    def architectures(self) -> list[str]:
        return list(self.config.get("architectures") or [])

    def setting(self, key: str) -> Any:
        """``key`` from prm_config.json, else from config.json, else None."""
        if key in self.prm_config:
            return self.prm_config[key]
        return self.config.get(key)

    def weight_names(self) -> set[str]:
        """Parameter names stored in the checkpoint (empty if only .bin weights)."""
        if self._weights is None:
            self._weights = _read_weight_names(self.path, self.hub_kwargs)
        return self._weights

    def describe(self) -> str:
        return f"model_type={self.model_type!r}, architectures={self.architectures}"


def read_checkpoint(path: str, hub_kwargs: Mapping[str, Any] | None = None) -> CheckpointInfo:
    """Read config.json, prm_config.json and the tokenizer of ``path`` (dir or Hub id)."""
    kw = dict(hub_kwargs or {})
    try:
        config_file = _resolve(path, "config.json", kw)
    except OSError as exc:  # neither a directory nor a valid / reachable Hub id
        config_file, reason = None, f" ({exc})"
    else:
        reason = ""
    if config_file is None:
        raise FileNotFoundError(
            f"No config.json found for PRM {path!r}{reason}. Pass a checkpoint directory (saved "
            "with save_pretrained) or a Hugging Face Hub model id."
        )
    with open(config_file, encoding="utf-8") as fh:
        config = json.load(fh)
    prm_file = _resolve(path, PRM_CONFIG_NAME, kw)
    prm_config: dict[str, Any] = {}
    if prm_file is not None:
        with open(prm_file, encoding="utf-8") as fh:
            prm_config = json.load(fh)
    try:
        tokenizer = load_tokenizer(path, kw)
    except (OSError, ValueError):
        tokenizer = None
    return CheckpointInfo(str(path), config, prm_config, tokenizer, kw)


def require_tokenizer(info: CheckpointInfo, family: str) -> Any:
    if info.tokenizer is None:
        raise ValueError(
            f"PRM {info.path!r} has no tokenizer files; the {family} family needs the tokenizer the "
            "PRM was trained with. Save it next to the weights (tokenizer.save_pretrained(path))."
        )
    return info.tokenizer


def split_options(family: str, options: Mapping[str, Any], own: Iterable[str] = ()) -> tuple[dict, dict, dict]:
    """Split ``load`` options into (scorer, hub, family-specific) and reject unknown ones."""
    own = tuple(own)
    valid = (*SCORER_OPTIONS, *HUB_OPTIONS, *own)
    unknown = [k for k in options if k not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=2, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown option {unknown[0]!r} for PRM family {family!r}.{hint} Valid options: "
            f"device, dtype, step_separator, {', '.join(valid)}."
        )
    scorer = {k: v for k, v in options.items() if k in SCORER_OPTIONS}
    hub = {k: v for k, v in options.items() if k in HUB_OPTIONS}
    return scorer, hub, {k: v for k, v in options.items() if k in own}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as given, else CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` as given; by default bfloat16 on a GPU that supports it, else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}. Use one of: auto, {', '.join(_DTYPES)}.")
    return _DTYPES[dtype]


def place(model: Any, device: torch.device) -> Any:
    """Move a loaded model to ``device`` and switch it to eval mode."""
    model.to(device)
    model.eval()
    return model


def max_positions(config: Any) -> int | None:
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(cfg, "max_position_embeddings", None)
    return int(value) if value else None


def _resolve(path: str, filename: str, kw: Mapping[str, Any]) -> str | None:
    from transformers.utils import cached_file

    return cached_file(
        path, filename, _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False, **kw,
    )


def _read_weight_names(path: str, kw: Mapping[str, Any]) -> set[str]:
    index = _resolve(path, "model.safetensors.index.json", kw)
    if index is not None:
        with open(index, encoding="utf-8") as fh:
            return set(json.load(fh).get("weight_map", {}))
    single = _resolve(path, "model.safetensors", kw)
    if single is None:
        return set()
    from safetensors import safe_open

    with safe_open(single, framework="pt") as fh:
        return set(fh.keys())
