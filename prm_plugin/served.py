"""JSON over HTTP to served models: round-robin over replicas, bounded concurrency, retries.

The served policy (``prm_plugin.policy.openai``) and the served PRM
(``prm_plugin.prm.served``) talk to their servers through ``JSONClient``, built on
``httpx`` (``pip install 'prm-plugin[served]'``; imported on construction, not here).

* Replicas: ``base_url`` is one URL or several separated by ``|``; requests are spread
  round-robin, and a retry goes to the next replica.
* Concurrency: ``post_many`` sends its bodies from at most ``concurrency`` threads.
* Retries: a timeout, a dropped or refused connection, HTTP 429 and HTTP 5xx are retried
  up to ``max_retries`` times, waiting ``backoff * 2**k`` seconds (at most ``max_backoff``;
  a ``Retry-After`` header within that bound is honoured) before retry ``k + 1``. Then
  ``ServerError`` names every URL tried and the last failure. Any other 4xx (a bad request,
  an unknown model) and a reply that is not a JSON object fail at once: retrying cannot
  mend them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = "served models need httpx, which is not installed: pip install 'prm-plugin[served]'"
_RETRIED_STATUS = (429, 500, 502, 503, 504)


class ServerError(RuntimeError):
    """A served model failed to answer (after retries, where retrying can help)."""


def split_urls(base_url: str | Sequence[str]) -> list[str]:
    """The replicas of a ``base_url`` setting, without trailing slashes.

    >>> split_urls("http://a:8000/v1/ | http://b:8000/v1")
    ['http://a:8000/v1', 'http://b:8000/v1']
    """
    parts = base_url.split("|") if isinstance(base_url, str) else list(base_url)
    urls = [p.strip().rstrip("/") for p in parts if p.strip()]
    if not urls:
        raise ValueError("base_url is empty: give the server's URL, e.g. http://127.0.0.1:8000/v1 "
                         "(several replicas separated by '|').")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {url!r} is not an http:// or https:// URL.")
    return urls


class JSONClient:
    """POST/GET JSON to one or several replicas of a server (see the module docstring).

    Args:
        base_url: one URL, several separated by ``|``, or a list.
        api_key: sent as ``Authorization: Bearer <key>`` when given.
        timeout: seconds for one attempt (connect, read and write each).
        max_retries: retries after the first attempt.
        backoff: seconds before the first retry; doubled for each later one.
        max_backoff: the longest wait between attempts.
        concurrency: requests in flight at once (``post_many``).
        name: what the server is, for error messages (``"policy server"``).
        transport: an ``httpx`` transport (tests).
    """

    def __init__(self, base_url: str | Sequence[str], *, api_key: str | None = None, timeout: float = 300.0,
                 max_retries: int = 4, backoff: float = 0.5, max_backoff: float = 8.0, concurrency: int = 16,
                 name: str = "server", transport: Any = None) -> None:
        try:
            import httpx
        except ImportError as err:
            raise ImportError(INSTALL_HINT) from err
        if max_retries < 0 or concurrency < 1 or timeout <= 0 or backoff < 0:
            raise ValueError(f"{name}: need max_retries >= 0, concurrency >= 1, timeout > 0 and backoff >= 0; got "
                             f"{max_retries}, {concurrency}, {timeout}, {backoff}.")
        self.urls = split_urls(base_url)
        self.name, self.timeout, self.max_retries = name, timeout, max_retries
        self.backoff, self.max_backoff, self.concurrency = backoff, max_backoff, concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._httpx = httpx
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport,
                                    limits=httpx.Limits(max_connections=concurrency * len(self.urls)))
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        #: Attempts that failed and were retried, since construction.
        self.retries = 0

    def get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body)

    def post_many(self, path: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST every body (at most ``concurrency`` at once); the replies in order. The
        first failure is raised once the requests in flight have ended."""
        if len(bodies) <= 1:
            return [self.post(path, b) for b in bodies]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="prm-plugin-http")
        futures = [self._pool.submit(self.post, path, b) for b in bodies]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        httpx = self._httpx
        with self._lock:
            first = next(self._turn)
        tried: list[str] = []
        last = ""
        for attempt in range(self.max_retries + 1):
            url = self.urls[(first + attempt) % len(self.urls)] + path
            if url not in tried:
                tried.append(url)
            wait = self.backoff * 2 ** attempt
            try:
                reply = self._client.request(method, url, json=body)
            except httpx.TimeoutException:
                last = f"{url}: no answer within {self.timeout:g} s"
            except httpx.TransportError as exc:  # refused, reset or dropped connection
                last = f"{url}: connection failed ({type(exc).__name__}: {exc})"
            else:
                if reply.status_code in _RETRIED_STATUS:
                    last = f"{url}: HTTP {reply.status_code} {_excerpt(reply.text)}"
                    wait = max(wait, _retry_after(reply.headers.get("retry-after")))
                elif reply.status_code >= 400:
                    raise ServerError(f"The {self.name} at {url} refused the request: HTTP {reply.status_code} "
                                      f"{_excerpt(reply.text)}")
                else:
                    return _json_object(reply, url, self.name)
            if attempt < self.max_retries:
                with self._lock:
                    self.retries += 1
                time.sleep(min(wait, self.max_backoff))
        raise ServerError(f"The {self.name} did not answer {method} {path} after {self.max_retries + 1} attempts "
                          f"(tried {', '.join(tried)}); last failure: {last}")


def _json_object(reply: Any, url: str, name: str) -> dict[str, Any]:
    try:
        data = reply.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ServerError(f"The {name} at {url} answered HTTP {reply.status_code} with a body that is not a JSON "
                          f"object: {_excerpt(reply.text)} (is base_url the server's API root?)")
    return data


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def served_context(client: JSONClient, model: str | None, path: str = "/models") -> int | None:
    """``max_model_len`` of ``model`` from the server's model list (vLLM reports it), or None."""
    try:
        listing = client.get(path)
    except ServerError as exc:
        logger.warning("Could not read the context length from %s%s (%s); prompts are not checked "
                       "against it. Pass max_model_len= to set it.", client.urls[0], path, exc)
        return None
    for card in listing.get("data") or []:
        if isinstance(card, dict) and (model is None or model in (card.get("id"), card.get("root"))):
            value = card.get("max_model_len")
            return value if isinstance(value, int) and value > 1 else None
    return None
