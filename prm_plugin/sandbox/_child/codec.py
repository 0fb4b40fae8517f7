"""A tagged-JSON codec for test inputs and outputs crossing the sandbox boundary.

Only plain values cross: None, bool, int, float (inf/nan too), str, bytes, complex, and
list/tuple/dict/set/frozenset of those. The encoder (run by the child, so untrusted)
converts subclasses and numpy scalars/arrays to plain values and refuses anything else,
so an object whose ``__eq__`` always returns True never reaches a comparison. The
decoder (run by the parent) rebuilds exact builtin types only and refuses malformed
input, so a forged frame can at worst produce a wrong plain value.

>>> decode(encode((1, [2.5, float("inf")], {"a": {3}})))
(1, [2.5, inf], {'a': {3}})
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

MAX_DEPTH = 64
_SAFE_INT = 2**53


class CodecError(ValueError):
    """A value that cannot cross the boundary, or a malformed encoding."""


def encode(value: Any, depth: int = 0) -> Any:
    """Plain value -> JSON-ready structure (tags for non-JSON types)."""
    if depth > MAX_DEPTH:
        raise CodecError(f"value nested deeper than {MAX_DEPTH}")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value if -_SAFE_INT < value < _SAFE_INT else {"t": "int", "v": hex(value)}
    if t is float:
        return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
    if t is list:
        return [encode(v, depth + 1) for v in value]
    if t is tuple:
        return {"t": "tuple", "v": [encode(v, depth + 1) for v in value]}
    if t is dict:
        return {"t": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if t is set or t is frozenset:
        return {"t": t.__name__, "v": [encode(v, depth + 1) for v in value]}
    if t is bytes:
        return {"t": "bytes", "v": base64.b64encode(value).decode("ascii")}
    if t is complex:
        return {"t": "complex", "v": [encode(value.real), encode(value.imag)]}
    return encode(_plain(value), depth + 1)


def _plain(value: Any) -> Any:
    """Subclass or numpy value -> the equal plain builtin, read through base-class slots."""
    # Base-class slots read the stored value and ignore overridden dunders.
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes(bytearray(value))
    if isinstance(value, complex):
        return complex(float.__float__(value.real), float.__float__(value.imag))
    if isinstance(value, tuple):
        return tuple(tuple.__iter__(value))
    if isinstance(value, list):
        return list(list.__iter__(value))
    if isinstance(value, dict):
        return dict(dict.items(value))
    if isinstance(value, (set, frozenset)):
        return set(set.__iter__(value)) if isinstance(value, set) else frozenset(frozenset.__iter__(value))
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()  # arrays and scalars alike
    raise CodecError(f"output of type {type(value).__qualname__} cannot be compared; return plain values")


def dumps(value: Any) -> str:
    """``json.dumps(encode(value))`` with compact separators."""
    return json.dumps(encode(value), separators=(",", ":"), allow_nan=False)


def decode(data: Any, depth: int = 0) -> Any:
    """Inverse of :func:`encode`; raises CodecError on anything malformed."""
    if depth > MAX_DEPTH + 2:
        raise CodecError("encoding nested too deep")
    if data is None or type(data) in (bool, str, int):
        return data
    if type(data) is float:
        return data
    if type(data) is list:
        return [decode(v, depth + 1) for v in data]
    if type(data) is not dict or set(data) != {"t", "v"}:
        raise CodecError(f"malformed encoding: {str(data)[:80]}")
    tag, v = data["t"], data["v"]
    try:
        if tag == "int":
            return int(v, 16)
        if tag == "float" and v in ("inf", "-inf", "nan"):
            return float(v)
        if tag == "bytes":
            return base64.b64decode(v.encode("ascii"), validate=True)
        if tag == "complex":
            return complex(decode(v[0], depth + 1), decode(v[1], depth + 1))
        items = [decode(x, depth + 1) for x in v] if type(v) is list else None
        if items is None:
            raise CodecError(f"malformed {tag}")
        if tag == "tuple":
            return tuple(items)
        if tag == "set":
            return set(items)
        if tag == "frozenset":
            return frozenset(items)
        if tag == "dict":
            return dict((k, val) for k, val in (_pair(i) for i in items))
    except (TypeError, ValueError, AttributeError) as exc:  # unhashable keys, bad base64, ...
        raise CodecError(f"malformed {tag}: {exc}") from None
    raise CodecError(f"unknown tag {tag!r}")


def _pair(item: Any) -> tuple[Any, Any]:
    if type(item) is not list or len(item) != 2:
        raise CodecError("dict entries must be [key, value] pairs")
    return item[0], item[1]


def loads(text: str | bytes) -> Any:
    """Parse and decode; every failure is a CodecError."""
    try:
        return decode(json.loads(text))
    except CodecError:
        raise
    except (ValueError, RecursionError, TypeError) as exc:
        raise CodecError(f"not valid JSON: {str(exc)[:120]}") from None
