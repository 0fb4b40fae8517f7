"""Training a tiny value-head PRM for real: learning, checkpoints, PEFT, data errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from tiny import build_causal_lm
from transformers import AutoTokenizer

from prm_plugin.prm.layout import layout_steps
from prm_plugin.prm.value_head_model import ValueHeadPRM
from prm_plugin.search import PRMQuery
from prm_plugin.trainers.config import PRMConfig, PRMConfigError
from prm_plugin.trainers.tokenize import StepwiseDataError
from prm_plugin.trainers.toy import toy_rows
from prm_plugin.trainers.trainer import PRMTrainer

QUERIES = [
    PRMQuery("Add the numbers step by step.", ("3 + 4 = 7", "2 - 5 = 7")),
    PRMQuery("Add the numbers step by step.", ("8 + 1 = 9",)),
    PRMQuery("What is 6 + 2?", ("6 + 2 = 8", "1 + 1 = 2", "so 8")),
]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_causal_lm(tmp_path_factory.mktemp("lm") / "tiny-lm")


def cpu_args(out: Path, **overrides: object) -> PRMConfig:
    kwargs: dict = dict(output_dir=str(out), per_device_train_batch_size=8, per_device_eval_batch_size=32,
                        learning_rate=1e-2, max_steps=60, logging_steps=20, report_to="none", use_cpu=True,
                        save_strategy="no", disable_tqdm=True, seed=0, max_length=128)
    kwargs.update(overrides)
    return PRMConfig(**kwargs)


def flat(scores: list[list[float]]) -> list[float]:
    return [x for row in scores for x in row]


def layout_scores(model: ValueHeadPRM, tokenizer, queries=QUERIES) -> list[list[float]]:
    """Reference scores: the value head on the layout's ids, one query at a time."""
    model.eval()
    out = []
    with torch.no_grad():
        for q in queries:
            lay = layout_steps(tokenizer, q.question, q.steps, model.config.step_separator)
            device = next(model.parameters()).device
            logits = model(input_ids=torch.tensor([lay.input_ids], device=device)).logits[0]
            out.append(torch.sigmoid(logits[lay.step_ends]).tolist())
    return out


@pytest.fixture(scope="module")
def trained(lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("trained")
    trainer = PRMTrainer(model=str(lm_dir), args=cpu_args(out / "run"),
                         train_dataset=toy_rows(320, seed=0), eval_dataset=toy_rows(80, seed=1))
    before = trainer.evaluate()
    result = trainer.train()
    after = trainer.evaluate()
    ckpt = trainer.save_prm(str(out / "prm"))
    return trainer, before, result, after, Path(ckpt)


def test_training_lowers_loss_and_learns_held_out_steps(trained) -> None:
    trainer, before, result, after, _ = trained
    assert after["eval_loss"] < 0.5 * before["eval_loss"]
    assert result.training_loss < before["eval_loss"]
    # the held-out rows (another seed) have ~45% erroneous steps: chance is far below this
    assert after["eval_step_accuracy"] >= 0.9
    assert after["eval_error_step_f1"] >= 0.85 and after["eval_first_error_f1"] >= 0.85
    assert after["eval_n_rows"] == 80
    assert trainer.label_type == "hard"


def test_checkpoint_round_trip_gives_the_same_scores(trained) -> None:
    trainer, *_, ckpt = trained
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    reloaded = ValueHeadPRM.from_pretrained(ckpt)
    assert reloaded.config.step_separator == "\n\n" and reloaded.config.head_activation == "relu"
    expected = layout_scores(trainer.model, trainer.processing_class)
    assert flat(layout_scores(reloaded, tokenizer)) == pytest.approx(flat(expected), abs=1e-6)
    # the trained head separates the toy classes on new rows
    assert expected[0][0] > 0.5 > expected[0][1]


def test_checkpoint_loads_as_value_head_family_with_no_other_argument(trained) -> None:
    from prm_plugin.prm import load_prm
    from prm_plugin.prm.load import detect_family

    trainer, *_, ckpt = trained
    assert detect_family(str(ckpt)) == "value_head"
    prm = load_prm(str(ckpt), device="cpu", dtype="float32")
    scores = [list(s.scores) for s in prm.score(QUERIES)]
    assert flat(scores) == pytest.approx(flat(layout_scores(trainer.model, trainer.processing_class)), abs=1e-5)


def test_training_continues_from_a_value_head_checkpoint(trained, tmp_path: Path) -> None:
    *_, ckpt = trained
    saved = ValueHeadPRM.from_pretrained(ckpt)
    trainer = PRMTrainer(model=str(ckpt), args=cpu_args(tmp_path, max_steps=1), train_dataset=toy_rows(8))
    assert torch.equal(trainer.model.head.out.weight, saved.head.out.weight)  # no fresh head
    with pytest.raises(PRMConfigError, match=r"trained with step_separator='\\n\\n' but the training arguments say '\\n'"):
        PRMTrainer(model=str(ckpt), args=cpu_args(tmp_path, step_separator="\n"), train_dataset=toy_rows(8))


def test_lora_with_gradient_checkpointing_trains_adapter_and_full_head(lm_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig

    args = cpu_args(tmp_path / "run", max_steps=3, gradient_checkpointing=True)
    trainer = PRMTrainer(model=str(lm_dir), args=args, train_dataset=toy_rows(24),
                         peft_config=LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"))
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert any("head" in n and "modules_to_save" in n for n in trainable)
    assert not any("embed_tokens" in n or "mlp" in n for n in trainable)  # backbone frozen
    head_before = model.get_base_model().head.modules_to_save["default"].out.weight.clone()
    trainer.train()
    backbone = model.get_base_model().backbone  # the Trainer switches checkpointing on in train()
    assert backbone.gradient_checkpointing and backbone.layers[0].gradient_checkpointing
    head_after = model.get_base_model().head.modules_to_save["default"].out.weight
    assert not torch.equal(head_before, head_after)
    expected = layout_scores(model.get_base_model(), trainer.processing_class)
    out = Path(trainer.save_prm(str(tmp_path / "merged")))
    assert not (out / "adapter_config.json").exists()
    merged = ValueHeadPRM.from_pretrained(out)
    assert flat(layout_scores(merged, AutoTokenizer.from_pretrained(out))) == pytest.approx(flat(expected), abs=1e-5)


def test_bad_rows_are_rejected_with_their_index(lm_dir: Path, tmp_path: Path) -> None:
    rows = toy_rows(3)
    rows[2] = {"prompt": "Q", "completions": ["a", "b"], "labels": [True]}
    with pytest.raises(StepwiseDataError, match="Row 2: 2 completions but 1 labels"):
        PRMTrainer(model=str(lm_dir), args=cpu_args(tmp_path), train_dataset=rows)
    with pytest.raises(StepwiseDataError, match=r"lacks column\(s\) \['labels'\]"):
        PRMTrainer(model=str(lm_dir), args=cpu_args(tmp_path),
                   train_dataset=[{"prompt": "Q", "completions": ["a"]}])


def test_truncated_rows_are_dropped_loudly(lm_dir: Path, tmp_path: Path, caplog) -> None:
    long_row = {"prompt": "Add the numbers step by step. " * 8, "completions": ["1 + 1 = 2"], "labels": [True]}
    args = cpu_args(tmp_path, max_length=40)  # the long question alone passes 40 tokens
    with caplog.at_level(logging.WARNING, logger="prm_plugin.trainers.trainer"):
        trainer = PRMTrainer(model=str(lm_dir), args=args, train_dataset=[*toy_rows(4), long_row])
    assert len(trainer.train_dataset) == 4 and "1 of 5 train rows dropped" in caplog.text
    with pytest.raises(StepwiseDataError, match="Every row of the train dataset lost all its steps"):
        PRMTrainer(model=str(lm_dir), args=args, train_dataset=[long_row])


def test_default_config_and_soft_labels(lm_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [{"prompt": "Q", "completions": ["1 + 1 = 2", "2 - 1 = 3"], "labels": [0.75, 0.125]}]
    trainer = PRMTrainer(model=str(lm_dir), train_dataset=rows)
    assert trainer.args.output_dir.endswith("tiny-lm-PRM") and trainer.args.step_separator == "\n\n"
    assert trainer.label_type == "soft"
    assert sorted(x for x in trainer.train_dataset[0]["labels"] if x != -100) == [0.125, 0.75]
    with pytest.raises(PRMConfigError, match="args must be a PRMConfig"):
        PRMTrainer(model=str(lm_dir), args=object(), train_dataset=rows)  # type: ignore[arg-type]


def test_a_fresh_value_head_depends_on_args_seed_not_on_what_ran_before(lm_dir: Path, tmp_path: Path) -> None:
    heads = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever sampling ran before the trainer was built
        torch.rand(noise * 7)
        trainer = PRMTrainer(model=str(lm_dir), args=cpu_args(tmp_path, max_steps=1, seed=3),
                             train_dataset=toy_rows(4))
        heads.append([p.detach().clone() for p in trainer.model.head.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(heads[0], heads[1], strict=True))
    other = PRMTrainer(model=str(lm_dir), args=cpu_args(tmp_path, max_steps=1, seed=4), train_dataset=toy_rows(4))
    assert not torch.equal(heads[0][0], next(other.model.head.parameters()))
