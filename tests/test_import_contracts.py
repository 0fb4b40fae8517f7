"""The architecture's walls are held by import-linter (``.ci/lint-imports``, run by CI):
the contracts pass on the tree and fail on a planted violation of each kind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "lint-imports"

pytestmark = pytest.mark.skipif(
    shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
    reason="import-linter is not installed (pip install -e '.[dev]')",
)


def _lint(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", str(SCRIPT), str(repo)], capture_output=True, text=True, env=env, timeout=300)


def _plant(copy: Path, relative: str, line: str) -> None:
    path = copy / relative
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_every_contract() -> None:
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(("relative", "line", "contract"), [
    ("strategies/bon.py", "import torch", "Strategies talk to policies and PRMs only through their interfaces"),
    ("strategies/beam.py", "from prm_plugin.policy.hf import HFPolicy", "Strategies talk to policies"),
    ("prm_plugin/demo.py", "import prm_plugin.strategies.bon", "Only the plugin registry loads strategies"),
    ("prm_plugin/prm/scorer.py", "from prm_plugin.tree import SearchTree", "Policies and PRMs know nothing of search"),
    ("prm_plugin/world/generator.py", "from prm_plugin.trainers import aslaf", "never imports the trainer"),
    ("prm_plugin/prm/scorer.py", "from prm_plugin.policy import _decode", "private module"),
])
def test_a_planted_violation_breaks_its_contract(source_copy: Path, tmp_path: Path, relative: str, line: str,
                                                 contract: str) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(source_copy, copy)
    _plant(copy, relative, line)
    out = _lint(copy)
    assert out.returncode != 0, out.stdout
    report = " ".join(out.stdout.split())  # import-linter wraps long contract names
    assert f"{contract}" in report and "BROKEN" in report.split(contract, 1)[1][:200], out.stdout
    assert "1 broken" in report, out.stdout
