"""The PRM800K / Math-Shepherd loaders on fixtures in the upstream formats, and mixtures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from prm_plugin.trainers.data import (
    SourceSpec,
    clean_step,
    load_math_shepherd,
    load_mixture,
    load_prm800k,
    load_problem_texts,
    load_stepwise,
    mix,
)
from prm_plugin.trainers.data._io import read_records
from prm_plugin.trainers.data.math_shepherd import convert_records as convert_shepherd
from prm_plugin.trainers.data.prm800k import convert_record, convert_records
from prm_plugin.trainers.tokenize import check_row

FIX = Path(__file__).parent / "fixtures"
PHASE1, PHASE2 = FIX / "prm800k_phase1_train.jsonl", FIX / "prm800k_phase2_train.jsonl"
SHEPHERD, MATH500 = FIX / "math_shepherd.jsonl", FIX / "math500_test.jsonl"


def rows_of(path: Path, **kwargs) -> tuple[list[dict], Counter]:
    return convert_records(read_records(str(path)), **kwargs)


def test_phase2_follows_the_chosen_path_and_ends_at_the_first_error() -> None:
    rows, stats = rows_of(PHASE2)
    lcm = rows[0]
    assert lcm["prompt"] == "What is the least common multiple of 4 and 6?"
    # ratings 0, 1 then the unchosen -1 completion where the labeller stopped (found_error)
    assert lcm["labels"] == [1.0, 1.0, 0.0]
    assert lcm["completions"][-1] == "The LCM is $4 \\cdot 6 = 24$."
    # the final '# Answer\n\n21' step no longer contains the separator
    assert rows[1]["completions"][-1] == "# Answer\n21" and rows[1]["labels"] == [1.0, 1.0, 1.0]
    # give_up with an unrated step: the labelled prefix stays, the unrated step is cut
    assert rows[2]["labels"] == [1.0, 1.0] and stats["cut_at_unrated_step"] == 1
    assert stats["steps_cleaned"] == 1 and stats["rows"] == 3


def test_neutral_rating_is_configurable() -> None:
    record = json.loads(PHASE2.read_text().splitlines()[0])
    assert convert_record(record)[0]["labels"][0] == 1.0
    assert convert_record(record, neutral_label=0.0)[0]["labels"][0] == 0.0
    assert convert_record(record, neutral_label=0.5)[0]["labels"][0] == 0.5
    with pytest.raises(ValueError, match="neutral_label must be in"):
        convert_records([record], neutral_label=2.0)


def test_phase1_uses_human_completions_and_skips_bad_problems() -> None:
    rows, stats = rows_of(PHASE1)
    first = rows[0]
    assert first["completions"][1] == "Dividing both sides by 3 gives $x = 3$."  # the human-written step
    assert first["labels"] == [1.0, 1.0, 1.0, 1.0]
    assert stats["skipped_bad_problem"] == 1 and len(rows) == 2


def test_alternatives_become_rows_ending_in_them() -> None:
    record = json.loads(PHASE1.read_text().splitlines()[0])
    rows = convert_record(record, include_alternatives=True)
    endings = {(r["completions"][-1], r["labels"][-1], len(r["completions"])) for r in rows}
    assert ("Add 2 to both sides: $3x = 13$.", 0.0, 1) in endings
    assert ("Divide by 3 to get $x = 4$.", 0.0, 2) in endings
    assert ("So $x = 9 - 3 = 6$.", 0.0, 2) in endings
    assert len(rows) == 4  # three alternatives + the chosen path


def test_math500_problems_are_excluded_by_text(tmp_path: Path) -> None:
    excluded = load_problem_texts(str(MATH500))
    assert "If $3x + 2 = 11$, what is the value of $x$?" in excluded  # whitespace normalised
    ds = load_prm800k(str(PHASE1), exclude_problems_file=str(MATH500))
    assert ds["prompt"] == ["What is the sum of the first five positive even integers?"]
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"question": "no problem field"}\n')
    with pytest.raises(ValueError, match="has no 'problem' text"):
        load_problem_texts(str(bad))


def test_math_shepherd_tags_become_labels_and_the_prompt_is_the_question() -> None:
    rows, stats = convert_shepherd(read_records(str(SHEPHERD)))
    by_prompt = {r["prompt"]: r for r in rows}
    apples = by_prompt["Tom has 3 apples and buys 5 more. How many apples does he have now?"]
    assert apples["completions"] == ["Step 1: Tom starts with 3 apples.",
                                     "Step 2: He buys 5 more, so he has 3 + 5 = <<3+5=8>>8 apples.",
                                     "Step 3: The answer is: 8"]
    assert apples["labels"] == [1.0, 1.0, 1.0]
    assert by_prompt["What is the value of $2^3 - 1$?"]["labels"] == [1.0, 0.0, 0.0]
    # a tag inside the question (upstream annotation error): its label is dropped
    assert by_prompt["Compute $2 \\cdot 3$."]["labels"] == [1.0, 0.0]
    assert stats["tags_in_question_dropped"] == 1
    # a label string that does not match its input is skipped and counted, not guessed
    assert stats["skipped_misaligned_label"] == 1 and len(rows) == 4
    assert by_prompt["Sara reads 4 pages a day. How many pages does she read in a week?"]["completions"][0] \
        == "step 1: A week has 7 days."


def test_math_shepherd_task_filter_and_dataset_types() -> None:
    ds = load_math_shepherd(str(SHEPHERD), tasks=["MATH"])
    assert len(ds) == 2 and set(ds["source"]) == {"math_shepherd"}
    assert ds.features["labels"].feature.dtype == "float32"


def test_every_loader_row_passes_the_trainer_checks() -> None:
    for ds in (load_prm800k(str(PHASE1)), load_prm800k(str(PHASE2)), load_math_shepherd(str(SHEPHERD))):
        for i, row in enumerate(ds):
            check_row(row, i, "\n\n")


def test_clean_step_never_leaves_the_separator() -> None:
    assert clean_step("a\n\n\n\nb", "\n\n") == "a\nb"
    assert clean_step(" a|b ", "|") == "a b"
    assert clean_step("x кики", " ки") == "x"


def _toy(n: int, tag: str) -> datasets.Dataset:
    return datasets.Dataset.from_list(
        [{"prompt": f"{tag}{i}", "completions": ["s"], "labels": [1.0], "source": tag} for i in range(n)]
    )


def test_mixture_follows_weights_and_seed() -> None:
    a, b = _toy(100, "a"), _toy(30, "b")
    mixed = mix([a, b], [0.5, 0.5], seed=1)
    # largest mixture that repeats no row: b limits it to 60 rows, half each
    assert Counter(mixed["source"]) == {"a": 30, "b": 30}
    assert len(set(mixed["prompt"])) == 60
    assert mixed["prompt"] == mix([a, b], [0.5, 0.5], seed=1)["prompt"]
    assert mixed["prompt"] != mix([a, b], [0.5, 0.5], seed=2)["prompt"]
    sized = mix([a, b], [3, 1], size=40, seed=0)
    assert Counter(sized["source"]) == {"a": 30, "b": 10}
    with pytest.raises(ValueError, match="Source 1 has 30 rows but its weight asks for 50"):
        mix([a, b], [1, 1], size=100)
    assert Counter(mix([a, b], [1, 1], size=100, oversample=True)["source"]) == {"a": 50, "b": 50}


def test_load_mixture_from_recipe_specs(tmp_path: Path) -> None:
    stepwise = tmp_path / "rows.jsonl"
    stepwise.write_text(json.dumps({"prompt": "Q", "completions": ["a\n\nb", "c"], "labels": [True, False]}) + "\n")
    mixed = load_mixture([
        {"format": "prm800k", "path": str(PHASE2), "weight": 1.0},
        {"format": "math_shepherd", "path": str(SHEPHERD), "weight": 1.0},
        {"format": "stepwise", "path": str(stepwise), "weight": 1.0 / 3},
    ], seed=0)
    assert Counter(mixed["source"]) == {"prm800k": 3, "math_shepherd": 3, str(stepwise): 1}
    assert load_stepwise(str(stepwise))[0]["completions"] == ["a\nb", "c"]
    with pytest.raises(ValueError, match=r"Unknown source key\(s\) \['wieght'\]"):
        SourceSpec.from_dict({"format": "prm800k", "path": "x", "wieght": 1})
    with pytest.raises(ValueError, match="Unknown source format 'prm8k'"):
        SourceSpec.from_dict({"format": "prm8k", "path": "x"})


def test_loaders_read_dataset_directories_through_datasets(tmp_path: Path) -> None:
    # a directory goes through datasets.load_dataset, as a Hub id does
    (tmp_path / "shepherd").mkdir()
    (tmp_path / "shepherd" / "train.jsonl").write_text(SHEPHERD.read_text())
    ds = load_math_shepherd(str(tmp_path / "shepherd"))
    assert len(ds) == 4 and ds[0]["labels"] == [1.0, 1.0, 1.0]
