"""The plugin manager: discovery, validation, duplicates, suggestions, restriction."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types

import pytest

import prm_plugin
from prm_plugin.plugins import LOAD_PLUGINS_ENV, PluginError, PluginRegistry, UnknownNameError
from prm_plugin.strategy import Strategy, StrategyParams


def _strategy(name: str) -> type[Strategy]:
    return type(f"S_{name}", (Strategy,), {"name": name, "search": lambda self, *a: []})


def _plugin(*names: str) -> types.SimpleNamespace:
    @prm_plugin.hookimpl
    def register_strategies(register):
        for n in names:
            register(_strategy(n))

    return types.SimpleNamespace(register_strategies=register_strategies)


def test_inline_plugin_is_found_with_its_source(registry: PluginRegistry) -> None:
    registry.register_plugin(_plugin("best_of_everything"), name="mine", distribution="my-dist", version="1.2")
    reg = registry.registrations("strategies")["best_of_everything"]
    assert reg.obj.name == "best_of_everything"
    assert (reg.plugin, reg.source) == ("mine", "my-dist 1.2")
    assert registry.get("strategies", "best_of_everything") is reg.obj


def test_duplicate_name_raises_naming_both_plugins(registry: PluginRegistry) -> None:
    registry.register_plugin(_plugin("dup"), name="first")
    registry.register_plugin(_plugin("dup"), name="second")
    with pytest.raises(PluginError, match=r"Duplicate strategy 'dup'.*'first'.*'second'"):
        registry.registrations("strategies")


def test_unknown_name_suggests_and_lists(registry: PluginRegistry) -> None:
    registry.register_plugin(_plugin("bon", "beam", "majority", "mcts"), name="builtins")
    with pytest.raises(UnknownNameError) as err:
        registry.get("strategies", "bets_of_n")
    msg = str(err.value)
    assert "Unknown strategy 'bets_of_n'" in msg
    assert "Available: beam, bon, majority, mcts" in msg
    with pytest.raises(UnknownNameError, match="Did you mean: bon"):
        registry.get("strategies", "bom")


def test_misspelled_hook_fails_check_pending(registry: PluginRegistry) -> None:
    @prm_plugin.hookimpl
    def register_stratgies(register):  # misspelled on purpose
        pass

    with pytest.raises(Exception, match="register_stratgies"):
        registry.register_plugin(types.SimpleNamespace(register_stratgies=register_stratgies), name="typo")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (type("NoName", (Strategy,), {"search": lambda self: []}), "non-empty string attribute 'name'"),
        (type("NoSearch", (), {"name": "x", "Params": StrategyParams}), "without search"),
        (type("BadParams", (), {"name": "x", "Params": dict, "search": lambda s: []}), "not a dataclass"),
    ],
)
def test_invalid_registrations_are_refused(registry: PluginRegistry, obj: type, message: str) -> None:
    @prm_plugin.hookimpl
    def register_strategies(register):
        register(obj)

    registry.register_plugin(types.SimpleNamespace(register_strategies=register_strategies), name="bad")
    with pytest.raises(PluginError, match=message):
        registry.registrations("strategies")


def test_answer_keys_and_families_validate_their_contracts(registry: PluginRegistry) -> None:
    @prm_plugin.hookimpl
    def register_answer_keys(register):
        register(types.SimpleNamespace(domain="chess", extract=lambda t, p=None: t))  # no equivalent

    registry.register_plugin(types.SimpleNamespace(register_answer_keys=register_answer_keys), name="k")
    with pytest.raises(PluginError, match="answer key domain 'chess' without equivalent"):
        registry.registrations("answer_keys")


def test_builtin_answer_keys_come_from_the_entry_point() -> None:
    reg = prm_plugin.get_registry().registrations("answer_keys")
    assert {"math", "code"} <= set(reg)
    assert reg["math"].distribution == "prm-plugin"


def _run(code: str, env_value: str | None) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != LOAD_PLUGINS_ENV}
    if env_value is not None:
        env[LOAD_PLUGINS_ENV] = env_value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_environment_variable_restricts_loading() -> None:
    code = "import prm_plugin; print(sorted(prm_plugin.get_registry().pm.list_name_plugin()))"
    everything = _run(code, None)
    assert everything.returncode == 0, everything.stderr
    assert "answer_keys" in everything.stdout
    nothing = _run(code, "")
    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stdout.strip() == "[]"
    only = _run(code, "answer_keys")
    assert "'answer_keys'" in only.stdout


def test_params_dataclass_registry_lists_params(registry: PluginRegistry) -> None:
    @dataclasses.dataclass
    class P(StrategyParams):
        width: int = 2

    strat = type("W", (Strategy,), {"name": "w", "Params": P, "search": lambda self, *a: []})
    registry.register_plugin(_plugin_for(strat), name="w")
    assert registry.get("strategies", "w")(width="3").params.width == 3


def _plugin_for(obj: type) -> types.SimpleNamespace:
    @prm_plugin.hookimpl
    def register_strategies(register):
        register(obj)

    return types.SimpleNamespace(register_strategies=register_strategies)
