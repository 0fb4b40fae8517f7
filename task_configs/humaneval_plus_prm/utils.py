"""humaneval_plus_prm: data loading, EvalPlus prompt, PRM fields and pass@1 (see the YAML)."""

from __future__ import annotations

from typing import Any

from prm_plugin.grading import humaneval
from prm_plugin.task_configs import _data

TASK = "humaneval_plus_prm"
DATASET = "evalplus/humanevalplus"
INSTRUCTION = (
    "Please provide a self-contained Python script that solves the following problem in a markdown code block:"
)


def load_dataset(**metadata: Any) -> Any:
    import datasets

    return _data.load(TASK, metadata, lambda: datasets.load_dataset(DATASET))


def process_docs(dataset: Any) -> Any:
    return dataset.map(lambda doc: {"prm_question": doc["prompt"], "prm_domain": "code"})


def doc_to_text(doc: dict[str, Any]) -> str:
    return f"{INSTRUCTION}\n```\n{doc['prompt'].strip()}\n```\n"


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    program = humaneval.humaneval_program(results[0], doc["prompt"], doc["entry_point"])
    tests = humaneval.humaneval_tests(doc["test"])
    return {"pass@1": float(humaneval.grade_humaneval(program, doc["entry_point"], tests))}
