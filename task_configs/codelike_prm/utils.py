"""codelike_prm: the world's codelike_test set, PRM fields and accuracy (see the YAML)."""

from __future__ import annotations

from typing import Any

from prm_plugin.task_configs import _world

TASK = "codelike_prm"


def load_dataset(**metadata: Any) -> Any:
    return _world.load(TASK, "codelike_test", metadata)


def process_docs(dataset: Any) -> Any:
    # The answer is the number the solution writes in \\boxed{} (the program's output), so
    # votes are keyed like math answers; steps split at blank lines in both domains.
    return _world.process_docs(dataset, "math")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    return _world.score(doc, results[0])
