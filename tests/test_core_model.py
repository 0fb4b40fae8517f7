"""Data model, typed params from strings, aggregation, steps and answer keys."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prm_plugin.answers import MathAnswerKey, last_boxed
from prm_plugin.prm.base import aggregate
from prm_plugin.search import Budget, Candidate, Cost, PrefixProposals, Proposal, SearchResult
from prm_plugin.steps import join_steps, split_steps
from prm_plugin.strategy import StrategyParams, params_from_kwargs


@dataclasses.dataclass
class _Params(StrategyParams):
    width: int = 4
    lookahead: int | None = None
    dedupe: bool = True


def test_params_from_strings_convert_types() -> None:
    p = params_from_kwargs(
        _Params,
        {"width": "8", "lookahead": "none", "dedupe": "false", "temperature": "0.5", "step_delimiter": "\\n"},
    )
    assert (p.width, p.lookahead, p.dedupe, p.temperature, p.step_delimiter) == (8, None, False, 0.5, "\n")


def test_params_unknown_key_suggests_and_lists() -> None:
    with pytest.raises(ValueError, match=r"Unknown parameter 'widht'.*Did you mean: width\?.*Valid parameters: .*aggregation"):
        params_from_kwargs(_Params, {"widht": "3"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": "four"}, "must be an integer"),
        ({"dedupe": "maybe"}, "must be a boolean"),
        ({"temperature": "-1"}, "temperature must be >= 0"),
        ({"top_p": "0"}, r"top_p must be in \(0, 1\]"),
        ({"aggregation": "max"}, "aggregation must be one of min, last, prod, mean"),
    ],
)
def test_params_bad_values_say_what_is_allowed(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        params_from_kwargs(_Params, kwargs)


def test_budget_validation() -> None:
    with pytest.raises(ValueError, match="Budget.n must be >= 1"):
        Budget(n=0)
    with pytest.raises(ValueError, match="max_seconds"):
        Budget(n=2, max_seconds=0)


def test_aggregate() -> None:
    assert aggregate([0.9, 0.2, 0.7], "min") == 0.2
    assert aggregate([0.9, 0.2, 0.7], "last") == 0.7
    assert aggregate([0.5, 0.5], "prod") == 0.25
    assert aggregate([0.5, 1.0], "mean") == 0.75
    with pytest.raises(ValueError, match="empty"):
        aggregate([], "min")
    with pytest.raises(ValueError, match="Unknown aggregation 'max'"):
        aggregate([0.1], "max")


def test_search_result_is_json_serialisable() -> None:
    cost = Cost(policy_generated_tokens=10, prm_tokens=12, unique_tokens=12)
    group = PrefixProposals((Proposal("a", 3, "step"), Proposal("b", 4, "eos")), prefill_tokens=5)
    cost.add_proposals(group)
    assert (cost.policy_prefill_tokens, cost.policy_generated_tokens) == (5, 17)
    assert [p.finished for p in group] == [False, True] and len(group) == 2 and group[1].text == "b"
    res = SearchResult("x", [Candidate(["x"], [0.5], 0.5)], 0, cost, {"nodes": []}, "bon")
    assert json.loads(json.dumps(res.to_json()))["cost"]["prm_tokens"] == 12
    assert cost.prm_over_unique == 1.0


@given(st.text(alphabet="ab \n'\"#([{}])\\", max_size=60), st.sampled_from(["math", "code"]))
def test_split_join_is_lossless(text: str, domain: str) -> None:
    assert join_steps(split_steps(text, domain), "\n\n") == text


def test_code_splitter_respects_strings_brackets_and_fences() -> None:
    code = 'x = """a\n\nb"""\n\ny = [1,\n\n2]\n\n# it\'s\nz = 1'
    assert split_steps(code, "code") == ['x = """a\n\nb"""', "y = [1,\n\n2]", "# it's\nz = 1"]
    chat = "Here's how.\n\n```python\ns = '''p\n\nq'''\n\nprint(s)\n```\n\nDone."
    assert split_steps(chat, "code") == [
        "Here's how.", "```python\ns = '''p\n\nq'''", "print(s)\n```", "Done."
    ]


def test_math_answer_key_uses_equivalence() -> None:
    assert last_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert MathAnswerKey.extract(r"so \boxed{\dfrac{1}{2}}") == r"\dfrac{1}{2}"
    assert MathAnswerKey.equivalent(r"\frac{1}{2}", "0.5")
    assert not MathAnswerKey.equivalent("2", "3")
    assert not MathAnswerKey.equivalent(None, "3")
