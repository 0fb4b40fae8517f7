"""``load_prm``: one call from a checkpoint path or Hub id to a ready ``RewardModel``."""

from __future__ import annotations

from typing import Any

import torch

from prm_plugin.prm.base import RewardModel
from prm_plugin.prm.checkpoint import HUB_OPTIONS, CheckpointInfo, read_checkpoint

#: Where a PRM runs: in-process transformers, vLLM's pooling runner, or a vLLM server.
BACKENDS = ("hf", "vllm", "served")


def is_url(path: str) -> bool:
    """Whether ``load_prm`` takes ``path`` for a served PRM (``http://`` or ``https://``)."""
    return path.strip().startswith(("http://", "https://"))


def load_prm(
    path_or_hub_id: str,
    *,
    family: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    step_separator: str | None = None,
    batch_size: int = 32,
    backend: str = "hf",
    **overrides: Any,
) -> RewardModel:
    """Load a PRM, detecting its family from its config and tokenizer.

    Args:
        path_or_hub_id: a checkpoint directory or a Hugging Face Hub model id.
        family: skip detection and use this registered family (``value_head``,
            ``token_classification``, ``lm_head``, or a plugin's).
        device: ``"cuda"``, ``"cpu"``, ...; default CUDA when available.
        dtype: ``"bfloat16"``, ``"float32"``, ...; default bfloat16 on GPU, float32 on CPU.
        step_separator: the separator (or tag) the PRM expects; checked against the one
            the checkpoint records — a mismatch is an error, never a silent score.
        batch_size: rows per forward pass.
        backend: ``"hf"`` (in-process transformers scorer with a prefix KV cache) or
            ``"vllm"`` (vLLM's pooling runner, for ``token_classification`` checkpoints;
            ``prm_plugin.prm.vllm_pooling``; ``**overrides`` then go to ``vllm.LLM``), or
            ``"served"``: a vLLM server's ``/pooling`` endpoint, chosen by itself when
            ``path_or_hub_id`` is an ``http(s)://`` URL (``prm_plugin.prm.served``;
            ``**overrides`` go to ``load_served_prm``: ``tokenizer=`` a local copy of the
            checkpoint, ``model``, ``api_key``, ``max_retries``, ...).
        **overrides: ``max_batch_tokens`` (padded positions per forward pass),
            ``cache_bytes`` (prefix KV cache budget; 0 = off), ``on_overflow``
            (``truncate`` | ``skip`` | ``error``: inputs longer than the PRM's context;
            see ``prm_plugin.prm.scorer``), ``revision`` / ``token`` /
            ``cache_dir`` / ``local_files_only`` for the Hub, and family options
            (e.g. ``step_tag``, ``good_token``, ``bad_token`` for ``lm_head``,
            ``system_prompt`` for Qwen-style ``token_classification``).

    Returns:
        A ``RewardModel``: ``score([PRMQuery, ...])`` and ``count_tokens(query)``.

    Raises:
        ValueError: no family or several families recognise the checkpoint, or the
            separator / tag checks fail.

    Example::

        prm = load_prm("Qwen/Qwen2.5-Math-PRM-7B", dtype="bfloat16")
        prm.score([PRMQuery("What is 1+1?", ("1+1 = 2.", "The answer is 2."))])
    """
    from prm_plugin.plugins import get_registry

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}.")
    if is_url(path_or_hub_id) or backend == "served":
        from prm_plugin.prm.served import load_served_prm

        if not is_url(path_or_hub_id):
            raise ValueError(f"backend='served' takes the server's URL (http://host:port), not {path_or_hub_id!r}.")
        if family not in (None, "token_classification"):
            raise ValueError(f"A served PRM is a token_classification PRM on vLLM's pooling runner, not {family!r}.")
        return load_served_prm(path_or_hub_id, step_separator=step_separator, batch_size=batch_size, **overrides)
    hub = {k: overrides[k] for k in HUB_OPTIONS if k in overrides}
    info = read_checkpoint(path_or_hub_id, hub)
    if backend == "vllm":
        from prm_plugin.prm.vllm_pooling import load_vllm_prm

        if family not in (None, "token_classification"):
            raise ValueError(f"backend='vllm' serves token_classification PRMs, not family={family!r}.")
        if device not in (None, "cuda", "auto"):
            raise ValueError(f"device={device!r}: vLLM places the PRM itself; drop device= or use backend='hf'.")
        return load_vllm_prm(path_or_hub_id, info=info, step_separator=step_separator,
                             dtype=None if dtype is None else str(dtype).removeprefix("torch."), **overrides)
    registry = get_registry()
    if family is not None:
        fam = registry.get("reward_models", family)
    else:
        fam = _detect(info, registry.registrations("reward_models"))
    return fam.load(
        path_or_hub_id,
        info=info,
        device=device,
        dtype=dtype,
        step_separator=step_separator,
        batch_size=batch_size,
        **overrides,
    )


def detect_family(path_or_hub_id: str, **hub: Any) -> str:
    """The name of the registered family that recognises a checkpoint."""
    from prm_plugin.plugins import get_registry

    info = read_checkpoint(path_or_hub_id, hub)
    return str(_detect(info, get_registry().registrations("reward_models")).name)


def _detect(info: CheckpointInfo, families: dict[str, Any]) -> Any:
    matches = []
    for name, reg in sorted(families.items()):
        try:
            if reg.obj.detect(info):
                matches.append(name)
        except Exception as exc:
            raise ValueError(
                f"PRM family {name!r} (from {reg.source}) failed while inspecting {info.path!r}: {exc!r}. "
                "Pass family= to skip detection."
            ) from exc
    available = ", ".join(sorted(families)) or "(none registered: is prm-plugin installed?)"
    if not matches:
        raise ValueError(
            f"No PRM family recognises {info.path!r} ({info.describe()}). Registered families: "
            f"{available}. Pass family=<name> if you know which one it is."
        )
    if len(matches) > 1:
        raise ValueError(
            f"Several PRM families recognise {info.path!r} ({info.describe()}): {', '.join(matches)}. "
            f"Pass family=<one of them>. Registered families: {available}."
        )
    return families[matches[0]].obj
