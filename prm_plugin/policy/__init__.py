"""Proposal backends. Heavy backends are imported lazily: ``prm_plugin.policy.hf``
needs torch and transformers, ``prm_plugin.policy.vllm`` needs the ``vllm`` extra,
``prm_plugin.policy.openai`` (a served model) the ``served`` extra,
``prm_plugin.policy.evalplus`` (any EvalPlus model, whole solutions only) the ``evalplus``
extra, and none is imported until its class is first used."""

from __future__ import annotations

from typing import Any

from prm_plugin.policy.base import Policy

_LAZY = {"HFPolicy": "prm_plugin.policy.hf", "VLLMPolicy": "prm_plugin.policy.vllm",
         "OpenAIPolicy": "prm_plugin.policy.openai", "EvalPlusPolicy": "prm_plugin.policy.evalplus"}

__all__ = ["EvalPlusPolicy", "HFPolicy", "OpenAIPolicy", "Policy", "VLLMPolicy"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
