from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prm_plugin.plugins import PluginRegistry


@pytest.fixture
def registry() -> PluginRegistry:
    """A fresh plugin registry with no entry points loaded; tests add inline plugins."""
    return PluginRegistry(load_entrypoints=False)


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The distribution's sources copied out, so builds never touch the shared working tree."""
    dest = tmp_path_factory.mktemp("src") / "prm-plugin"
    dest.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for pkg in ("prm_plugin", "task_configs", "strategies", "trainers"):
        shutil.copytree(REPO / pkg, dest / pkg, ignore=ignore)
    return dest
