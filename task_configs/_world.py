"""The synthetic world's tasks (arith_prm, codelike_prm): the shipped problem sets of
``prm_plugin.world``. A completion is right when its last ``\\boxed{}`` answer is
math-verify-equivalent to the true answer (the grading path of ``math500_prm``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prm_plugin.task_configs import _data


def load(task: str, world_set: str, metadata: Mapping[str, Any]) -> Any:
    """The shipped set ``world_set`` (or a local override) as a DatasetDict."""

    def shipped() -> Any:
        import datasets

        from prm_plugin import world

        path = world.paths()[world_set]
        if not path.is_file():
            raise FileNotFoundError(
                f"{task}: the world's problem set {path} is missing; rebuild the world "
                f"(`prm-plugin world build`) or set {_data.ENV_PREFIX}{task.upper()} to a JSONL file."
            )
        return datasets.load_dataset("json", data_files={"test": str(path)})

    return _data.load(task, metadata, shipped)


def process_docs(dataset: Any, domain: str) -> Any:
    """PRM fields, and the world's recommended search temperature (``prm_temperature``):
    ``prm_guided`` samples at it unless ``temperature=`` is in model_args; the task's
    gen_kwargs stay greedy, so a stock ``--model hf`` run is the greedy baseline."""
    from prm_plugin.world.evaluate import SAMPLE_TEMPERATURE

    return dataset.map(lambda doc: {"prm_question": doc["question"], "prm_domain": domain,
                                    "prm_temperature": SAMPLE_TEMPERATURE})


def score(doc: dict[str, Any], completion: str) -> dict[str, float]:
    from prm_plugin.answers import MathAnswerKey, last_boxed

    return {"acc": float(MathAnswerKey.equivalent(last_boxed(completion), str(doc["answer"])))}
