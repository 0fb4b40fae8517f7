"""The world the real-vLLM test modules run on (tests/test_vllm_real.py,
tests/test_served_real.py): the shipped one, or ``PRM_PLUGIN_TEST_WORLD=DIR`` (a world
built with ``prm-plugin world build --out DIR``), with its PRM exported as a
token-classification checkpoint (the layout vLLM's pooling runner serves)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def world_paths() -> dict[str, Path]:
    root = os.environ.get("PRM_PLUGIN_TEST_WORLD")
    if not root:
        from prm_plugin import world

        return world.paths()
    base = Path(root)
    return {"policy": base / "policy", "prm": base / "prm", "arith_test": base / "arith_test.jsonl"}


def world_with_exported_prm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``world_paths()`` plus ``prm_tc``: the PRM exported for vLLM."""
    from prm_plugin.trainers.export import export_token_classification

    found = world_paths()
    exported = tmp_path_factory.mktemp("prm_tc")
    export_token_classification(str(found["prm"]), str(exported))
    return {**found, "prm_tc": exported}
