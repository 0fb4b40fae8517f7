"""LiveCodeBench's formats and grading rules, shared by the ``livecodebench_prm`` task and
``prm-plugin lcb``: the pinned dataset (``livecodebench/code_generation_lite``) and its
release files, the contest-date window, the prompt, the test cases (private ones may be
base64(zlib(pickle(JSON)))), and grading as its ``codegen_metrics`` does (LeetCode
``class Solution`` methods or stdin/stdout programs, its import prelude, 6 s per test,
tuples count as lists), in ``prm_plugin.sandbox``."""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from datetime import datetime
from typing import Any

from prm_plugin.grading.code import sandbox

REPO = "livecodebench/code_generation_lite"
RELEASE = "release_v5"
START_DATE, END_DATE = "2024-08-01", "2025-02-01"
WITH_STARTER = "You will use the following starter code to write the solution to the problem and enclose your code within delimiters."
WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, "
    "it reads the inputs, runs the algorithm and writes output to STDOUT."
)


LCB_TIMEOUT_S = 6.0  # LiveCodeBench's per-test timeout
_LCB_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                "statistics", "itertools", "functools", "operator", "io", "sys", "json")
#: The names LiveCodeBench makes available to every solution before running it.
LCB_PRELUDE = (
    "".join(f"from {m} import *\n" for m in (*_LCB_MODULES, "builtins", "typing"))
    + "".join(f"import {m}\n" for m in _LCB_MODULES)
    + "sys.setrecursionlimit(50000)\n"
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


def in_window(contest_date: str, start: str | None, end: str | None) -> bool:
    """Whether a contest date lies in [start, end] (either bound may be None)."""
    day = datetime.fromisoformat(str(contest_date)).date()
    if start and day < datetime.fromisoformat(str(start)).date():
        return False
    return not (end and day > datetime.fromisoformat(str(end)).date())


def doc_to_text(doc: dict[str, Any]) -> str:
    prompt = f"### Question:\n{doc['question_content']}\n\n"
    if doc.get("starter_code"):
        prompt += f"### Format: {WITH_STARTER}\n```python\n{doc['starter_code']}\n```\n\n"
    else:
        prompt += f"### Format: {WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "### Answer: (use the provided format with backticks)\n\n"


def lcb_tests(doc: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None]:
    """(kind, tests, func_name) of a ``code_generation_lite`` row: public + private."""
    public = json.loads(doc["public_test_cases"] or "[]")
    private = decode_private_tests(doc.get("private_test_cases") or "")
    tests = public + private
    if not tests:
        raise ValueError(f"LiveCodeBench problem {doc.get('question_id')} has no test cases")
    func_name = json.loads(doc.get("metadata") or "{}").get("func_name")
    kind = "functional" if tests[0].get("testtype") == "functional" else "stdio"
    if kind == "functional":
        cases = [{"input": [json.loads(line) for line in t["input"].split("\n")], "output": json.loads(t["output"])}
                 for t in tests]
    else:
        cases = [{"input": t["input"], "output": t["output"]} for t in tests]
    return kind, cases, func_name


def decode_private_tests(blob: str) -> list[dict[str, Any]]:
    """Private tests are JSON, or base64(zlib(pickle(JSON string))). The pickle is
    read with an unpickler that refuses every global, so only plain data loads."""
    if not blob:
        return []
    try:
        return list(json.loads(blob))
    except ValueError:
        pass
    raw = zlib.decompress(base64.b64decode(blob.encode("utf-8")))
    data = _DataOnlyUnpickler(io.BytesIO(raw)).load()
    return list(json.loads(data) if isinstance(data, str) else data)


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"LiveCodeBench tests may hold plain data only, not {module}.{name}")


def grade_lcb(code: str, doc: dict[str, Any]) -> bool:
    """LiveCodeBench pass: every public and private test passes."""
    if not code.strip():
        return False
    kind, cases, func_name = lcb_tests(doc)
    program = LCB_PRELUDE + "\n" + code
    sb = sandbox()
    if kind == "functional":
        if not func_name:
            raise ValueError(f"functional LiveCodeBench problem {doc.get('question_id')} has no metadata.func_name")
        entry = f"Solution.{func_name}" if "class Solution" in code else func_name
        verdict = sb.check_solution(program, cases, kind="functional", entry_point=entry,
                                    timeout_per_test_s=LCB_TIMEOUT_S, compare="lcb")
    else:
        verdict = sb.check_solution(program, cases, kind="stdio", timeout_per_test_s=LCB_TIMEOUT_S)
    return bool(verdict.passed)
