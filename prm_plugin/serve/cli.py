"""``prm-plugin serve``: the search as an OpenAI-compatible HTTP service.

::

    prm-plugin serve --policy Qwen/Qwen2.5-Math-1.5B-Instruct --prm Qwen/Qwen2.5-Math-PRM-7B \\
        --strategy beam --n 16 --model-args beam_width=4 [--host 127.0.0.1] [--port 8000] [--api-key KEY]

The search flags are those of ``prm-plugin evalplus`` / ``lcb`` (the keys of ``lm_eval
--model prm_guided``); the session is built by the same ``SearchSession.build``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from prm_plugin.integrations.lm_eval_config import ModelSettings
from prm_plugin.integrations.search_flags import add_search_flags, search_args
from prm_plugin.serve.config import DEFAULT_HOST, DEFAULT_PORT, ServeConfig

#: The API key may come from the environment, so it stays out of ``ps`` listings.
API_KEY_ENV = "PRM_PLUGIN_API_KEY"
#: model_args keys with no meaning for a server (it keeps no traces or store and reads no docs).
UNUSED_KEYS = ("trace_path", "resume", "search_batch_size", "question_field", "batch_size", "max_batch_size")


def build_parser() -> argparse.ArgumentParser:
    d = ServeConfig()
    p = argparse.ArgumentParser(prog="prm-plugin serve",
                                description="Serve reward-guided search over the OpenAI API "
                                            "(/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics).")
    s = p.add_argument_group("server")
    s.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    s.add_argument("--api-key", help=f"require `Authorization: Bearer KEY` (or set {API_KEY_ENV})")
    s.add_argument("--served-model-name", help="the model name clients send (default: --policy, else prm-plugin)")
    s.add_argument("--max-batch", type=int, default=d.max_batch, help="problems per strategy.search call at most")
    s.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_s * 1000,
                   help="a batch starts once requests pause this long (default %(default)s)")
    s.add_argument("--batch-max-wait-ms", type=float, default=d.batch_max_wait_s * 1000,
                   help="the longest a request waits for an idle server to start its batch (default %(default)s)")
    s.add_argument("--max-queue", type=int, default=d.max_queue, help="problems queued or running at most (then 503)")
    s.add_argument("--max-n", type=int, default=d.max_n, help="largest search budget n (and integer parameter) a "
                                                               "request may ask for")
    s.add_argument("--max-tokens", type=int, default=d.max_tokens, help="largest max_tokens a request may ask for")
    s.add_argument("--max-choices", type=int, default=d.max_choices, help="largest OpenAI n (answers per prompt)")
    s.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="largest request body")
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    add_search_flags(p, trace_path=False)
    return p


def typed_backend_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    """``policy.<k>=`` / ``prm.<k>=`` values typed as lm-eval types ``--model_args`` values
    (``1024`` -> int, ``0.5`` -> float, ``true`` -> bool), so ``policy.batch_size=1024`` reaches
    the policy as a number; the other keys are typed by the settings and Params dataclasses.

    >>> typed_backend_kwargs({"policy.batch_size": "1024", "prm.dtype": "float32", "n": "4"})
    {'policy.batch_size': 1024, 'prm.dtype': 'float32', 'n': '4'}
    """
    return {k: _typed(v) if k.startswith(("policy.", "prm.")) and isinstance(v, str) else v
            for k, v in args.items()}


def _typed(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def main(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(list(argv))
    try:
        args = typed_backend_kwargs(search_args(ns))
    except ValueError as exc:
        raise SystemExit(f"prm-plugin serve: {exc}") from None
    if not args.get("pretrained") and not args.get("policy"):
        raise SystemExit("prm-plugin serve: give at least --policy (and --prm for strategies that rank).")
    api_key = ns.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        config = ServeConfig(
            model_name=ns.served_model_name or str(args.get("pretrained") or "prm-plugin"), api_key=api_key,
            max_batch=ns.max_batch, batch_wait_s=ns.batch_wait_ms / 1000,
            batch_max_wait_s=ns.batch_max_wait_ms / 1000, max_queue=ns.max_queue, max_n=ns.max_n,
            max_tokens=ns.max_tokens, max_choices=ns.max_choices, max_body_bytes=ns.max_body_bytes,
            default_max_tokens=min(int(args.get("max_gen_toks", ServeConfig.default_max_tokens)), ns.max_tokens),
        )
        n = int(args.get("n", ModelSettings.n))
    except ValueError as exc:
        raise SystemExit(f"prm-plugin serve: {exc}") from None
    if n > config.max_n:
        raise SystemExit(f"prm-plugin serve: --n {n} exceeds --max-n {config.max_n}; raise --max-n or lower --n.")
    logging.basicConfig(level=ns.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        from prm_plugin.serve.app import create_app
        from prm_plugin.serve.server import bind, run, url_of
    except ImportError as exc:
        raise SystemExit(f"prm-plugin serve needs the serve extra: pip install 'prm-plugin[serve]' ({exc}).") from None
    from prm_plugin.integrations.search_session import SearchSession

    try:
        sock = bind(ns.host, ns.port)  # before loading models: a taken port fails fast
    except OSError as exc:
        raise SystemExit(f"prm-plugin serve: cannot listen on {ns.host}:{ns.port}: {exc}") from None

    try:
        session = SearchSession.build(args, harness="prm-plugin serve", unused=UNUSED_KEYS)
    except ValueError as exc:
        sock.close()
        raise SystemExit(f"prm-plugin serve: {exc}") from None
    if ns.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        print(f"prm-plugin serve: warning: listening on {ns.host} without --api-key: anyone who can reach this "
              "address can run searches.", file=sys.stderr)
    print(f"prm-plugin serve: {session.strategy_name} n={session.budget.n} as model {config.model_name!r} "
          f"on {url_of(sock)}/v1", flush=True)
    run(create_app(session, config), sock, log_level=ns.log_level)
    return 0
