"""livecodebench_prm: pinned-release loading, date window, prompt, PRM fields, pass@1."""

from __future__ import annotations

from typing import Any

from prm_plugin.grading import livecodebench as lcb
from prm_plugin.grading.code import last_fenced_block
from prm_plugin.task_configs import _data

TASK = "livecodebench_prm"
REPO, RELEASE, START_DATE, END_DATE = lcb.REPO, lcb.RELEASE, lcb.START_DATE, lcb.END_DATE


def load_dataset(**metadata: Any) -> Any:
    release = str(metadata.get("lcb_release_version") or RELEASE)
    start = metadata.get("lcb_start_date", START_DATE)
    end = metadata.get("lcb_end_date", END_DATE)

    def upstream() -> Any:
        import datasets
        from huggingface_hub import hf_hub_download

        files = [hf_hub_download(REPO, f, repo_type="dataset", revision=metadata.get("lcb_revision"))
                 for f in lcb.release_files(release)]
        return datasets.load_dataset("json", data_files={"test": files})

    data = _data.load(TASK, metadata, upstream)
    return data.filter(lambda doc: lcb.in_window(doc["contest_date"], start, end))


def process_docs(dataset: Any) -> Any:
    return dataset.map(lambda doc: {"prm_question": doc["question_content"], "prm_domain": "code"})


def doc_to_text(doc: dict[str, Any]) -> str:
    return lcb.doc_to_text(doc)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    return {"pass@1": float(lcb.grade_lcb(last_fenced_block(results[0]), doc))}
