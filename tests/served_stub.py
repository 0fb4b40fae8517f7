"""A stub OpenAI-compatible / vLLM ``/pooling`` server on 127.0.0.1 for the served-model
fault tests: scripted faults first (slow, 429, 500, dropped connection, garbage), then
answers computed from the request. Every request is recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[str, dict[str, Any]], dict[str, Any]]


class Stub:
    """What the server does: ``faults`` are used up one per request (``"slow:<s>"``,
    ``"429"``, ``"500"``, ``"drop"``, ``"garbage"``, ``"400"``), then ``respond(path, body)``
    answers (an answer's ``"__status__"`` key sets its HTTP status). ``requests`` records
    ``(path, body)``."""

    def __init__(self, respond: Responder, faults: list[str] | None = None, models: dict[str, Any] | None = None):
        self.respond, self.faults = respond, list(faults or [])
        self.models = models or {"object": "list", "data": [{"id": "stub-model", "max_model_len": None}]}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.url = ""

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def _serve(self, body: dict[str, Any]) -> None:
            with stub.lock:
                stub.requests.append((self.path, body))
            fault = stub.next_fault()
            if fault is not None and fault.startswith("slow:"):
                time.sleep(float(fault[5:]))
                fault = None
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if fault in ("429", "500", "503", "400"):
                self._send(int(fault), json.dumps({"error": {"message": f"scripted {fault}"}}).encode(),
                           {"Retry-After": "0"} if fault == "429" else None)
                return
            if fault == "garbage":
                self._send(200, b"<html>not json</html>")
                return
            if self.path.endswith("/models"):
                self._send(200, json.dumps(stub.models).encode())
                return
            answer = stub.respond(self.path, body)
            self._send(int(answer.pop("__status__", 200)), json.dumps(answer).encode())

        def do_GET(self) -> None:
            self._serve({})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(json.loads(self.rfile.read(length) or b"{}"))

    return Handler


@contextmanager
def running(stub: Stub) -> Iterator[Stub]:
    """Serve ``stub`` on a free port of 127.0.0.1 until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
