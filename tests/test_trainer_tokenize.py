"""Label placement, truncation, row checks, collation and the BCE loss of the PRM trainer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from tiny import train_tokenizer

from prm_plugin.prm.layout import layout_steps
from prm_plugin.trainers.config import PRMConfig, PRMConfigError
from prm_plugin.trainers.tokenize import (
    StepwiseCollator,
    StepwiseDataError,
    check_row,
    detect_label_type,
    tokenize_row,
)
from prm_plugin.trainers.trainer import PRMTrainer


class CharTok:
    """One id per character; no special tokens."""

    bos_token_id = None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


def text(ids: list[int]) -> str:
    return "".join(map(chr, ids))


def labelled(out: dict) -> dict[int, float]:
    return {i: x for i, x in enumerate(out["labels"]) if x != -100}


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer()


def test_labels_sit_on_the_layout_score_tokens_of_a_real_tokenizer(tok) -> None:
    row = {"prompt": "What is 3 + 4?", "completions": ["3 + 4 = 7", "so the answer is 7"], "labels": [True, 0.3]}
    out = tokenize_row(row, tok, step_separator="\n\n")
    lay = layout_steps(tok, row["prompt"], row["completions"], "\n\n")
    assert out["input_ids"] == lay.input_ids
    assert labelled(out) == {lay.step_ends[0]: 1.0, lay.step_ends[1]: pytest.approx(0.3)}
    assert out["n_steps"] == [2]


def test_multi_token_separator_labels_its_last_token() -> None:
    row = {"prompt": "Q", "completions": ["ab", "c"], "labels": [False, True]}
    out = tokenize_row(row, CharTok(), step_separator="<s>")
    assert text(out["input_ids"]) == "Q<s>ab<s>c<s>"
    # the label of each step is on the '>' that closes its separator, nowhere else
    assert labelled(out) == {8: 0.0, 12: 1.0}
    assert all(text(out["input_ids"])[i] == ">" for i in labelled(out))


def test_empty_step_still_gets_its_separator_and_label() -> None:
    row = {"prompt": "Q", "completions": ["a", "", "b"], "labels": [True, False, True]}
    out = tokenize_row(row, CharTok(), step_separator="|")
    assert text(out["input_ids"]) == "Q|a||b|"
    assert labelled(out) == {3: 1.0, 4: 0.0, 6: 1.0}


@pytest.mark.parametrize(
    ("kwargs", "kept_text", "kept_labels"),
    [
        ({"max_length": 9}, "Q|ab|cd|", [1.0, 0.0]),          # 'efg|' would end at 12 > 9
        ({"max_length": 11}, "Q|ab|cd|", [1.0, 0.0]),         # a step is never cut in the middle
        ({"max_completion_length": 5}, "Q|ab|", [1.0]),
        ({"max_completion_length": 2}, "Q|", []),             # not even the first step fits
    ],
)
def test_truncation_keeps_whole_steps_only(kwargs: dict, kept_text: str, kept_labels: list) -> None:
    row = {"prompt": "Q", "completions": ["ab", "cd", "efg"], "labels": [1, 0, 1]}
    out = tokenize_row(row, CharTok(), step_separator="|", **kwargs)
    assert text(out["input_ids"]) == kept_text
    assert list(labelled(out).values()) == kept_labels
    assert out["n_steps"] == [len(kept_labels)]
    # every remaining label sits on a separator whose step is complete
    assert all(text(out["input_ids"])[i] == "|" for i in labelled(out))


def test_long_question_keeps_its_end_and_the_separator() -> None:
    row = {"prompt": "abcdefgh", "completions": ["x"], "labels": [1]}
    out = tokenize_row(row, CharTok(), step_separator="||", max_prompt_length=5)
    assert text(out["input_ids"]) == "fgh||x||"
    assert labelled(out) == {7: 1.0}
    with pytest.raises(StepwiseDataError, match="max_prompt_length=2 leaves no room"):
        tokenize_row(row, CharTok(), step_separator="||", max_prompt_length=2)


def test_train_on_last_step_only_keeps_the_last_kept_label() -> None:
    row = {"prompt": "Q", "completions": ["a", "b", "c"], "labels": [1, 0, 0.5]}
    out = tokenize_row(row, CharTok(), step_separator="|", train_on_last_step_only=True)
    assert labelled(out) == {7: 0.5}
    cut = tokenize_row(row, CharTok(), step_separator="|", train_on_last_step_only=True, max_length=6)
    assert labelled(cut) == {5: 0.0}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "Q", "completions": ["a", "b"], "labels": [True]}, r"Row 7: 2 completions but 1 labels"),
        ({"prompt": "Q", "completions": [], "labels": []}, r"Row 7: 'completions' is empty"),
        ({"prompt": "Q", "completions": ["a\n\nb"], "labels": [True]}, r"Row 7: step 0 contains the step separator"),
        ({"prompt": "Q", "completions": ["a"], "labels": [1.5]}, r"Row 7: label 0 is 1.5, outside \[0, 1\]"),
        ({"prompt": "Q", "completions": ["a"], "labels": [None]}, r"Row 7: label 0 is None"),
        ({"prompt": ["Q"], "completions": ["a"], "labels": [1]}, r"Row 7: 'prompt' must be a string"),
    ],
)
def test_bad_rows_are_rejected_with_index_and_reason(row: dict, message: str) -> None:
    with pytest.raises(StepwiseDataError, match=message):
        check_row(row, 7, "\n\n")


def test_hard_label_type_rejects_fractions_and_auto_detects() -> None:
    row = {"prompt": "Q", "completions": ["a", "b"], "labels": [1.0, 0.25]}
    check_row(row, 0, "\n\n", "soft")
    with pytest.raises(StepwiseDataError, match="label_type='hard' needs 0/1"):
        check_row(row, 3, "\n\n", "hard")
    assert detect_label_type([[True, False], [1.0, 0]]) == "hard"
    assert detect_label_type([[True], [0.75]]) == "soft"


def test_collator_pads_right_and_masks_labels() -> None:
    batch = StepwiseCollator(pad_token_id=0, pad_to_multiple_of=4)(
        [{"input_ids": [5, 6, 7], "labels": [-100.0, -100.0, 0.5]}, {"input_ids": [8], "labels": [1.0]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[-100, -100, 0.5, -100], [1.0, -100, -100, -100]]


class _FixedLogits(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, **_: object) -> dict:
        return {"logits": self.logits}


def test_soft_label_bce_matches_the_formula_at_labelled_positions_only() -> None:
    logits = torch.tensor([[0.3, -1.2, 2.0], [5.0, 0.7, -0.4]])
    labels = torch.tensor([[-100.0, 0.25, 1.0], [-100.0, -100.0, 0.6]])
    inputs = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3), "labels": labels}
    trainer = SimpleNamespace()
    loss = PRMTrainer.compute_loss(trainer, _FixedLogits(logits), inputs)  # type: ignore[arg-type]

    def bce(z: float, y: float) -> float:
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = [bce(-1.2, 0.25), bce(2.0, 1.0), bce(-0.4, 0.6)]
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-5)
    # under gradient accumulation the sum is divided by the labelled steps of the whole batch
    scaled = PRMTrainer.compute_loss(trainer, _FixedLogits(logits), inputs, num_items_in_batch=6)  # type: ignore[arg-type]
    assert scaled.item() == pytest.approx(sum(expected) / 6, rel=1e-5)
    # soft targets: the minimum over z of bce(z, 0.25) is at sigmoid(z) = 0.25, not at 0 or 1
    z = torch.tensor([[0.0, math.log(0.25 / 0.75), 0.0]], requires_grad=True)
    one = {"input_ids": torch.zeros(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3),
           "labels": torch.tensor([[-100.0, 0.25, -100.0]])}
    PRMTrainer.compute_loss(trainer, _FixedLogits(z), one).backward()  # type: ignore[arg-type]
    assert z.grad is not None and abs(z.grad[0, 1].item()) < 1e-6 and z.grad[0, 0].item() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_separator": ""}, "step_separator is empty"),
        ({"max_length": 64, "max_prompt_length": 64}, "must be smaller than max_length"),
        ({"label_type": "fuzzy"}, "label_type must be one of auto, hard, soft"),
        ({"head_activation": "wiggle"}, "not a transformers activation"),
        ({"max_length": 0}, "max_length must be a positive integer"),
    ],
)
def test_config_checks_arguments_early(tmp_path, kwargs: dict, message: str) -> None:
    with pytest.raises(PRMConfigError, match=message):
        PRMConfig(output_dir=str(tmp_path), **kwargs)


def test_config_unescapes_separator_typed_on_a_command_line(tmp_path) -> None:
    assert PRMConfig(output_dir=str(tmp_path), step_separator="\\n\\n").step_separator == "\n\n"


@pytest.mark.parametrize(
    "module",
    ["prm_plugin.trainers.tokenize", "prm_plugin.trainers.metrics", "prm_plugin.trainers.config", "prm_plugin.trainers.aslaf", "prm_plugin.trainers.toy",
     "prm_plugin.trainers.data._io", "prm_plugin.trainers.data.prm800k", "prm_plugin.trainers.paper.transfer",
     "prm_plugin.trainers.paper.similarity_report"],
)
def test_docstring_examples_hold(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
