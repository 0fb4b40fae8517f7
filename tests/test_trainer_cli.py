"""``prm-plugin train`` with a YAML recipe, and ``prm-plugin export-prm`` equivalence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import build_causal_lm, tiny_qwen2_config, train_tokenizer

from prm_plugin.cli import main as cli_main
from prm_plugin.prm.layout import layout_steps
from prm_plugin.prm.value_head_model import ValueHeadPRM, ValueHeadPRMConfig
from prm_plugin.search import PRMQuery
from prm_plugin.trainers.export import (
    ExportError,
    Qwen2ForProcessRewardModel,
    export_token_classification,
)

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "examples" / "training" / "tiny.yaml"
QUERIES = [
    PRMQuery("What is 3 + 4?", ("3 + 4 = 7", "so the answer is \\boxed{7}")),
    PRMQuery("Add 1 and 2.\n\nShow the steps.", ("1 + 2 = 3",)),
    PRMQuery("x", ("a", "", "b c d")),
]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_causal_lm(tmp_path_factory.mktemp("lm") / "tiny-qwen2")


def test_train_command_runs_a_yaml_recipe_with_flag_overrides(lm_dir: Path, tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    monkeypatch.chdir(REPO)  # the recipe names its data relative to the repository root
    out = tmp_path / "prm"
    code = cli_main(["train", "--config", str(RECIPE), "--model_name_or_path", str(lm_dir),
                     "--output_dir", str(out), "--max_steps", "6", "--eval_strategy", "no", "--disable_tqdm", "true"])
    assert code == 0
    assert f"Saved the PRM to {out}" in capsys.readouterr().out
    metrics = json.loads((out / "eval_results.json").read_text())
    assert {"eval_step_accuracy", "eval_step_f1", "eval_first_error_f1"} <= set(metrics)
    assert metrics["eval_n_rows"] == 80  # eval_split_size 0.2 of the recipe's 400 rows
    model = ValueHeadPRM.from_pretrained(out)
    assert model.config.step_separator == "\n\n" and model.config.head_activation == "relu"
    assert (out / "tokenizer.json").exists()


def test_train_command_reports_bad_arguments(lm_dir: Path, tmp_path: Path, capsys) -> None:
    code = cli_main(["train", "--model_name_or_path", str(lm_dir), "--output_dir", str(tmp_path)])
    assert code == 2
    assert "Give exactly one source of training data" in capsys.readouterr().err
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "Q", "completions": ["a"], "labels": [1, 0]}) + "\n")
    code = cli_main(["train", "--model_name_or_path", str(lm_dir), "--output_dir", str(tmp_path),
                     "--dataset_name", str(rows), "--use_cpu", "true", "--report_to", "none"])
    assert code == 2 and "Row 0: 1 completions but 2 labels" in capsys.readouterr().err


def _value_head_checkpoint(path: Path, *, activation: str = "relu", head_hidden: int | None = 16,
                           backbone_type: str = "qwen2") -> Path:
    tok = train_tokenizer()
    torch.manual_seed(0)
    if backbone_type == "qwen2":
        backbone = tiny_qwen2_config(len(tok))
    else:
        from transformers import LlamaConfig

        backbone = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=4, num_key_value_heads=2)
    config = ValueHeadPRMConfig(backbone_config=backbone, head_activation=activation, head_hidden_size=head_hidden)
    model = ValueHeadPRM(config)
    with torch.no_grad():  # a head whose scores spread over (0, 1) rather than sit at 0.5
        model.head.dense.weight.normal_(0, 0.5)
        model.head.dense.bias.normal_(0, 0.5)
        model.head.out.weight.normal_(0, 0.5)
        model.head.out.bias.fill_(-0.3)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _value_head_scores(path: Path) -> list[float]:
    from prm_plugin.prm.checkpoint import read_checkpoint

    model = ValueHeadPRM.from_pretrained(path).eval()
    tok = read_checkpoint(str(path)).tokenizer
    out = []
    with torch.no_grad():
        for q in QUERIES:
            lay = layout_steps(tok, q.question, q.steps, "\n\n")
            out += torch.sigmoid(model(input_ids=torch.tensor([lay.input_ids])).logits[0, lay.step_ends]).tolist()
    return out


def test_export_gives_identical_scores_through_the_token_classification_path(tmp_path: Path) -> None:
    from prm_plugin.prm import load_prm
    from prm_plugin.prm.checkpoint import read_checkpoint
    from prm_plugin.prm.load import detect_family

    ckpt = _value_head_checkpoint(tmp_path / "vh")
    out = tmp_path / "exported"
    assert cli_main(["export-prm", str(ckpt), "--format", "token_classification", "--output", str(out)]) == 0
    expected = _value_head_scores(ckpt)
    assert max(expected) - min(expected) > 0.05  # the comparison is not between constants
    # 1) plain transformers, no remote code: softmax(logits)[:, 1] at the layout's score tokens
    exported = Qwen2ForProcessRewardModel.from_pretrained(out).eval()
    assert json.loads((out / "config.json").read_text())["architectures"] == ["Qwen2ForProcessRewardModel"]
    tok = read_checkpoint(str(out)).tokenizer
    got = []
    with torch.no_grad():
        for q in QUERIES:
            lay = layout_steps(tok, q.question, q.steps, "\n\n")
            logits = exported(input_ids=torch.tensor([lay.input_ids])).logits[0, lay.step_ends]
            assert torch.all(logits[:, 0] == 0)  # logits [0, z]
            got += torch.softmax(logits, dim=-1)[:, 1].tolist()
    assert got == pytest.approx(expected, abs=1e-6)
    # 2) the project's loader: the exported directory is a token_classification PRM
    assert detect_family(str(out)) == "token_classification"
    scored = load_prm(str(out), device="cpu", dtype="float32").score(QUERIES)
    assert [x for s in scored for x in s.scores] == pytest.approx(expected, abs=1e-5)
    prm_config = json.loads((out / "prm_config.json").read_text())
    assert prm_config["step_separator"] == "\n\n" and prm_config["layout"] == "prm_plugin.prm.layout"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "gelu"}, "uses 'gelu'; the exported head applies ReLU"),
        ({"head_hidden": 48}, "head_hidden_size=48 exceeds the hidden size 32"),
        ({"backbone_type": "llama"}, "The backbone is 'llama'"),
    ],
)
def test_export_refuses_heads_it_cannot_map_exactly(tmp_path: Path, kwargs: dict, message: str, capsys) -> None:
    ckpt = _value_head_checkpoint(tmp_path / "vh", **kwargs)
    with pytest.raises(ExportError, match=message):
        export_token_classification(str(ckpt), tmp_path / "out")
    assert cli_main(["export-prm", str(ckpt), "--output", str(tmp_path / "out2")]) == 2
    assert message.split(";")[0] in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_build_datasets_from_sources_trl_mixture_and_eval_split(tmp_path: Path) -> None:
    from trl import DatasetMixtureConfig

    from prm_plugin.trainers.cli import PRMDataArguments, build_datasets

    fixtures = REPO / "tests" / "fixtures"
    data = PRMDataArguments(
        sources=[{"format": "prm800k", "path": str(fixtures / "prm800k_phase2_train.jsonl")},
                 {"format": "math_shepherd", "path": str(fixtures / "math_shepherd.jsonl")}],
        eval_sources=[{"format": "prm800k", "path": str(fixtures / "prm800k_phase1_train.jsonl")}],
    )
    train, evaluation = build_datasets(data, DatasetMixtureConfig(), "\n\n")
    assert sorted(set(train["source"])) == ["math_shepherd", "prm800k"] and len(train) == 6
    assert len(evaluation) == 2 and set(evaluation["source"]) == {"prm800k"}
    # TRL's own mixture config, for datasets already in the stepwise format
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"Q{i}", "completions": ["a"], "labels": [True]}) + "\n"
                            for i in range(10)))
    mixture = DatasetMixtureConfig(datasets=[{"path": "json", "data_files": str(rows)}])
    train, evaluation = build_datasets(PRMDataArguments(eval_split_size=0.3), mixture, "\n\n")
    assert (len(train), len(evaluation)) == (7, 3)
    assert set(train["prompt"]).isdisjoint(evaluation["prompt"])
    with pytest.raises(ValueError, match=r"got \['sources', 'datasets'\]"):
        build_datasets(PRMDataArguments(sources=data.sources), mixture, "\n\n")
    # on a command line a source is a JSON object string
    flag = json.dumps({"format": "math_shepherd", "path": str(fixtures / "math_shepherd.jsonl")})
    assert len(build_datasets(PRMDataArguments(sources=[flag]), DatasetMixtureConfig(), "\n\n")[0]) == 4
    with pytest.raises(ValueError, match="must be a JSON object"):
        build_datasets(PRMDataArguments(sources=["math_shepherd"]), DatasetMixtureConfig(), "\n\n")
