"""The search flags ``prm-plugin evalplus`` and ``prm-plugin lcb`` share.

Every flag maps onto one model_args key of ``--model prm_guided`` (see
``lm_eval_config.ModelSettings``); ``--model-args`` takes any other key in the same
``key=value,...`` syntax (strategy parameters, ``policy.<k>=``, ``prm.<k>=``, ...).
"""

from __future__ import annotations

import argparse
from typing import Any

from prm_plugin.integrations.search_session import parse_model_args
from prm_plugin.search import OVERFLOW_POLICIES

#: flag destination -> model_args key
FLAG_KEYS = {
    "policy": "pretrained", "policy_backend": "policy", "prm": "prm", "prm_family": "prm_family",
    "strategy": "strategy", "n": "n", "max_policy_tokens": "max_policy_tokens", "max_seconds": "max_seconds",
    "device": "device", "dtype": "dtype", "trace_path": "trace_path", "on_overflow": "on_overflow",
    "strict": "strict",
}


def add_search_flags(parser: argparse.ArgumentParser, *, trace_path: bool = True) -> None:
    """Add the policy / PRM / strategy / budget flags to ``parser``."""
    g = parser.add_argument_group("search (the keys of `--model prm_guided`)")
    g.add_argument("--policy", metavar="MODEL", help="policy model: a local path or Hub id (pretrained=)")
    g.add_argument("--policy-backend", metavar="NAME",
                   help="hf (default), vllm, any lm-eval model name, or package.module:attr (policy=)")
    g.add_argument("--prm", metavar="PRM", help="PRM checkpoint path or Hub id; its family is auto-detected")
    g.add_argument("--prm-family", metavar="NAME", help="force a PRM family instead of auto-detection")
    g.add_argument("--strategy", metavar="NAME", help="search strategy (default bon; `prm-plugin strategies`)")
    g.add_argument("--n", type=int, metavar="N", help="budget: candidates / rollouts per problem (default 8)")
    g.add_argument("--max-policy-tokens", type=int, metavar="T", help="cap on policy tokens per problem")
    g.add_argument("--max-seconds", type=float, metavar="S", help="cap on search seconds per problem")
    g.add_argument("--device", help="device of the policy and PRM (default: CUDA when available)")
    g.add_argument("--dtype", help="dtype of the policy and PRM, e.g. bfloat16")
    g.add_argument("--on-overflow", choices=OVERFLOW_POLICIES, default=None,
                   help="inputs longer than the policy's or PRM's context: truncate (cut from the left; "
                        "default), skip, or error")
    g.add_argument("--strict", action="store_true", default=None,
                   help="stop at the first problem whose search fails (default: record it with an empty "
                        "answer, go on, exit with status 3 at the end)")
    if trace_path:
        g.add_argument("--trace-path", metavar="DIR", help="folder for search traces and the cost summary")
    g.add_argument("--model-args", metavar="K=V,...", default="",
                   help="any other prm_guided key: strategy parameters (beam_width=4, temperature=0.7, ...), "
                        "policy.<k>=..., prm.<k>=...")


def search_args(ns: argparse.Namespace) -> dict[str, Any]:
    """The model_args the flags in ``ns`` give; a key set twice is an error."""
    args = parse_model_args(ns.model_args) if ns.model_args else {}
    if ns.model_args and "=" not in ns.model_args:
        raise ValueError(f"--model-args {ns.model_args!r}: expected key=value pairs separated by commas.")
    for dest, key in FLAG_KEYS.items():
        value = getattr(ns, dest, None)
        if value is None:
            continue
        if key in args:
            flag = "--" + dest.replace("_", "-")
            raise ValueError(f"{key} is given both by {flag} and in --model-args; keep one.")
        args[key] = value
    return args


def to_model_args(args: dict[str, Any]) -> str:
    """``key=value,...`` for ``args`` (what EvalPlus's ``--model`` carries)."""
    bad = [k for k, v in args.items() if "," in str(v) or "," in k]
    if bad:
        raise ValueError(f"model_args values cannot contain commas: {', '.join(f'{k}={args[k]!r}' for k in bad)}.")
    return ",".join(f"{k}={v}" for k, v in args.items())
