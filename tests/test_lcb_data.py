"""LiveCodeBench problems: Hub loading (offline, from a cache laid out as huggingface_hub
keeps it), local files, the pickle gate, the date window, row checks and prompts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import constants
from tiny import train_tokenizer

from prm_plugin.integrations import livecodebench as lcb

FIXTURE = Path(__file__).parent / "fixtures" / "lcb" / "code_generation_lite.jsonl"
ALL_IDS = ["abc380_a", "3580", "3581", "2033C", "abc300_a"]


def ids(problems: list[dict]) -> list[str]:
    return [str(p["question_id"]) for p in problems]


def test_local_pickled_private_tests_need_trust_pickle():
    with pytest.raises(lcb.UntrustedPickleError, match=r"abc380_a are pickled.*--trust-pickle"):
        lcb.load_problems(lcb.Source(data_files=[str(FIXTURE)]))
    assert ids(lcb.load_problems(lcb.Source(data_files=[str(FIXTURE)], trust_pickle=True))) == ALL_IDS


def test_local_json_private_tests_need_no_trust(tmp_path):
    rows = [line for line in FIXTURE.read_text().splitlines() if json.loads(line)["question_id"] in ("3581", "2033C")]
    path = tmp_path / "json_only.jsonl"
    path.write_text("\n".join(rows) + "\n")
    assert ids(lcb.load_problems(lcb.Source(data_files=[str(path)]))) == ["3581", "2033C"]


@pytest.mark.parametrize(("start", "end", "expected"), [
    ("2024-08-01", "2025-02-01", ["abc380_a", "3580", "3581", "2033C"]),
    (None, "2024-11-30", ["abc380_a", "2033C", "abc300_a"]),
    ("2024-12-14", None, ["3580", "3581"]),  # inclusive: a contest at 18:30 that day counts
])
def test_date_window(start, end, expected):
    source = lcb.Source(data_files=[str(FIXTURE)], trust_pickle=True, start_date=start, end_date=end)
    assert ids(lcb.load_problems(source)) == expected


def _hub_cache(root: Path) -> Path:
    """A huggingface_hub cache holding the fixture as release v1's test.jsonl (blob + snapshot symlink)."""
    repo = root / "datasets--livecodebench--code_generation_lite"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    shutil.copy(FIXTURE, repo / "blobs" / "e3b0c442")
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "test.jsonl").symlink_to(repo / "blobs" / "e3b0c442")
    return root


def test_the_hub_copy_loads_offline_and_is_trusted(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache = _hub_cache(tmp_path / "hub")
    (path,) = lcb.hub_files(lcb.Source(release="v1", cache_dir=str(cache)))
    assert lcb.is_hub_file(path, str(cache)) and Path(path).name == "test.jsonl"
    assert ids(lcb.load_problems(lcb.Source(release="v1", cache_dir=str(cache)))) == ALL_IDS
    # the same bytes elsewhere are a user file: refused without --trust-pickle
    copy = tmp_path / "test.jsonl"
    shutil.copy(path, copy)
    assert not lcb.is_hub_file(copy, str(cache))
    with pytest.raises(lcb.UntrustedPickleError):
        lcb.load_problems(lcb.Source(data_files=[str(copy)], cache_dir=str(cache)))


def test_release_names_map_to_the_cumulative_files(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache = _hub_cache(tmp_path / "hub")
    with pytest.raises(FileNotFoundError):  # huggingface_hub's LocalEntryNotFoundError
        lcb.hub_files(lcb.Source(release="release_v2", cache_dir=str(cache)))  # needs test.jsonl + test2.jsonl
    with pytest.raises(ValueError, match="Unknown LiveCodeBench release"):
        lcb.load_problems(lcb.Source(release="release_v99x", cache_dir=str(cache)))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda rows: [{k: v for k, v in rows[0].items() if k != "metadata"}], "missing field"),
    (lambda rows: [rows[0], rows[0]], "appear more than once"),
])
def test_bad_rows_are_errors(tmp_path, edit, message):
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(rows)))
    with pytest.raises(ValueError, match=message):
        lcb.load_problems(lcb.Source(data_files=[str(path)], trust_pickle=True))
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not a JSON line"):
        lcb.load_problems(lcb.Source(data_files=[str(path)]))
    with pytest.raises(FileNotFoundError):
        lcb.load_problems(lcb.Source(data_files=[str(tmp_path / "missing.jsonl")]))


def test_prompts_follow_livecodebench():
    functional, stdin = (json.loads(line) for line in FIXTURE.read_text().splitlines()[1:4:2])
    user = lcb.user_prompt(functional)
    assert user.startswith("### Question:\n" + functional["question_content"])
    assert "### Format: You will use the following starter code" in user
    assert f"```python\n{functional['starter_code']}\n```" in user
    assert user.endswith("### Answer: (use the provided format with backticks)\n\n")
    assert "Read the inputs from stdin" in lcb.user_prompt(stdin) and "# YOUR CODE HERE" in lcb.user_prompt(stdin)
    tokenizer = train_tokenizer()
    chat = lcb.policy_prompt(stdin, tokenizer)
    assert chat == tokenizer.apply_chat_template(
        [{"role": "system", "content": lcb.SYSTEM_MESSAGE}, {"role": "user", "content": lcb.user_prompt(stdin)}],
        tokenize=False, add_generation_prompt=True)
    assert lcb.policy_prompt(stdin, tokenizer, use_chat_template=False) == f"{lcb.SYSTEM_MESSAGE}\n\n{lcb.user_prompt(stdin)}"
    assert lcb.policy_prompt(stdin, None) == lcb.policy_prompt(stdin, tokenizer, use_chat_template=False)
    assert lcb.extract_code("Sure.\n```python\nprint(1)\n```\nDone.") == "print(1)"
    assert lcb.extract_code("no code block") == ""
