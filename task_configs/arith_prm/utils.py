"""arith_prm: the world's arith_test set, PRM fields and accuracy (see the YAML)."""

from __future__ import annotations

from typing import Any

from prm_plugin.task_configs import _world

TASK = "arith_prm"


def load_dataset(**metadata: Any) -> Any:
    return _world.load(TASK, "arith_test", metadata)


def process_docs(dataset: Any) -> Any:
    return _world.process_docs(dataset, "math")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    return _world.score(doc, results[0])
