"""``prm-plugin calibrate``: strategy items, typed parameters, and a real (small) run on the
shipped world whose table ``auto`` then chooses from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prm_plugin import world
from prm_plugin.calibrate import expand_items, main, parse_item, typed_params
from prm_plugin.calibration import load_table
from prm_plugin.plugins import UnknownNameError
from prm_plugin.search import Budget


def test_items_parse_and_all_means_every_strategy_but_auto() -> None:
    assert parse_item("majority:weighted=true") == ("majority", {"weighted": "true"})
    with pytest.raises(ValueError, match="name:key=value"):
        parse_item("beam:beam_width")
    items = expand_items("all,majority:weighted=true,bon")
    names = [name for name, _ in items]
    assert "auto" not in names and {"bon", "beam", "dvts", "particle_filter", "greedy"} <= set(names)
    assert names.count("bon") == 1 and ("majority", {"weighted": "true"}) in items
    with pytest.raises(ValueError, match="auto chooses from a calibration table"):
        expand_items("auto")
    with pytest.raises(UnknownNameError, match="Did you mean: bon"):
        expand_items("bonn")


def test_temperature_goes_to_sampling_strategies_and_params_are_typed() -> None:
    assert typed_params("greedy", {}, 0.5) == {}  # greedy decodes at 0
    assert typed_params("beam", {"beam_width": "2"}, 0.5) == {"beam_width": 2, "temperature": 0.5}
    assert typed_params("bon", {"temperature": "0.7"}, 0.5) == {"temperature": 0.7}  # the item's own wins
    assert typed_params("bon", {}, None) == {}
    with pytest.raises(ValueError, match="Unknown parameter 'beam_widht'"):
        typed_params("beam", {"beam_widht": "2"}, None)


@pytest.mark.parametrize(("args", "message"), [
    (["--strategies", "beam:beam_widht=2"], "--strategies: Unknown parameter 'beam_widht'.*Did you mean: beam_width"),
    (["--strategies", "auto"], "--strategies: auto chooses from a calibration table"),
    (["--tasks", "arith_vall"], "--tasks: Unknown task 'arith_vall': give a world set"),
    (["--budgets", "4,x"], "--budgets takes integers"),
    (["--budgets", "0,4"], "--budgets needs integers >= 1"),
])
def test_bad_arguments_are_refused_before_any_model_loads(args: list[str], message: str, tmp_path: Path) -> None:
    base = {"--tasks": "arith_val", "--budgets": "4", "--strategies": "greedy", "--out": str(tmp_path / "t.json")}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    with pytest.raises(SystemExit, match=message):
        main([x for pair in base.items() for x in pair])
    assert not (tmp_path / "t.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (world.paths()["prm"] / "config.json").exists(), reason="the world has not been built")
def test_a_small_calibration_on_the_world_writes_a_table_auto_reads(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "table.json"
    args = ["--tasks", "arith_val", "--budgets", "1,4", "--limit", "2", "--batch", "2",
            "--strategies", "greedy,beam", "--temperature", "0.5", "--out", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["complete"] and doc["command"] == "prm-plugin calibrate " + " ".join(args)
    assert doc["dev_set"]["problems"] == 2 and doc["dev_set"]["tasks"] == ["arith_val"]
    assert [(e["strategy"], e["n"]) for e in doc["entries"]] == [("greedy", 1), ("greedy", 4), ("beam", 4)]
    assert [(s["strategy"], s["n"]) for s in doc["skipped"]] == [("beam", 1)]
    assert "multiple of beam_width" in doc["skipped"][0]["reason"]
    for e in doc["entries"]:
        assert e["accuracy"] in (0.0, 0.5, 1.0) and e["generated_tokens"] > 0
        assert e["seconds_per_problem"] > 0 and e["problems"] == 2
        assert e["params"] == ({} if e["strategy"] == "greedy" else {"temperature": 0.5})
    assert doc["entries"][2]["prm_tokens"] > 0 and doc["entries"][0]["prm_tokens"] == 0
    table = load_table(out)
    from prm_plugin.strategies.auto import Auto

    choice = Auto(table=str(out)).choose(Budget(n=4))
    assert choice.entry.accuracy == max(e.accuracy for e in table.entries)
    # auto with the calibration's seed reruns the chosen entry exactly: same answers, same accuracy
    from prm_plugin.policy.hf import HFPolicy
    from prm_plugin.prm import load_prm
    from prm_plugin.world.evaluate import search_problems
    from prm_plugin.world.tokenizer import build_tokenizer

    problems = world.load_set("arith_val")[:2]
    results = Auto(table=str(out), seed=0).search(
        search_problems(build_tokenizer(), problems), HFPolicy.from_pretrained(str(world.paths()["policy"])),
        load_prm(str(world.paths()["prm"])), Budget(n=4))
    assert {r.trace["auto"]["strategy"] for r in results} == {choice.entry.strategy}
    assert sum(world.is_correct(p, r.text) for p, r in zip(problems, results, strict=True)) / 2 == choice.entry.accuracy
    # --resume keeps what was measured (and what was skipped) and adds only the new budget
    capsys.readouterr()
    assert main([*args[:3], "1,4,8", *args[4:], "--resume"]) == 0
    again = json.loads(out.read_text())
    assert again["entries"][:3] == doc["entries"] and [e["n"] for e in again["entries"][3:]] == [8, 8]
    printed = capsys.readouterr().out
    assert "skipped beam@1" not in printed and "greedy           n=1 " not in printed
