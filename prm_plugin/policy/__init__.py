"""Proposal backends. Heavy backends are imported lazily: ``prm_plugin.policy.hf``
needs torch and transformers, ``prm_plugin.policy.vllm`` needs the ``vllm`` extra."""

from prm_plugin.policy.base import Policy

__all__ = ["Policy"]
