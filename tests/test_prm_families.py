"""PRM families through ``load_prm``: detection, layouts checked against hand-built
references, batching/padding invariance, exact token counts, load-time validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import (
    build_causal_lm,
    build_math_shepherd_prm,
    build_qwen_math_prm,
    build_token_classification_prm,
    build_value_head_prm,
    train_tokenizer,
)
from transformers import (
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2Model,
)

from prm_plugin.prm.base import RewardModel
from prm_plugin.prm.load import detect_family, load_prm
from prm_plugin.search import PRMQuery

FAMILIES = ("value_head", "qwen", "trl", "math_shepherd", "rlhflow")
FAMILY_NAME = {
    "value_head": "value_head",
    "qwen": "token_classification",
    "trl": "token_classification",
    "math_shepherd": "lm_head",
    "rlhflow": "lm_head",
}

Q1 = PRMQuery("What is 3 + 4, times 2?", ("Step 1: 3 + 4 = 7", "Step 2: 7 * 2 = 14", "The answer is \\boxed{14}"))
Q2 = PRMQuery("Solve for x: 2x + 1 = 5.", ("2x = 4", "x = 2"))
Q_LONG = PRMQuery(
    "Question: what is 12 - 5? Let's think step by step.",
    tuple(f"Step {i}: the quick brown fox jumps over {i} lazy dogs" for i in range(1, 7)),
)
Q_SHORT = PRMQuery("x?", ("7",))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prm_families")
    return {
        "value_head": build_value_head_prm(root / "value_head", initializer_range=0.1),
        "qwen": build_qwen_math_prm(root / "qwen"),
        "trl": build_token_classification_prm(root / "trl", step_separator="\n"),
        "math_shepherd": build_math_shepherd_prm(root / "math_shepherd"),
        # A causal LM with a chat template, found as RLHFlow-format by its name.
        "rlhflow": build_math_shepherd_prm(root / "rlhflow_prm", seed=1),
    }


@pytest.fixture(scope="session")
def prms(checkpoints: dict[str, Path]) -> dict[str, RewardModel]:
    """Each family with the prefix cache off: every query runs in full."""
    return {k: load_prm(str(p), device="cpu", cache_bytes=0) for k, p in checkpoints.items()}


# -- hand-built references ----------------------------------------------------------
# The tiny tokenizers are saved as plain fast tokenizers; AutoTokenizer would swap in
# Qwen2Tokenizer for model_type qwen2 and split text differently from tokenizer.json.
AutoTokenizer = PreTrainedTokenizerFast

def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _reference_value_head(path: Path, q: PRMQuery) -> tuple[list[float], int]:
    from prm_plugin.prm.value_head_model import ValueHeadPRM

    tok = AutoTokenizer.from_pretrained(path)
    model = ValueHeadPRM.from_pretrained(path).eval()
    sep = model.config.step_separator
    ids, ends = _ids(tok, q.question) + _ids(tok, sep), []
    for step in q.steps:
        ids += _ids(tok, step) + _ids(tok, sep)
        ends.append(len(ids) - 1)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return torch.sigmoid(logits[ends]).tolist(), len(ids)


def _reference_qwen(path: Path, q: PRMQuery) -> tuple[list[float], int]:
    """The model card's recipe: chat template, full-string encode, softmax at <extra_0>."""
    tok = AutoTokenizer.from_pretrained(path)
    state = load_file(str(path / "model.safetensors"))
    backbone = Qwen2Model(Qwen2Config.from_pretrained(path)).eval()
    backbone.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    h = backbone.config.hidden_size
    score = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))
    score.load_state_dict({k[len("score."):]: v for k, v in state.items() if k.startswith("score.")})
    messages = [
        {"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
        {"role": "user", "content": q.question},
        {"role": "assistant", "content": "<extra_0>".join(q.steps) + "<extra_0>"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        probs = torch.softmax(score(backbone(input_ids=ids).last_hidden_state), -1)[0, :, 1]
    where = (ids[0] == tok.convert_tokens_to_ids("<extra_0>")).nonzero().flatten()
    return probs[where].tolist(), int(where[-1]) + 1  # tokens after the last tag cannot matter


def _reference_trl(path: Path, q: PRMQuery) -> tuple[list[float], int]:
    """TRL's tokenize_row layout: [bos] prompt, then step + separator per step."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(path).eval()
    sep = json.loads((path / "prm_config.json").read_text())["step_separator"]
    ids = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + _ids(tok, q.question)
    ends = []
    for step in q.steps:
        ids += _ids(tok, step) + _ids(tok, sep)
        ends.append(len(ids) - 1)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)[:, 1]
    return probs[ends].tolist(), len(ids)


def _reference_math_shepherd(path: Path, q: PRMQuery) -> tuple[list[float], int]:
    """The model card's recipe: one string, P(+) over {+, -} where the tag token sits."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    text = f"{q.question} " + "".join(f"{s} ки\n" for s in q.steps).rstrip("\n")
    ids = torch.tensor([tok.encode(text)])
    good, bad = tok.encode("+"), tok.encode("-")
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0][:, good + bad]
    where = (ids[0] == tok.convert_tokens_to_ids(" ки")).nonzero().flatten()
    return torch.softmax(logits, -1)[where, 0].tolist(), ids.shape[1]


def _reference_rlhflow(path: Path, q: PRMQuery) -> tuple[list[float], int]:
    """RLHFlow's recipe: one user turn per step (the first prefixed by the question),
    assistant "+" after each; P(+) vs P(-) where the logits predict each answer."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    conversation = []
    for k, step in enumerate(q.steps):
        conversation.append({"role": "user", "content": f"{q.question} {step}" if k == 0 else step})
        conversation.append({"role": "assistant", "content": "+"})
    ids = tok.encode(tok.apply_chat_template(conversation, tokenize=False))
    header = tok.encode("<|im_start|>assistant\n")
    where = [i for i in range(len(ids)) if ids[i - len(header) + 1: i + 1] == header]
    good, bad = tok.encode("+"), tok.encode("-")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0][:, good + bad]
    return torch.softmax(logits, -1)[where, 0].tolist(), where[-1] + 1


REFERENCES = {
    "value_head": _reference_value_head,
    "qwen": _reference_qwen,
    "trl": _reference_trl,
    "math_shepherd": _reference_math_shepherd,
    "rlhflow": _reference_rlhflow,
}


# -- behaviour -----------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_load_prm_detects_the_family(checkpoints: dict[str, Path], prms, family: str) -> None:
    assert detect_family(str(checkpoints[family])) == FAMILY_NAME[family]
    assert isinstance(prms[family], RewardModel)


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_equal_a_hand_computed_forward(checkpoints: dict[str, Path], prms, family: str) -> None:
    seen: list[float] = []
    for q in (Q1, Q2):
        expected, n_tokens = REFERENCES[family](checkpoints[family], q)
        seen += expected
        (got,) = prms[family].score([q])
        assert len(got.scores) == len(q.steps) == len(expected)
        assert got.scores == pytest.approx(expected, abs=2e-6)
        assert got.tokens == n_tokens == prms[family].count_tokens(q)
    assert max(seen) - min(seen) > 2e-3  # step scores differ by far more than the tolerance


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_do_not_depend_on_batch_composition_or_padding(prms, family: str) -> None:
    prm = prms[family]
    alone = [prm.score([q])[0] for q in (Q1, Q2, Q_LONG, Q_SHORT)]
    mixed = prm.score([Q_LONG, Q1, Q_SHORT, Q2])
    for a, b in zip(alone, [mixed[1], mixed[3], mixed[0], mixed[2]], strict=True):
        assert b.scores == pytest.approx(a.scores, abs=2e-6)
        assert b.tokens == a.tokens
    for s in mixed:
        assert all(0.0 <= x <= 1.0 for x in s.scores)


def test_batch_size_and_token_budget_split_batches_without_changing_scores(checkpoints) -> None:
    path = str(checkpoints["qwen"])
    big = load_prm(path, device="cpu", cache_bytes=0, batch_size=64)
    small = load_prm(path, device="cpu", cache_bytes=0, batch_size=1, max_batch_tokens=8)
    queries = [Q1, Q_LONG, Q2, Q_SHORT, Q1]
    for a, b in zip(big.score(queries), small.score(queries), strict=True):
        assert b.scores == pytest.approx(a.scores, abs=2e-6)
    assert small.tokens_run == big.tokens_run == sum(big.count_tokens(q) for q in queries)


def test_empty_step_list_scores_nothing_and_runs_nothing(prms) -> None:
    (res,) = prms["value_head"].score([PRMQuery("What is 1 + 1?", ())])
    assert res.scores == () and res.tokens == 0


def test_bad_queries_are_refused_with_a_fix(prms) -> None:
    with pytest.raises(TypeError, match="PRMQuery"):
        prms["trl"].score([("question", ("step",))])
    with pytest.raises(TypeError, match="tuple of step strings"):
        prms["trl"].score([PRMQuery("q", "one string")])  # type: ignore[arg-type]
    huge = PRMQuery("q", ("word " * 400,))
    prms["trl"].on_overflow = "error"  # the default truncates (tests/test_prm_overflow.py)
    try:
        with pytest.raises(ValueError, match="limit of 512 positions.*on_overflow=error"):
            prms["trl"].score([huge])
    finally:
        prms["trl"].on_overflow = "truncate"


# -- load-time validation ------------------------------------------------------------
def test_value_head_separator_mismatch_names_both(checkpoints) -> None:
    with pytest.raises(ValueError, match=r"step_separator='\\n'.*trained with \('\\n\\n'\)"):
        load_prm(str(checkpoints["value_head"]), device="cpu", step_separator="\n")
    prm = load_prm(str(checkpoints["value_head"]), device="cpu", step_separator="\n\n")
    assert prm.step_separator == "\n\n"


def test_qwen_without_extra_0_token_is_refused(checkpoints, tmp_path: Path) -> None:
    broken = tmp_path / "qwen_no_tag"
    shutil.copytree(checkpoints["qwen"], broken)
    for f in broken.glob("tokenizer*"):
        f.unlink()
    train_tokenizer().save_pretrained(broken)
    with pytest.raises(ValueError, match=r"no single '<extra_0>' token.*own tokenizer"):
        load_prm(str(broken), device="cpu")


def test_qwen_refuses_a_foreign_separator(checkpoints) -> None:
    with pytest.raises(ValueError, match=r"step_separator='\\n\\n'.*'<extra_0>'"):
        load_prm(str(checkpoints["qwen"]), device="cpu", step_separator="\n\n")


def test_trl_separator_from_prm_config_or_default_with_warning(checkpoints, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"step_separator=';'.*recorded in .*\('\\n'\)"):
        load_prm(str(checkpoints["trl"]), device="cpu", step_separator=";")
    bare = build_token_classification_prm(tmp_path / "bare", step_separator=None)
    with pytest.warns(UserWarning, match="assuming TRL's old default"):
        prm = load_prm(str(bare), device="cpu")
    assert prm.step_separator == "\n"
    assert load_prm(str(bare), device="cpu", step_separator="\n\n").step_separator == "\n\n"


def test_lm_head_tag_and_labels_must_be_single_tokens(checkpoints, tmp_path: Path) -> None:
    plain = build_causal_lm(tmp_path / "plain_lm")
    with pytest.raises(ValueError, match=r"step tag ' ки' must be a single token.*encodes to \d+ tokens"):
        load_prm(str(plain), family="lm_head", device="cpu")
    with pytest.raises(ValueError, match=r"good_token '\+\+\+ok' must be a single token"):
        load_prm(str(checkpoints["math_shepherd"]), device="cpu", good_token="+++ok")


def test_a_plain_lm_with_the_tag_in_its_vocabulary_is_not_taken_for_a_prm(tmp_path: Path) -> None:
    plain = build_math_shepherd_prm(tmp_path / "chat_model")  # same weights, no PRM name or prm_config
    with pytest.raises(ValueError, match="No PRM family recognises"):
        load_prm(str(plain), device="cpu")
    assert load_prm(str(plain), family="lm_head", device="cpu").step_separator == " ки\n"
    (plain / "prm_config.json").write_text(json.dumps({"family": "lm_head"}))
    assert detect_family(str(plain)) == "lm_head"


def test_undetectable_checkpoint_lists_the_families(tmp_path: Path) -> None:
    plain = build_causal_lm(tmp_path / "plain_lm")
    with pytest.raises(ValueError, match=r"No PRM family recognises.*lm_head, token_classification, value_head.*family="):
        load_prm(str(plain), device="cpu")
    with pytest.raises(FileNotFoundError, match="No config.json"):
        load_prm(str(tmp_path / "missing"), device="cpu")


def test_unknown_option_and_family_are_refused(checkpoints) -> None:
    with pytest.raises(ValueError, match=r"Unknown option 'cache_byte'.*Did you mean: cache_bytes"):
        load_prm(str(checkpoints["value_head"]), device="cpu", cache_byte=10)
    with pytest.raises(LookupError, match=r"Unknown PRM family 'valu_head'.*Did you mean: value_head"):
        load_prm(str(checkpoints["value_head"]), family="valu_head")


def test_exported_value_head_scores_the_same_through_token_classification(tmp_path: Path) -> None:
    """``prm-plugin export-prm`` output (two-layer head, project layout in prm_config.json)
    is detected as token_classification and gives the value head's scores."""
    from tiny import tiny_qwen2_config

    from prm_plugin.prm.value_head_model import ValueHeadPRM, ValueHeadPRMConfig
    from prm_plugin.trainers.export import export_token_classification

    tok = train_tokenizer()
    torch.manual_seed(3)
    config = ValueHeadPRMConfig(
        backbone_config=tiny_qwen2_config(len(tok), initializer_range=0.1),
        head_activation="relu",
        step_separator="\n\n",
    )
    ValueHeadPRM(config).save_pretrained(tmp_path / "vh")
    tok.save_pretrained(tmp_path / "vh")
    exported = export_token_classification(str(tmp_path / "vh"), tmp_path / "tc")
    assert detect_family(str(exported)) == "token_classification"
    original = load_prm(str(tmp_path / "vh"), device="cpu", cache_bytes=0)
    converted = load_prm(str(exported), device="cpu", cache_bytes=0)
    assert converted.step_separator == "\n\n"
    for a, b in zip(original.score([Q1, Q2]), converted.score([Q1, Q2]), strict=True):
        assert b.scores == pytest.approx(a.scores, abs=2e-6)
        assert b.tokens == a.tokens
    with pytest.raises(ValueError, match="does not match the separator recorded"):
        load_prm(str(exported), device="cpu", step_separator="\n")


def test_scoring_tokenises_with_the_saved_tokenizer_json(checkpoints, prms) -> None:
    """model_type qwen2 must not swap the trained tokenizer for Qwen2Tokenizer's rules."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(checkpoints["trl"] / "tokenizer.json"))
    q = PRMQuery("Solve for x: 2x + 1 = 5.", ("2x = 4",))
    segs = prms["trl"].segments(q)
    assert list(segs[0]) == raw.encode(q.question, add_special_tokens=False).ids
    assert list(segs[1]) == raw.encode("2x = 4", add_special_tokens=False).ids + raw.encode("\n").ids


def test_rlhflow_format_is_chosen_and_checked(checkpoints) -> None:
    path = str(checkpoints["rlhflow"])
    prm = load_prm(path, device="cpu")
    assert prm.step_separator == "<|im_end|>\n<|im_start|>assistant\n"  # user turn end + answer header
    with pytest.raises(ValueError, match="each step in its own chat turn; drop step_separator"):
        load_prm(path, device="cpu", step_separator="\n")
    with pytest.raises(ValueError, match=r"Unknown lm_head format 'shepherd'.*math_shepherd, rlhflow"):
        load_prm(path, device="cpu", format="shepherd")
    # The same checkpoint read as Math-Shepherd gives other scores: the layout matters.
    ms = load_prm(path, device="cpu", format="math_shepherd")
    assert ms.score([Q1])[0].scores != pytest.approx(prm.score([Q1])[0].scores, abs=1e-4)
