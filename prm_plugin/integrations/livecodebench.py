"""LiveCodeBench code generation in its own formats: problems, prompts, outputs, grading.

Problems are rows of ``livecodebench/code_generation_lite`` (``question_id``,
``question_content``, ``starter_code``, ``contest_date``, ``public_test_cases`` (JSON),
``private_test_cases`` (JSON, or base64 of zlib of a pickled JSON string), ``metadata``
(JSON with ``func_name`` for LeetCode-style problems), ...). They come from the release's
JSONL files, fetched with ``huggingface_hub`` (the dataset's loading script is never
run), or from local JSONL files in the same format.

Pickle: upstream stores most private tests pickled. They are decoded only for files
that ``huggingface_hub`` placed in its cache for the pinned repository
(``livecodebench/code_generation_lite``), or for local files when the caller passes
``trust_pickle=True`` (``--trust-pickle``). Even then the unpickler accepts plain data
only (``prm_plugin.grading.livecodebench.decode_private_tests`` refuses every global).

Grading follows LiveCodeBench's ``codegen_metrics`` semantics, in ``prm_plugin.sandbox``:
a solution passes when every public and private test passes; stdin/stdout programs and
LeetCode-style functional tests (``class Solution`` + ``func_name``); LiveCodeBench's
import prelude and 6 s per test (``prm_plugin.grading.livecodebench.grade_lcb``). pass@k uses the
unbiased estimator LiveCodeBench and EvalPlus share.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prm_plugin.grading import livecodebench as lcb
from prm_plugin.grading.code import last_fenced_block

logger = logging.getLogger(__name__)

REPO = lcb.REPO
DEFAULT_RELEASE = lcb.RELEASE
#: LiveCodeBench's generic system message (``PromptConstants.SYSTEM_MESSAGE_GENERIC``).
SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will "
    "generate a correct Python program that matches the specification and passes all tests."
)
REQUIRED_FIELDS = ("question_id", "question_content", "contest_date", "starter_code", "public_test_cases",
                   "private_test_cases", "metadata")


class UntrustedPickleError(ValueError):
    """A local file holds pickled private tests and ``trust_pickle`` is off."""


@dataclass
class Source:
    """Where problems come from.

    Attributes:
        release: ``release_v1`` .. ``release_v6`` (cumulative), ``v1`` .. ``v6`` (one
            release's additions) or ``release_latest``.
        start_date / end_date: keep problems whose ``contest_date`` lies in the window
            (``YYYY-MM-DD``, inclusive; None = open).
        data_files: local JSONL files to read instead of the Hub.
        revision: the Hub revision (commit) to pin; None = the default branch.
        cache_dir: the ``huggingface_hub`` cache (None = its default).
        trust_pickle: decode pickled private tests in ``data_files`` too.
    """

    release: str = DEFAULT_RELEASE
    start_date: str | None = None
    end_date: str | None = None
    data_files: Sequence[str] | None = None
    revision: str | None = None
    cache_dir: str | None = None
    trust_pickle: bool = False


def hub_cache_root(cache_dir: str | None = None) -> Path:
    """The folder ``huggingface_hub`` keeps this dataset's files in."""
    from huggingface_hub import constants

    root = Path(cache_dir or constants.HF_HUB_CACHE)
    return root / ("datasets--" + REPO.replace("/", "--"))


def is_hub_file(path: str | Path, cache_dir: str | None = None) -> bool:
    """Whether ``path`` (symlinks resolved) lies in the Hub cache of the pinned repository."""
    root = hub_cache_root(cache_dir).resolve()
    return Path(path).resolve().is_relative_to(root)


def hub_files(source: Source) -> list[str]:
    """Download (or find in the cache) the release's JSONL files."""
    from huggingface_hub import hf_hub_download

    return [hf_hub_download(REPO, name, repo_type="dataset", revision=source.revision, cache_dir=source.cache_dir)
            for name in lcb.release_files(source.release)]


def load_problems(source: Source) -> list[dict[str, Any]]:
    """The problems of ``source`` in file order, inside the date window, checked.

    Raises:
        FileNotFoundError: a local file does not exist.
        ValueError: a row lacks a field, or a file is not JSONL.
        UntrustedPickleError: a local file holds pickled private tests and
            ``source.trust_pickle`` is off.
    """
    files = list(source.data_files) if source.data_files else hub_files(source)
    problems: list[dict[str, Any]] = []
    for path in files:
        trusted = source.trust_pickle or is_hub_file(path, source.cache_dir)
        for row in _read_jsonl(path):
            if not lcb.in_window(row["contest_date"], source.start_date, source.end_date):
                continue
            if not trusted and _is_pickled(row.get("private_test_cases") or ""):
                raise UntrustedPickleError(
                    f"{path}: the private tests of problem {row['question_id']} are pickled, and this file is not "
                    f"the Hub copy of {REPO}. Unpickling a file you did not get from the pinned dataset can run "
                    "arbitrary code; pass --trust-pickle (trust_pickle=True) if you trust it, or load from the Hub."
                )
            problems.append(row)
    ids = [str(p["question_id"]) for p in problems]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"question_id(s) {', '.join(duplicates)} appear more than once in {files}.")
    return problems


def _read_jsonl(path: str) -> Iterable[dict[str, Any]]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"LiveCodeBench data file {path} does not exist.")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({exc}).") from None
            missing = [k for k in REQUIRED_FIELDS if k not in row]
            if missing:
                raise ValueError(
                    f"{path}:{lineno}: missing field(s) {', '.join(missing)}; expected rows of {REPO} "
                    f"({', '.join(REQUIRED_FIELDS)}, ...)."
                )
            yield row


def _is_pickled(blob: str) -> bool:
    if not blob:
        return False
    try:
        json.loads(blob)
        return False
    except ValueError:
        return True


# -- prompts and extraction ------------------------------------------------------------
def user_prompt(problem: dict[str, Any]) -> str:
    """LiveCodeBench's generic question template (``### Question`` / ``### Format`` / ``### Answer``)."""
    return str(lcb.doc_to_text(problem))


def policy_prompt(problem: dict[str, Any], tokenizer: Any = None, use_chat_template: bool = True) -> str:
    """The text the policy continues: LiveCodeBench's system message and question through the
    tokenizer's chat template, or both as plain text for a model without one."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": user_prompt(problem)}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return f"{SYSTEM_MESSAGE}\n\n{user_prompt(problem)}"


def extract_code(output: str) -> str:
    """LiveCodeBench's extraction for chat models: the lines between the last two ``` lines."""
    return last_fenced_block(output)


# -- grading -------------------------------------------------------------------------
def grade(problems: Sequence[dict[str, Any]], code_lists: Sequence[Sequence[str]],
          workers: int | None = None) -> list[list[bool]]:
    """Per problem, one verdict per code (every public and private test passes)."""
    if len(problems) != len(code_lists):
        raise ValueError(f"{len(code_lists)} code lists for {len(problems)} problems.")
    jobs = [(i, code) for i, codes in enumerate(code_lists) for code in codes]
    with ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1), thread_name_prefix="lcb-grade") as pool:
        verdicts = list(pool.map(lambda job: lcb.grade_lcb(job[1], problems[job[0]]), jobs))
    out: list[list[bool]] = [[] for _ in problems]
    for (i, _), ok in zip(jobs, verdicts, strict=True):
        out[i].append(bool(ok))
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` of ``n`` samples correct.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 0, 2), pass_at_k(2, 1, 2)
    (0.25, 0.0, 1.0)
    """
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def metrics(problems: Sequence[dict[str, Any]], graded: Sequence[Sequence[bool]],
            ks: Sequence[int] = (1, 5, 10)) -> dict[str, Any]:
    """pass@k over problems (k up to the smallest sample count), per-problem detail, and
    pass@1 by difficulty, as LiveCodeBench reports them."""
    if not problems:
        raise ValueError("No problems to score: check --release and the date window.")
    n_min = min(len(g) for g in graded)
    out: dict[str, Any] = {"detail": {}}
    for k in [k for k in ks if k <= n_min]:
        per = {str(p["question_id"]): pass_at_k(len(g), sum(g), k) for p, g in zip(problems, graded, strict=True)}
        out[f"pass@{k}"] = sum(per.values()) / len(per)
        out["detail"][f"pass@{k}"] = per
    by_level: dict[str, list[float]] = {}
    for p, g in zip(problems, graded, strict=True):
        by_level.setdefault(str(p.get("difficulty", "unknown")), []).append(sum(g) / len(g))
    out["pass@1_by_difficulty"] = {lvl: sum(v) / len(v) for lvl, v in sorted(by_level.items())}
    return out


def read_custom_outputs(path: str | Path) -> dict[str, list[str]]:
    """LiveCodeBench's ``custom_evaluator`` input: a list of ``{"question_id", "code_list"}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(d, dict) and "question_id" in d and
                                             isinstance(d.get("code_list"), list) for d in data):
        raise ValueError(f"{path}: expected a JSON list of {{'question_id': ..., 'code_list': [...]}} objects.")
    return {str(d["question_id"]): [str(c) for c in d["code_list"]] for d in data}


def custom_outputs(question_ids: Sequence[str], code_lists: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """``read_custom_outputs``'s format, sorted by question_id as LiveCodeBench sorts it."""
    pairs = sorted(zip(question_ids, code_lists, strict=True), key=lambda p: str(p[0]))
    return [{"question_id": qid, "code_list": list(codes)} for qid, codes in pairs]
