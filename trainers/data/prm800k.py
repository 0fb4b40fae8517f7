"""PRM800K (openai/prm800k, phase 1 and phase 2 JSONL) to TRL stepwise rows.

Each upstream line is one labelled solution: ``question.problem``, and
``label.steps[]``, each with ``completions[]`` (``text``, ``rating`` in {-1, 0, 1} or
null), ``chosen_completion`` (index or null), ``human_completion`` (phase 1: a step the
labeller wrote when every completion was bad) and ``label.finish_reason``.

Choices (all configurable):

- The row follows the *chosen path*: the chosen completion of each step, or the human
  completion (labelled correct) when none was chosen. When neither exists, the labeller
  stopped there (phase 2 stops at the first error): the first completion rated -1 ends
  the row as its incorrect last step. Steps after the first -1 are cut, and an unrated
  step ends the row (nothing after it is labelled).
- Rating 0 ("neutral": valid but no progress) gets ``neutral_label`` = 1.0, i.e. it is
  treated as correct, as in the PRM800K paper's evaluation convention; 0.0 treats it as
  an error and 0.5 keeps it as a soft label.
- ``include_alternatives=True`` also emits, for every non-chosen rated completion, a row
  ending in it (phase 1 labels many alternatives per step).
- Solutions with ``finish_reason`` in ``skip_finish_reasons`` (default ``bad_problem``:
  the labeller reported the problem as broken) are skipped.
- MATH-500 problems are excluded when you pass their texts (the PRM800K authors note
  their training problems include MATH test problems; MATH-500 is the held-out 500):
  ``exclude_problems=load_problem_texts("MATH-500/test.jsonl")``. Nothing is
  downloaded: give the file you have (HuggingFaceH4/MATH-500 ``test.jsonl`` or
  prm800k's ``math_splits/test.jsonl``; any JSON/JSONL with a ``problem`` field).

Every skipped solution or cleaned step is counted and logged.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from prm_plugin.trainers.data._io import clean_step, read_records, to_stepwise_dataset

logger = logging.getLogger(__name__)

SOURCE = "prm800k"


def normalize_problem(text: str) -> str:
    """Problem text with whitespace collapsed, for matching across files.

    >>> normalize_problem("  What is\\n $1+1$? ")
    'What is $1+1$?'
    """
    return re.sub(r"\s+", " ", text).strip()


def load_problem_texts(source: str, *, split: str = "test") -> set[str]:
    """Normalised ``problem`` texts of a MATH-style file (e.g. MATH-500's ``test.jsonl``)."""
    texts = set()
    for i, record in enumerate(read_records(source, split=split)):
        problem = record.get("problem")
        if not isinstance(problem, str):
            raise ValueError(f"{source}: record {i} has no 'problem' text; expected MATH-500's format "
                             "(problem, solution, answer, subject, level, unique_id).")
        texts.add(normalize_problem(problem))
    return texts


def _rating_label(rating: int, neutral_label: float) -> float:
    if rating not in (-1, 0, 1):
        raise ValueError(f"PRM800K ratings are -1, 0 or 1 (or null); got {rating!r}.")
    return {1: 1.0, 0: neutral_label, -1: 0.0}[rating]


def convert_record(
    record: Mapping[str, Any],
    *,
    neutral_label: float = 1.0,
    include_alternatives: bool = False,
    step_separator: str = "\n\n",
    stats: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """Stepwise rows (``prompt``, ``completions``, ``labels``) from one PRM800K line."""
    stats = Counter() if stats is None else stats
    prompt = record["question"]["problem"]
    steps: list[str] = []
    labels: list[float] = []
    rows: list[dict[str, Any]] = []

    def add(text: str) -> str:
        cleaned = clean_step(text, step_separator)
        stats["steps_cleaned"] += cleaned != text.strip()
        return cleaned

    for step in record["label"]["steps"]:
        completions = step.get("completions") or []
        chosen = step.get("chosen_completion")
        if include_alternatives:
            for idx, alt in enumerate(completions):
                if idx != chosen and alt.get("rating") is not None:
                    rows.append(_row(prompt, [*steps, add(alt["text"])],
                                     [*labels, _rating_label(alt["rating"], neutral_label)]))
                    stats["alternative_rows"] += 1
        if chosen is not None:
            text, rating = completions[chosen]["text"], completions[chosen].get("rating")
        elif step.get("human_completion") is not None:
            human = step["human_completion"]
            text, rating = (human["text"] if isinstance(human, Mapping) else human), 1
        else:
            bad = next((c for c in completions if c.get("rating") == -1), None)
            if bad is not None and not include_alternatives:
                steps.append(add(bad["text"]))
                labels.append(0.0)
            break
        if rating is None:
            stats["cut_at_unrated_step"] += 1
            break
        steps.append(add(text))
        labels.append(_rating_label(rating, neutral_label))
        if rating == -1:
            break
    if steps:
        rows.append(_row(prompt, steps, labels))
    return rows


def _row(prompt: str, steps: list[str], labels: list[float]) -> dict[str, Any]:
    return {"prompt": prompt, "completions": steps, "labels": labels, "source": SOURCE}


def convert_records(
    records: Iterable[Mapping[str, Any]],
    *,
    exclude_problems: Collection[str] | None = None,
    skip_finish_reasons: Collection[str] = ("bad_problem",),
    neutral_label: float = 1.0,
    include_alternatives: bool = False,
    step_separator: str = "\n\n",
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Convert many PRM800K lines; returns the rows and counts of what was skipped."""
    if not 0.0 <= neutral_label <= 1.0:
        raise ValueError(f"neutral_label must be in [0, 1] (1 = neutral counts as correct), got {neutral_label}.")
    excluded = {normalize_problem(p) for p in exclude_problems or ()}
    stats: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for record in records:
        stats["solutions"] += 1
        if record.get("label", {}).get("finish_reason") in skip_finish_reasons:
            stats[f"skipped_{record['label']['finish_reason']}"] += 1
            continue
        if excluded and normalize_problem(record["question"]["problem"]) in excluded:
            stats["skipped_excluded_problem"] += 1
            continue
        new = convert_record(record, neutral_label=neutral_label, include_alternatives=include_alternatives,
                             step_separator=step_separator, stats=stats)
        stats["skipped_no_labelled_step"] += not new
        rows.extend(new)
    stats["rows"] = len(rows)
    return rows, stats


def load_prm800k(
    source: str,
    *,
    split: str = "train",
    data_files: Any = None,
    exclude_problems: Collection[str] | None = None,
    exclude_problems_file: str | None = None,
    skip_finish_reasons: Collection[str] = ("bad_problem",),
    neutral_label: float = 1.0,
    include_alternatives: bool = False,
    step_separator: str = "\n\n",
) -> Any:
    """A ``datasets.Dataset`` of stepwise rows from PRM800K JSONL (a local file, or
    ``"json"`` with ``data_files=`` URLs/paths, or a Hub dataset in the raw format).

    ``exclude_problems_file`` is read with ``load_problem_texts`` and added to
    ``exclude_problems``. Counts of skipped solutions are logged.
    """
    excluded = set(exclude_problems or ())
    if exclude_problems_file:
        excluded |= load_problem_texts(exclude_problems_file)
    rows, stats = convert_records(
        read_records(source, split=split, data_files=data_files),
        exclude_problems=excluded, skip_finish_reasons=skip_finish_reasons,
        neutral_label=neutral_label, include_alternatives=include_alternatives,
        step_separator=step_separator,
    )
    logger.info("PRM800K %s: %s", source, dict(stats))
    return to_stepwise_dataset(rows, f"PRM800K {source}")
