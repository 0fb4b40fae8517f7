from __future__ import annotations

import pytest

from prm_plugin.plugins import PluginRegistry


@pytest.fixture
def registry() -> PluginRegistry:
    """A fresh plugin registry with no entry points loaded; tests add inline plugins."""
    return PluginRegistry(load_entrypoints=False)
