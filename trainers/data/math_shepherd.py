"""Math-Shepherd (peiyi9979/Math-Shepherd) to TRL stepwise rows.

Upstream records have ``input`` (question, then steps ``Step 1: ... ки\\nStep 2: ... ки``
with the tag ``ки`` after every step), ``label`` (the same text with ``+`` (correct) or
``-`` (incorrect) in place of each tag) and ``task`` (``GSM8K`` or ``MATH``).

The label of tag *i* is read by walking ``input`` and ``label`` together: the text
between tags must match exactly, and the character where ``input`` has a tag must be
``+`` or ``-`` (records that do not align are skipped and counted). The prompt is the
text before ``Step 1:``; if a tag sits inside the question (a few upstream annotation
errors), the question is rebuilt without it and that label is dropped (counted).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from prm_plugin.trainers.data._io import clean_step, read_records, to_stepwise_dataset

logger = logging.getLogger(__name__)

SOURCE = "math_shepherd"
TAG = "ки"
_STEP_ONE = re.compile(r"[Ss]tep 1\s*:")


def _tag_labels(text: str, label: str) -> list[bool] | None:
    """Per-tag correctness, or None when ``label`` is not ``text`` with tags -> +/-."""
    pieces = text.split(TAG)
    pos, out = 0, []
    for piece in pieces[:-1]:
        if not label.startswith(piece, pos) or pos + len(piece) >= len(label):
            return None
        pos += len(piece)
        mark = label[pos]
        if mark not in "+-":
            return None
        out.append(mark == "+")
        pos += 1
    return out if label[pos:] == pieces[-1] else None


def convert_record(
    record: Mapping[str, Any], *, step_separator: str = "\n\n", stats: Counter[str] | None = None
) -> dict[str, Any] | None:
    """One stepwise row from a Math-Shepherd record, or None (reason counted in ``stats``)."""
    stats = Counter() if stats is None else stats
    text, label = record["input"], record["label"]
    marks = _tag_labels(text, label)
    if not marks:
        stats["skipped_misaligned_label"] += 1
        return None
    pieces = text.split(TAG)[:-1]  # piece i ends with step i's text; piece 0 starts with the question
    first = next((i for i, p in enumerate(pieces) if _STEP_ONE.search(p)), None)
    if first is None:
        stats["skipped_no_step_1"] += 1
        return None
    match = _STEP_ONE.search(pieces[first])
    assert match is not None
    if first:
        stats["tags_in_question_dropped"] += first
    question = " ".join(pieces[:first] + [pieces[first][: match.start()]])
    steps = [pieces[first][match.start():], *pieces[first + 1:]]
    cleaned = [clean_step(s, step_separator) for s in steps]
    stats["steps_cleaned"] += sum(c != s.strip() for c, s in zip(cleaned, steps, strict=True))
    return {
        "prompt": re.sub(r"[ \t]+", " ", question).strip(),
        "completions": cleaned,
        "labels": [1.0 if ok else 0.0 for ok in marks[first:]],
        "source": SOURCE,
    }


def convert_records(
    records: Iterable[Mapping[str, Any]], *, step_separator: str = "\n\n", tasks: Iterable[str] | None = None
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Convert many records (only those whose ``task`` is in ``tasks``, when given)."""
    wanted = set(tasks) if tasks is not None else None
    stats: Counter[str] = Counter()
    rows = []
    for record in records:
        stats["records"] += 1
        if wanted is not None and record.get("task") not in wanted:
            stats["skipped_other_task"] += 1
            continue
        row = convert_record(record, step_separator=step_separator, stats=stats)
        if row is not None:
            rows.append(row)
    stats["rows"] = len(rows)
    return rows, stats


def load_math_shepherd(
    source: str = "peiyi9979/Math-Shepherd",
    *,
    split: str = "train",
    data_files: Any = None,
    tasks: Iterable[str] | None = None,
    step_separator: str = "\n\n",
) -> Any:
    """A ``datasets.Dataset`` of stepwise rows from Math-Shepherd (local JSONL or Hub id).
    ``tasks`` keeps only those upstream tasks (e.g. ``["MATH"]``). Counts are logged."""
    rows, stats = convert_records(
        read_records(source, split=split, data_files=data_files), step_separator=step_separator, tasks=tasks
    )
    logger.info("Math-Shepherd %s: %s", source, dict(stats))
    return to_stepwise_dataset(rows, f"Math-Shepherd {source}")
