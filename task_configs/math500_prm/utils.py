"""math500_prm: data loading, PRM fields and metrics (see math500_prm.yaml)."""

from __future__ import annotations

from typing import Any

from prm_plugin.grading import math as _math
from prm_plugin.task_configs import _data

TASK = "math500_prm"
DATASET = "HuggingFaceH4/MATH-500"


def load_dataset(**metadata: Any) -> Any:
    import datasets

    return _data.load(TASK, metadata, lambda: datasets.load_dataset(DATASET))


def process_docs(dataset: Any) -> Any:
    return dataset.map(lambda doc: {"prm_question": doc["problem"], "prm_domain": "math"})


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    return _math.score(results[0], doc["answer"])
