"""Add the ``prm_guided`` backend to EvalPlus 0.3.x by wrapping two functions.

EvalPlus picks a decoder in ``evalplus.provider.make_model`` from a hard-coded list of
backends. The import hook (``_lm_eval_hook.py``, installed by the ``.pth`` file) calls
``patch(module)`` right after ``evalplus.provider`` or ``evalplus.codegen`` executes:

* ``make_model(...)`` with ``backend="prm_guided"`` builds
  ``prm_plugin.integrations.evalplus.PRMGuidedDecoder``; every other backend goes to
  EvalPlus's own function with the caller's arguments, untouched.
* ``evalplus.codegen.codegen(...)`` tells a ``PRMGuidedDecoder`` the run's output
  file, ``n_samples`` and dataset version before generating (so each final solution
  gets its own seed and the search traces land next to the samples), then calls
  EvalPlus's function unchanged.

Nothing here imports EvalPlus, torch or the decoder until ``prm_guided`` is used.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

BACKEND = "prm_guided"
_WRAPPED = "_prm_plugin_wrapped"
_last_target: list[str] = []


def last_target_path() -> str | None:
    """The samples file of the latest ``codegen`` run with the ``prm_guided`` backend."""
    return _last_target[-1] if _last_target else None


def patch(module: ModuleType) -> bool:
    """Wrap ``make_model`` (and ``codegen`` in ``evalplus.codegen``) of ``module``; idempotent.

    Returns whether ``module`` now offers the ``prm_guided`` backend.
    """
    done = False
    if callable(getattr(module, "make_model", None)):
        module.make_model = wrap_make_model(module.make_model)  # type: ignore[attr-defined]
        done = True
    if module.__name__ == "evalplus.codegen" and callable(getattr(module, "codegen", None)):
        module.codegen = wrap_codegen(module.codegen)  # type: ignore[attr-defined]
    return done


def wrap_make_model(original: Callable[..., Any]) -> Callable[..., Any]:
    """``make_model`` that builds the PRM-guided decoder for ``backend="prm_guided"``."""
    if getattr(original, _WRAPPED, False):
        return original
    signature = inspect.signature(original)

    @functools.wraps(original)
    def make_model(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        if bound.arguments.get("backend") != BACKEND:
            return original(*args, **kwargs)
        from prm_plugin.integrations.evalplus import PRMGuidedDecoder

        return PRMGuidedDecoder(**bound.arguments)

    setattr(make_model, _WRAPPED, True)
    return make_model


def wrap_codegen(original: Callable[..., Any]) -> Callable[..., Any]:
    """``codegen`` that hands the run's settings to a PRM-guided decoder first."""
    if getattr(original, _WRAPPED, False):
        return original
    signature = inspect.signature(original)

    @functools.wraps(original)
    def codegen(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        model: Any = bound.arguments.get("model")
        begin = getattr(model, "begin_run", None)
        if not getattr(model, "is_prm_guided", False) or begin is None:
            return original(*args, **kwargs)
        _last_target.append(str(bound.arguments["target_path"]))
        begin(target_path=bound.arguments["target_path"], n_samples=bound.arguments["n_samples"],
              dataset=bound.arguments["dataset"], version=bound.arguments.get("version", "default"))
        try:
            return original(*args, **kwargs)
        finally:
            model.end_run()

    setattr(codegen, _WRAPPED, True)
    return codegen
