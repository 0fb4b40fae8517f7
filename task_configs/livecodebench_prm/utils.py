"""livecodebench_prm: pinned-release loading, date window, prompt, PRM fields, pass@1."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from task_configs import _code, _data

TASK = "livecodebench_prm"
REPO = "livecodebench/code_generation_lite"
RELEASE = "release_v5"
START_DATE, END_DATE = "2024-08-01", "2025-02-01"
WITH_STARTER = "You will use the following starter code to write the solution to the problem and enclose your code within delimiters."
WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, "
    "it reads the inputs, runs the algorithm and writes output to STDOUT."
)


def release_files(release: str) -> list[str]:
    """The JSONL files of a release: ``release_vN`` is cumulative (test.jsonl ..
    testN.jsonl), ``vN`` is that release's additions only."""
    name = release.removeprefix("release_")
    if name == "latest":
        name = "v6"
    if not (name.startswith("v") and name[1:].isdigit() and int(name[1:]) >= 1):
        raise ValueError(f"Unknown LiveCodeBench release {release!r}; use release_v1 .. release_v6 or v1 .. v6.")
    n = int(name[1:])
    files = [f"test{i}.jsonl" if i > 1 else "test.jsonl" for i in range(1, n + 1)]
    return files if release.startswith("release_") else files[-1:]


def load_dataset(**metadata: Any) -> Any:
    release = str(metadata.get("lcb_release_version") or RELEASE)
    start = metadata.get("lcb_start_date", START_DATE)
    end = metadata.get("lcb_end_date", END_DATE)

    def upstream() -> Any:
        import datasets
        from huggingface_hub import hf_hub_download

        files = [hf_hub_download(REPO, f, repo_type="dataset", revision=metadata.get("lcb_revision"))
                 for f in release_files(release)]
        return datasets.load_dataset("json", data_files={"test": files})

    data = _data.load(TASK, metadata, upstream)
    return data.filter(lambda doc: in_window(doc["contest_date"], start, end))


def in_window(contest_date: str, start: str | None, end: str | None) -> bool:
    """Whether a contest date lies in [start, end] (either bound may be None)."""
    day = datetime.fromisoformat(str(contest_date)).date()
    if start and day < datetime.fromisoformat(str(start)).date():
        return False
    return not (end and day > datetime.fromisoformat(str(end)).date())


def process_docs(dataset: Any) -> Any:
    return dataset.map(lambda doc: {"prm_question": doc["question_content"], "prm_domain": "code"})


def doc_to_text(doc: dict[str, Any]) -> str:
    prompt = f"### Question:\n{doc['question_content']}\n\n"
    if doc.get("starter_code"):
        prompt += f"### Format: {WITH_STARTER}\n```python\n{doc['starter_code']}\n```\n\n"
    else:
        prompt += f"### Format: {WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "### Answer: (use the provided format with backticks)\n\n"


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    return {"pass@1": float(_code.grade_lcb(_code.last_fenced_block(results[0]), doc))}
