"""Strategy parameters: the settings every strategy shares, and typed construction from
strings (lm-eval ``model_args``, CLI flags) through ``params_from_kwargs``, which converts
types and rejects unknown keys with the list of valid ones."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prm_plugin.prm.base import AGGREGATIONS


@dataclass
class StrategyParams:
    """Settings shared by every strategy.

    Attributes:
        temperature: sampling temperature of the policy (0 = greedy).
        top_p: nucleus sampling mass.
        seed: base seed; a run is reproducible given the seed.
        aggregation: how step scores become a candidate score (min, last, prod, mean).
        step_delimiter: string between steps; None takes the domain's default
            (``prm_plugin.steps.default_delimiter``).
        max_step_tokens: cap on tokens per generated step.
    """

    temperature: float = 0.8
    top_p: float = 1.0
    seed: int = 0
    aggregation: str = "min"
    step_delimiter: str | None = None
    max_step_tokens: int = 256

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy) and finite, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}."
            )
        if self.step_delimiter == "":
            raise ValueError("step_delimiter must be a non-empty string, or None for the domain default.")
        if self.max_step_tokens < 1:
            raise ValueError(f"max_step_tokens must be >= 1, got {self.max_step_tokens}.")


def param_names(params_cls: type[StrategyParams]) -> list[str]:
    return [f.name for f in dataclasses.fields(params_cls)]


def params_from_kwargs(params_cls: type[Any], kwargs: Mapping[str, Any]) -> Any:
    """Build a params dataclass from (possibly string) values.

    Strings are converted to the field's type (``"4"`` -> 4, ``"true"`` -> True,
    ``"none"`` -> None where allowed). Unknown keys raise a ``ValueError`` naming the
    closest valid key and listing all of them.

    >>> params_from_kwargs(StrategyParams, {"temperature": "0.5", "seed": "3"}).seed
    3
    """
    valid = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(valid), n=1)
        hint = f" Did you mean: {close[0]}?" if close else ""
        raise ValueError(
            f"Unknown parameter {key!r} for {params_cls.__name__}.{hint} "
            f"Valid parameters: {', '.join(sorted(valid))}."
        )
    hints = typing.get_type_hints(params_cls)
    converted = {k: _convert(k, v, hints[k]) for k, v in kwargs.items()}
    return params_cls(**converted)


def _convert(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` (from a string, or checked when already typed), or a
    ``ValueError`` naming the parameter. Numbers must be finite; a bool is not a number."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        # only a literal empty string means None: "\n" (a delimiter) is all whitespace
        if isinstance(value, str) and type(None) in args and (value == "" or value.strip().lower() in ("none", "null")):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(name, value, arg)
            except ValueError:
                continue
        allowed = " or ".join("None" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
        raise ValueError(f"Parameter {name}={value!r} must be {allowed}.")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ValueError(f"Parameter {name}={value!r}: choose one of {', '.join(map(str, args))}.")
    if annotation is bool:
        return _to_bool(name, value)
    if annotation in (int, float):
        return _to_number(name, value, annotation)
    if annotation is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ValueError(f"Parameter {name}={value!r} must be a string.")
        # model_args cannot carry a literal newline; accept the usual escapes.
        return value.replace("\\n", "\n").replace("\\t", "\t")
    return value


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # lm-eval types "1" as 1
        return bool(value)
    low = value.strip().lower() if isinstance(value, str) else None
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"Parameter {name}={value!r} must be a boolean (true/false).")


def _to_number(name: str, value: Any, kind: type) -> Any:
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"Parameter {name}={value!r} must be {what}.")
    if isinstance(value, float) and kind is int:
        raise ValueError(f"Parameter {name}={value!r} must be {what}.")
    try:
        out = kind(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ValueError(f"Parameter {name}={value!r} must be {what}.") from None
    if kind is float and not math.isfinite(out):
        raise ValueError(f"Parameter {name}={value!r} must be a finite number.")
    return out
