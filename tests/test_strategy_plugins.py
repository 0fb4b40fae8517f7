"""Strategies as plugins: entry points, the third-party example, torch-free imports,
params validation, and the shared tree/run helpers' contracts."""

from __future__ import annotations

import doctest
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakePolicy, FakePRM

import prm_plugin.strategies._puct
import prm_plugin.strategies.majority
import prm_plugin.tree
from prm_plugin.plugins import get_strategy
from prm_plugin.search import Budget, PrefixProposals, Problem, Proposal
from prm_plugin.strategies.beam import BeamSearch
from prm_plugin.strategies.bon import BestOfN
from prm_plugin.strategies.majority import MajorityVote
from prm_plugin.strategy import SearchRun, SearchTree, params_from_kwargs

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = ["auto", "beam", "bon", "dvts", "greedy", "majority", "mcts", "particle_filter"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PRM_PLUGIN_LOAD_PLUGINS"}
    env.update(extra)
    return env


def test_builtin_strategies_are_registered_from_the_project_entry_points() -> None:
    out = subprocess.run([sys.executable, "-m", "prm_plugin.cli", "strategies"], capture_output=True,
                         text=True, env=_env(), timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()}
    for name in BUILTINS:
        assert rows[name] == "prm-plugin", out.stdout
        assert get_strategy(name).name == name


def test_importing_strategies_does_not_import_torch() -> None:
    code = ("import sys, prm_plugin.tree\n"
            + "".join(f"import prm_plugin.strategies.{n}\n" for n in BUILTINS)
            + f"import prm_plugin; [prm_plugin.get_strategy(n) for n in {BUILTINS!r}]\n"
            + "heavy = [m for m in ('torch', 'vllm', 'transformers') if m in sys.modules]\n"
            + "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(PRM_PLUGIN_LOAD_PLUGINS=",".join(BUILTINS)), timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="session")
def third_party_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package really installed (pip, no network) into a private target dir,
    so the shared environment is left untouched."""
    tmp = tmp_path_factory.mktemp("third_party")
    src, site = tmp / "src", tmp / "site"
    shutil.copytree(ROOT / "examples" / "third_party_strategy", src)  # pip writes build files
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return site


def test_third_party_strategy_is_listed_with_its_distribution(third_party_site: Path) -> None:
    env = _env(PYTHONPATH=os.pathsep.join([str(third_party_site), str(ROOT)]))
    out = subprocess.run([sys.executable, "-m", "prm_plugin.cli", "strategies"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert ["shortest", "prm-plugin-shortest", "0.1.0"] in rows  # the column width follows the longest name
    assert ["bon", "prm-plugin", "0.1.0"] in rows


def test_third_party_strategy_runs_through_the_registry(third_party_site: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from fakes import FakePolicy\n"
        "import prm_plugin\n"
        "from prm_plugin.search import Budget, Problem\n"
        "tree = {'P:': [('long answer', 9, 'eos'), ('short', 3, 'eos'), ('cut', 2, 'length')]}\n"
        "S = prm_plugin.get_strategy('shortest')\n"
        "[r] = S().search([Problem(prompt='P:', question='q')], FakePolicy(tree), None, Budget(n=3))\n"
        "print(r.text, r.chosen, r.cost.policy_generated_tokens, r.strategy)\n"
    )
    env = _env(PYTHONPATH=os.pathsep.join([str(third_party_site), str(ROOT)]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["short", "1", "14", "shortest"]  # a truncated one never wins


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (BeamSearch, {"beam_width": 0}, r"beam_width must be >= 1 \(children per survivor\)"),
    (BeamSearch, {"lookahead": -1}, r"lookahead must be >= 0 \(0 turns it off\)"),
    (BeamSearch, {"max_steps": "0"}, "max_steps must be >= 1"),
    (BeamSearch, {"beam_widht": 2}, "Unknown parameter 'beam_widht'.*Did you mean: beam_width"),
    (BestOfN, {"samples_per_call": 0}, "samples_per_call must be >= 1, or None"),
    (BestOfN, {"aggregation": "max"}, "aggregation must be one of min, last, prod, mean"),
    (MajorityVote, {"weighted": "maybe"}, r"must be a boolean \(true/false\)"),
    (MajorityVote, {"temperature": -1}, r"temperature must be >= 0 \(0 = greedy\)"),
])
def test_params_validation_messages_name_the_range_and_the_fix(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_params_convert_from_strings() -> None:
    params = params_from_kwargs(BeamSearch.Params, {"beam_width": "2", "lookahead": "1", "step_delimiter": "\\n"})
    assert (params.beam_width, params.lookahead, params.step_delimiter) == (2, 1, "\n")
    assert MajorityVote(weighted="true").params.weighted is True


def test_custom_step_delimiter_is_used_for_stops_prefixes_and_text() -> None:
    tree = {"P:": [("a", 1, "step")], "P:a\n": [("b", 1, "eos")]}
    policy = FakePolicy(tree, delimiter="\n")
    [res] = BeamSearch(beam_width=1, step_delimiter="\n").search(
        [Problem(prompt="P:", question="q")], policy, FakePRM({}, default=0.5), Budget(n=1))
    assert policy.calls[0].stop == ("\n",) and policy.calls[1].prefixes == ("P:a\n",)
    assert res.text == "a\nb"


def test_tree_dedupes_siblings_and_upgrades_rollout_nodes() -> None:
    tree = SearchTree(Problem(prompt="P:", question="q"), "\n\n")
    a, new_a = tree.add(0, "a")
    again, new_again = tree.add(0, "a")
    assert new_a and not new_again and again is a
    r = tree.add_path(a.id, ["x", "y"], role="rollout", n_tokens=7, stop_reason="eos")
    assert (r.n_tokens, r.total_tokens, r.finished) == (7, 7, True)
    x = tree.nodes[r.parent or 0]
    assert (x.role, x.n_tokens, x.finished) == ("rollout", 0, False)
    x.score = 0.3
    up, new_up = tree.add(a.id, "x", n_tokens=2, stop_reason="step")
    assert up is x and new_up and (x.role, x.n_tokens, x.score) == ("step", 2, 0.3)
    assert [n.text for n in tree.children(a.id)] == ["x"]


def test_unique_prm_tokens_follow_the_additive_formula() -> None:
    tree = SearchTree(Problem(prompt="P:", question="qq"), "\n\n")
    a, _ = tree.add(0, "aaa")
    b, _ = tree.add(a.id, "b")
    c, _ = tree.add(a.id, "cc")
    unscored, _ = tree.add(0, "zzzz")
    for node in (a, b, c):
        node.score = 0.5
    # count(q, ()) = 2; each scored node adds len(text) + 1; the unscored one adds nothing
    assert tree.unique_prm_tokens(FakePRM({})) == 2 + 4 + 2 + 3
    assert unscored.score is None


class _BadPolicy:
    def propose(self, prefixes, *, n, **kw):  # one proposal too few
        return [PrefixProposals((Proposal("x", 1, "eos"),) * (n - 1), 0) for _ in prefixes]

    def count_tokens(self, text: str) -> int:
        return len(text)


def test_search_run_rejects_policies_and_prms_that_break_the_contract() -> None:
    run = SearchRun([Problem(prompt="P:", question="q")], _BadPolicy(), None, Budget(n=2),
                    BestOfN.Params())
    with pytest.raises(RuntimeError, match="n per prefix"):
        run.sample(2)

    class ShortPRM(FakePRM):
        def score(self, queries):
            return super().score(queries)[:-1]

    run = SearchRun([Problem(prompt="P:", question="q")], _BadPolicy(), ShortPRM({}, default=0.1),
                    Budget(n=2), BestOfN.Params())
    a, _ = run.trees[0].add(0, "a")
    b, _ = run.trees[0].add(0, "b")
    with pytest.raises(RuntimeError, match="do not match its queries"):
        run.score([(0, a.id), (0, b.id)])


@pytest.mark.parametrize("module", [prm_plugin.tree, prm_plugin.strategies._puct, prm_plugin.strategies.majority])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
