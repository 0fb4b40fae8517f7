"""Running the app under uvicorn: in the foreground (the CLI) or on a thread (tests,
benchmarks), always on a socket we bind ourselves, so port 0 picks a free port whose
number is known before the first request."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one). Connections made
    before the server runs wait in the backlog until it accepts them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app: ASGIApp, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(app, lifespan="on", log_level=log_level, access_log=False,
                            timeout_keep_alive=30)
    return uvicorn.Server(config)


def run(app: ASGIApp, sock: socket.socket, *, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM stop it gracefully)."""
    _server(app, log_level).run(sockets=[sock])


class ServerThread:
    """The app served on a background thread, for tests and benchmarks::

        with ServerThread(create_app(session)) as server:
            httpx.get(server.url + "/health")

    Leaving the block (or ``stop()``) shuts the server down and joins the thread.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = _server(app, log_level)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="prm-serve", daemon=True)

    def start(self, timeout_s: float = 60.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("prm-plugin serve: the server thread stopped during start-up (see the log).")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"prm-plugin serve did not start within {timeout_s} s.")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> Any:
        self.stop()
        return None
