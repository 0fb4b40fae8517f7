"""The ASGI gate in front of the app: body-size limit and per-request metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prm_plugin.serve.errors import error_body
from prm_plugin.serve.metrics import Metrics

#: Paths counted under their own label (anything else is ``other``, so a scan of random
#: paths cannot grow the metrics without bound).
ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")
SEARCH_ENDPOINTS = ("/v1/completions", "/v1/chat/completions")


def too_large(limit: int) -> str:
    return f"The request body exceeds this server's limit of {limit} bytes (--max-body-bytes)."


class Gate:
    """Refuses bodies over ``max_body_bytes`` with 413 (by ``Content-Length`` up front, and
    while reading a body sent without one), and books every request in ``metrics``."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        start = time.perf_counter()
        status = [0]

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            if _content_length(scope) > self.max_body_bytes:
                await _send_json(send_counted, 413, error_body(413, too_large(self.max_body_bytes)))
                return
            await self.app(scope, self._limited(receive), send_counted)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0] or 500)).inc()
            if endpoint in SEARCH_ENDPOINTS and status[0] == 200:
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    def _limited(self, receive: Receive) -> Receive:
        seen = [0]
        limit = self.max_body_bytes

        async def limited() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise HTTPException(413, too_large(limit))
            return message

        return limited


def _content_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # malformed: the server rejects it before we get here
    return 0


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
