"""The plugin manager: built-in and third-party strategies, PRM families and answer keys.

Everything, built-ins included, arrives through the ``prm_plugin`` entry point group.
Loading is lazy and happens once per registry. Set ``PRM_PLUGIN_LOAD_PLUGINS`` to a
comma-separated list of entry-point or distribution names to load only those (an
empty value loads none).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from prm_plugin import hookspecs

PROJECT = "prm_plugin"
ENTRY_POINT_GROUP = "prm_plugin"
LOAD_PLUGINS_ENV = "PRM_PLUGIN_LOAD_PLUGINS"


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid."""


class UnknownNameError(KeyError, LookupError):
    """A strategy, PRM family or answer-key domain that nobody registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Registration:
    """One registered object and where it came from."""

    name: str
    obj: Any
    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def source(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return f"plugin {self.plugin!r}"


@dataclass(frozen=True)
class _Kind:
    hook: str
    noun: str  # "strategy", used in messages
    key_attr: str  # attribute holding the registered name
    required: tuple[str, ...]  # callables the object must have


_KINDS = {
    "strategies": _Kind("register_strategies", "strategy", "name", ("search",)),
    "reward_models": _Kind("register_reward_models", "PRM family", "name", ("detect", "load")),
    "answer_keys": _Kind("register_answer_keys", "answer key domain", "domain", ("extract", "equivalent")),
}


class PluginRegistry:
    """A pluggy ``PluginManager`` plus validated, source-tagged registries."""

    def __init__(self, load_entrypoints: bool = True) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._load_entrypoints = load_entrypoints
        self._entrypoints_loaded = False
        self._sources: dict[str, tuple[str | None, str | None]] = {}
        self._cache: dict[str, dict[str, Registration]] = {}

    # -- loading -----------------------------------------------------------------
    def register_plugin(
        self, plugin: object, name: str | None = None, distribution: str | None = None,
        version: str | None = None,
    ) -> str:
        """Register a plugin object or module directly (tests, applications)."""
        plugin_name = self.pm.register(plugin, name=name)
        if plugin_name is None:
            raise PluginError(f"Plugin {name or plugin!r} is blocked or already registered.")
        self._sources[plugin_name] = (distribution, version)
        self.pm.check_pending()
        self._cache.clear()
        return plugin_name

    def load(self) -> None:
        """Load entry points once (idempotent), then validate every hook implementation."""
        if self._entrypoints_loaded or not self._load_entrypoints:
            return
        self._entrypoints_loaded = True
        wanted = _wanted_plugins()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist_name = ep.dist.name if ep.dist is not None else None
            if wanted is not None and ep.name not in wanted and dist_name not in wanted:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            self._load_entrypoint(ep, dist_name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{exc} (is a hook name misspelled?)") from exc
        self._cache.clear()

    def _load_entrypoint(self, ep: EntryPoint, dist_name: str | None) -> None:
        version = ep.dist.version if ep.dist is not None else None
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"Plugin entry point {ep.name!r} ({ep.value}) from {dist_name or 'an unknown distribution'} "
                f"failed to import: {exc!r}. Fix or uninstall it, or set {LOAD_PLUGINS_ENV} to the "
                "plugins you want."
            ) from exc
        try:
            self.pm.register(plugin, name=ep.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"Plugin {ep.name!r} from {dist_name}: {exc}") from exc
        self._sources[ep.name] = (dist_name, version)

    # -- registries --------------------------------------------------------------
    def registrations(self, kind: str) -> dict[str, Registration]:
        """All registrations of a kind (``strategies``, ``reward_models``, ``answer_keys``)."""
        self.load()
        if kind not in self._cache:
            self._cache[kind] = self._collect(_KINDS[kind])
        return self._cache[kind]

    def _collect(self, kind: _Kind) -> dict[str, Registration]:
        found: dict[str, Registration] = {}
        caller = getattr(self.pm.hook, kind.hook)
        for impl in caller.get_hookimpls():  # registration order
            plugin_name = impl.plugin_name
            dist, version = self._sources.get(plugin_name, (None, None))

            def register(obj: Any, _plugin: str = plugin_name, _dist=dist, _ver=version) -> None:
                reg = Registration(_validate(kind, obj, _plugin), obj, _plugin, _dist, _ver)
                if reg.name in found:
                    raise PluginError(
                        f"Duplicate {kind.noun} {reg.name!r}: registered by {found[reg.name].source} "
                        f"and by {reg.source}. Uninstall one of them, or set {LOAD_PLUGINS_ENV}."
                    )
                found[reg.name] = reg

            impl.function(register=register)
        return found

    def get(self, kind: str, name: str) -> Any:
        regs = self.registrations(kind)
        if name in regs:
            return regs[name].obj
        noun = _KINDS[kind].noun
        if not regs:
            raise UnknownNameError(
                f"Unknown {noun} {name!r}: none are registered. Is prm-plugin installed "
                f"(pip install -e .) and is {LOAD_PLUGINS_ENV} unset?"
            )
        close = difflib.get_close_matches(name, list(regs), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"Unknown {noun} {name!r}.{hint} Available: {', '.join(sorted(regs))}")


def _validate(kind: _Kind, obj: Any, plugin: str) -> str:
    name = getattr(obj, kind.key_attr, None)
    if not isinstance(name, str) or not name.strip():
        raise PluginError(
            f"Plugin {plugin!r} registered {obj!r} as a {kind.noun} without a non-empty "
            f"string attribute {kind.key_attr!r}."
        )
    missing = [m for m in kind.required if not callable(getattr(obj, m, None))]
    if missing:
        raise PluginError(
            f"Plugin {plugin!r} registered {kind.noun} {name!r} without {', '.join(missing)}()."
        )
    if kind.hook == "register_strategies" and not is_dataclass(getattr(obj, "Params", None)):
        raise PluginError(
            f"Plugin {plugin!r} registered strategy {name!r} whose Params is not a dataclass."
        )
    return name


def _wanted_plugins() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry, loading entry points on first use."""
    global _registry
    if _registry is None:
        _registry = PluginRegistry()
    _registry.load()
    return _registry


def get_plugin_manager() -> pluggy.PluginManager:
    return get_registry().pm


def get_strategy(name: str) -> type:
    """The strategy class registered under ``name``."""
    return get_registry().get("strategies", name)


def get_reward_model_family(name: str) -> Any:
    return get_registry().get("reward_models", name)


def get_answer_key(domain: str) -> Any:
    return get_registry().get("answer_keys", domain)


def list_strategies() -> dict[str, Registration]:
    return dict(get_registry().registrations("strategies"))


RegisterFn = Callable[[Any], None]
