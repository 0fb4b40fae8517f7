"""The similarity experiment (paper Table 2 on the world): the gradient math on a tiny model
with known answers, the selection statistics, a tiny end-to-end run."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from prm_plugin.trainers.paper.similarity import (  # noqa: E402
    SimilaritySettings,
    cosine,
    gradient_and_scores,
    loss_gradient,
    mean_direction,
    selection_stats,
    spearman,
    step_scores,
    unit,
)

IGNORE = -100.0


def tiny_prm(seed: int = 0):  # type: ignore[no-untyped-def]
    """A value-head PRM on a 1-layer, 16-wide Qwen2 backbone built from a config (no download)."""
    from transformers import Qwen2Config, Qwen2Model

    from prm_plugin.prm.value_head_model import ValueHeadPRM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return ValueHeadPRM.from_backbone(Qwen2Model(config), step_separator="\n\n").eval()


# a row of 10 tokens with labels on its two step ends (positions 5 and 9)
IDS = [1, 4, 7, 3, 9, 2, 5, 8, 6, 2]
LABELS = [IGNORE] * 5 + [1.0] + [IGNORE] * 3 + [0.0]


def test_identical_examples_and_identical_prms_give_one() -> None:
    model = tiny_prm()
    g = loss_gradient(model, IDS, LABELS)
    assert g.numel() == sum(p.numel() for p in model.parameters()) and float(g.norm()) > 0
    assert cosine(g, loss_gradient(model, IDS, LABELS)) == pytest.approx(1.0, abs=1e-6)
    twin = copy.deepcopy(model)
    assert cosine(g, loss_gradient(twin, IDS, LABELS)) == pytest.approx(1.0, abs=1e-6)


def test_mirrored_soft_labels_flip_the_gradient() -> None:
    """The BCE gradient is linear in (p - y): labels p - d and p + d give exactly opposite gradients."""
    model = tiny_prm()
    p = step_scores(model, IDS, LABELS)
    below, above = list(LABELS), list(LABELS)
    for pos, prob in zip((5, 9), p):
        below[pos], above[pos] = prob - 0.05, prob + 0.05
    assert cosine(loss_gradient(model, IDS, below), loss_gradient(model, IDS, above)) == pytest.approx(-1.0, abs=1e-5)
    assert gradient_and_scores(model, IDS, below)[1] == pytest.approx(p)  # the same forward's scores


def test_other_rows_and_other_prms_are_less_than_one() -> None:
    model = tiny_prm()
    g = loss_gradient(model, IDS, LABELS)
    flipped = [IGNORE if y == IGNORE else 1.0 - y for y in LABELS]
    assert cosine(g, loss_gradient(model, IDS, flipped)) < 0.99
    assert cosine(g, loss_gradient(tiny_prm(seed=1), IDS, LABELS)) < 0.99


def test_scale_invariance_and_no_side_effects() -> None:
    """Cosine ignores the gradient's length (so the loss's mean-vs-sum reduction); the model's
    own .grad is not touched; an unlabelled row is refused."""
    model = tiny_prm()
    g = loss_gradient(model, IDS, LABELS)
    assert cosine(g, 7.5 * g) == pytest.approx(1.0, abs=1e-6)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="no labelled step"):
        loss_gradient(model, IDS, [IGNORE] * len(IDS))


def test_mean_direction_gives_the_mean_cosine() -> None:
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(50, generator=gen) * s for s in (1.0, 3.0, 0.2)]
    v = torch.randn(50, generator=gen)
    expected = sum(cosine(v, g) for g in grads) / 3
    assert float((unit(v) * mean_direction(grads)).sum()) == pytest.approx(expected, abs=1e-6)
    assert cosine(torch.zeros(3), torch.ones(3)) == 0.0  # a zero gradient is similar to nothing


def test_selection_stats_by_hand() -> None:
    groups = [
        # selected (0.9) is correct; the correct rejected one has sim 0.2: gap_correct 0.6 - 0.2
        [(0.9, 0.6, True), (0.5, 0.2, True), (0.1, 0.0, False)],
        # tie on score: the first wins; it is wrong, so no gap_correct
        [(0.4, 0.1, False), (0.4, 0.5, True)],
    ]
    s = selection_stats(groups)
    assert s["selected"] == pytest.approx((0.6 + 0.1) / 2)
    assert s["rejected"] == pytest.approx((0.2 + 0.0 + 0.5) / 3)
    assert s["gap_correct"] == pytest.approx(0.4) and s["gap_correct_problems"] == 1
    assert s["accuracy"] == 0.5 and s["problems"] == 2
    assert s["spearman"] == pytest.approx(1.0)  # the tied group has no rank correlation and is left out
    assert selection_stats([])["selected"] is None


def test_spearman_handles_ties() -> None:
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert spearman([3, 1, 2], [1, 3, 2]) == pytest.approx(-1.0)
    assert spearman([1, 2], [5, 5]) is None


def test_tiny_similarity_run_end_to_end(tmp_path: Path) -> None:
    """Three PRMs of one training step, one problem per domain, two samples: JSON and PNG
    written, every similarity a cosine (about 50 s of CPU)."""
    pytest.importorskip("matplotlib")
    from prm_plugin.trainers.paper.similarity import run_similarity

    settings = SimilaritySettings(train_rows=8, batch=4, epochs=0.5, reference_rows=2, probe_rows=2, limit=1, n=2)
    report = run_similarity(tmp_path, settings, log=lambda *_: None)
    doc = json.loads((tmp_path / "similarity.json").read_text())
    assert (tmp_path / "similarity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["table"] == report["table"] and "2506.00027" in doc["formula"]
    assert doc["settings"]["n"] == 2 and set(doc["results"]) == {"arith", "codelike", "arith_b"}
    assert set(doc["pairs"]) == {"arith vs codelike", "arith vs arith_b", "arith vs untrained", "codelike vs untrained"}
    for fig in doc["pairs"].values():
        assert set(fig) == {"arith", "codelike"} and all(-1.0 <= v <= 1.0 for v in fig.values())
    for res in doc["results"].values():
        assert res["training"]["steps"] == 1
        for domain in ("arith", "codelike"):
            f = res[domain]
            assert f["problems"] == 1 and f["candidates"] >= f["problems"]
            for key in ("selected", "rejected"):
                assert f[key] is None or -1.0 <= f[key] <= 1.0
            assert 0.0 <= f["accuracy"] <= 1.0
            assert set(f["vs_arith_data"]) >= {"selected", "gap", "spearman"}
    lines = doc["table"].splitlines()
    assert lines[0].startswith("| PRM | trained on | test domain | bon@2 accuracy |") and len(lines) == 2 + 6 + 3 + 4
    assert not any(isinstance(v, float) and math.isnan(v) for v in doc["pairs"]["arith vs codelike"].values())


def test_similarity_is_registered() -> None:
    from prm_plugin.trainers.paper.cli import EXPERIMENTS

    assert EXPERIMENTS["similarity"][0] == "similarity" and "Table 2" in EXPERIMENTS["similarity"][1]
