"""Register ``prm_guided`` with the stock ``lm_eval`` and ``evalplus`` CLIs, from interpreter start.

lm-eval 0.4.x reads no entry points, so ``lm_eval --model prm_guided`` only works if
something registers the model before the CLI looks it up. The distribution ships
``prm_plugin_lm_eval.pth`` (see ``PTH_FILENAME``); its single import line loads *this
file by path* (without importing ``prm_plugin``, which would cost ~45 ms at every
interpreter start) and calls ``install()``.

``install()`` puts a tiny finder at the front of ``sys.meta_path``. It does nothing
for any import except ``lm_eval.models``: for that one it wraps the real loader so
that, right after ``lm_eval/models/__init__.py`` has executed (and registered the
built-in models), ``prm_guided`` is registered as a *lazy* entry pointing at
``prm_plugin.integrations.lm_eval:PRMGuidedLM``. Registering earlier would be wrong:
lm-eval's ``get_model`` only imports ``lm_eval.models`` when its registry is empty,
so an early registration would hide ``hf``, ``vllm`` and every other built-in.

The same machinery serves EvalPlus 0.3.x, which hard-codes its backends: a second
finder reacts to ``evalplus.provider`` and ``evalplus.codegen`` only, and once each
has executed, ``prm_plugin.integrations._evalplus_hook.patch`` wraps ``make_model``
(and ``codegen``) so that ``--backend prm_guided`` builds this package's decoder and
every other backend goes to EvalPlus untouched.

Rules this module keeps:

* It never imports ``lm_eval`` or ``evalplus`` itself (only reacts when someone else does).
* Nothing here may break interpreter start or the import of a hooked module:
  every step is wrapped, and a failure is reported on stderr, never raised.
* ``PRM_PLUGIN_NO_LM_EVAL_HOOK=1`` turns the lm-eval part off and
  ``PRM_PLUGIN_NO_EVALPLUS_HOOK=1`` the EvalPlus part (checked in the ``.pth`` line,
  which skips everything when both are set, and again in ``install()``).
* Only the standard library is used, and the module is self-contained, so it can be
  loaded standalone from the ``.pth`` line as well as imported normally.
"""

from __future__ import annotations

import contextlib  # already imported by site at start-up: free
import os
import sys

# Runtime imports stay minimal (this module is loaded at every interpreter start):
# typing and importlib.abc alone would cost ~12 ms, so the types are for checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

MODEL_NAME = "prm_guided"
TARGET = "prm_plugin.integrations.lm_eval:PRMGuidedLM"
HOOKED_MODULE = "lm_eval.models"
DISABLE_ENV = "PRM_PLUGIN_NO_LM_EVAL_HOOK"
PTH_FILENAME = "prm_plugin_lm_eval.pth"
_MARKER = "_prm_plugin_lm_eval_hook"
#: EvalPlus: the modules whose execution triggers the patch, and its switch.
EVALPLUS_MODULES = ("evalplus.provider", "evalplus.codegen")
EVALPLUS_DISABLE_ENV = "PRM_PLUGIN_NO_EVALPLUS_HOOK"
EVALPLUS_PATCHER = "prm_plugin.integrations._evalplus_hook"
_EVALPLUS_MARKER = "_prm_plugin_evalplus_hook"
_ANY_MARKER = "_prm_plugin_import_hook"  # set on every finder of this module


def disabled(env: str = DISABLE_ENV) -> bool:
    """Whether the user switched a hook off (any value but empty/0/false/no)."""
    return os.environ.get(env, "").strip().lower() not in ("", "0", "false", "no")


def install() -> bool:
    """Put the finders at the front of ``sys.meta_path`` (idempotent).

    A target module that was already imported is handled right away instead.
    Returns whether the lm-eval hook is active.
    """
    if not disabled(EVALPLUS_DISABLE_ENV):
        for name in EVALPLUS_MODULES:
            if name in sys.modules:
                patch_evalplus(sys.modules[name])
        _add_finder(_EVALPLUS_MARKER, EVALPLUS_MODULES, EVALPLUS_DISABLE_ENV, patch_evalplus)
    if disabled():
        return False
    if HOOKED_MODULE in sys.modules:
        register(sys.modules[HOOKED_MODULE])
    _add_finder(_MARKER, (HOOKED_MODULE,), DISABLE_ENV, register)
    return True


def _add_finder(marker: str, modules: tuple[str, ...], env: str, callback: Any) -> None:
    if not any(getattr(f, marker, False) for f in sys.meta_path):
        finder = _Finder(modules, env, callback)
        setattr(finder, marker, True)
        sys.meta_path.insert(0, finder)


def uninstall() -> None:
    """Remove every copy of the finders (tests; the ``.pth`` copy included)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, _ANY_MARKER, False)]


def patch_evalplus(module: ModuleType) -> bool:
    """Add the ``prm_guided`` backend to an executed EvalPlus module; never raises."""
    try:
        import importlib

        return bool(importlib.import_module(EVALPLUS_PATCHER).patch(module))
    except Exception as exc:
        _warn_evalplus(f"adding the {MODEL_NAME!r} backend to {getattr(module, '__name__', module)} failed: {exc!r}")
        return False


def _warn_evalplus(message: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"prm-plugin: {message}; `--backend {MODEL_NAME}` may be unavailable. Use `prm-plugin evalplus ...` "
            f"instead, or set {EVALPLUS_DISABLE_ENV}=1 to silence this.\n"
        )


def register(models_module: ModuleType | None = None) -> bool:
    """Register ``prm_guided`` in lm-eval's model registry; never raises.

    Uses a lazy ``"module:Class"`` entry when the registry supports it (lm-eval >=
    0.4.9), otherwise a small shim class that imports the real one when built.
    Returns whether ``prm_guided`` is registered afterwards.
    """
    try:
        registry_mod = sys.modules.get("lm_eval.api.registry")
        if registry_mod is None:
            # lm_eval.models always imports it; import it here only if it is missing.
            import importlib

            registry_mod = importlib.import_module("lm_eval.api.registry")
        model_registry = getattr(registry_mod, "model_registry", None)
        if model_registry is not None and hasattr(model_registry, "register"):
            if MODEL_NAME not in model_registry:
                model_registry.register(MODEL_NAME, target=TARGET)
            return True
        legacy = getattr(registry_mod, "MODEL_REGISTRY", None)
        if isinstance(legacy, dict):
            if MODEL_NAME not in legacy:
                legacy[MODEL_NAME] = _shim_class()
            return True
        _warn("lm-eval's model registry has an unknown shape")
    except Exception as exc:
        _warn(f"registering {MODEL_NAME!r} failed: {exc!r}")
    return False


def _shim_class() -> type:
    """A subclass of lm-eval's ``LM`` whose construction returns the real model."""
    from lm_eval.api.model import LM

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
        module_name, _, attr = TARGET.partition(":")
        import importlib

        real = getattr(importlib.import_module(module_name), attr)
        return real(*args, **kwargs)

    return type("PRMGuidedLMShim", (LM,), {"__new__": __new__, "__doc__": "Imports PRMGuidedLM lazily."})


def _warn(message: str) -> None:
    with contextlib.suppress(Exception):  # a closed stderr must not break an import
        sys.stderr.write(
            f"prm-plugin: {message}; `--model {MODEL_NAME}` may be unavailable. "
            f"Use `prm-plugin lm-eval ...` instead, or set {DISABLE_ENV}=1 to silence this.\n"
        )


class _Finder:
    """Wraps the loader of its target modules; ignores every other import.

    ``callback(module)`` runs right after a target module has executed; it must
    never raise (``register`` and ``patch_evalplus`` report failures themselves).
    """

    _prm_plugin_import_hook = True

    def __init__(self, modules: tuple[str, ...], env: str, callback: Any) -> None:
        self.modules = modules
        self.env = env
        self.callback = callback

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.modules or disabled(self.env):
            return None
        try:
            spec = _find_with_others(self, fullname, path, target)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            spec.loader = _Loader(spec.loader, self.callback)  # type: ignore[assignment]  # duck-typed Loader
            return spec
        except Exception as exc:
            (_warn if self.env == DISABLE_ENV else _warn_evalplus)(f"the import hook failed on {fullname}: {exc!r}")
            return None  # let the normal machinery import the module unchanged


def _find_with_others(
    me: object, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> ModuleSpec | None:
    for finder in list(sys.meta_path):
        if finder is me or getattr(finder, _ANY_MARKER, False):
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


class _Loader:
    """Runs the real loader, restores it on the module, then calls the callback."""

    def __init__(self, wrapped: Any, callback: Any = None) -> None:
        self._wrapped = wrapped
        self._callback = callback if callback is not None else register

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Nothing else should ever see the wrapper: put the real loader back first.
        with contextlib.suppress(Exception):
            module.__loader__ = self._wrapped
            if module.__spec__ is not None:
                module.__spec__.loader = self._wrapped
        self._wrapped.exec_module(module)
        self._callback(module)

    def __getattr__(self, name: str) -> Any:  # get_filename, get_code, is_package, ...
        return getattr(self._wrapped, name)
