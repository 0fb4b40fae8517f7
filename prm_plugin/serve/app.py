"""The FastAPI app: routes, bearer-token check, errors in the OpenAI shape."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from prm_plugin.integrations.search_session import SearchSession
from prm_plugin.serve.config import ServeConfig
from prm_plugin.serve.errors import APIError, error_body
from prm_plugin.serve.middleware import Gate
from prm_plugin.serve.schemas import ChatCompletionRequest, CompletionRequest
from prm_plugin.serve.service import ClientGone, SearchService

logger = logging.getLogger(__name__)


def create_app(session: SearchSession, config: ServeConfig | None = None) -> ASGIApp:
    """The ASGI app serving ``session``'s search over the OpenAI API.

    Args:
        session: the configured search (policy, PRM, strategy, budget).
        config: limits, batching and the API key (defaults: ``ServeConfig()``).

    Returns:
        The app, wrapped in the body-size and metrics gate; ``app.state.service`` (on the
        inner FastAPI app, also reachable as ``gate.app``) is the ``SearchService``.
    """
    config = config or ServeConfig()
    service = SearchService(session, config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()

    app = FastAPI(title="prm-plugin serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    _install_errors(app)
    auth = [Depends(_bearer(config.api_key))]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": config.model_name, "queue_depth": service.batcher.depth}

    @app.get("/metrics", dependencies=auth)
    async def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "created": service.started,
                                            "owned_by": "prm-plugin", "search": service.describe()}]}

    @app.post("/v1/completions", dependencies=auth)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        return await _answer(service.complete(body, _disconnect_waiter(request)))

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        return await _answer(service.chat(body, _disconnect_waiter(request)))

    return Gate(app, max_body_bytes=config.max_body_bytes, metrics=service.metrics)


async def _answer(work: Awaitable[dict[str, Any]]) -> Any:
    try:
        return await work
    except ClientGone:
        return Response(status_code=499)  # nobody reads it: the client left


def _disconnect_waiter(request: Request) -> Callable[[], Awaitable[None]]:
    """Returns when the client disconnects (the body has been read by then)."""

    async def wait() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    return wait


def _bearer(api_key: str | None) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "Missing or wrong API key: send the header `Authorization: Bearer <key>` with the "
                                "key the server was started with (--api-key).", code="invalid_api_key")

    return check


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc.errors())
        return JSONResponse(error_body(400, message, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = ("Unknown path. Endpoints: /v1/completions, /v1/chat/completions, /v1/models, /health, "
                       "/metrics.")
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("prm-plugin serve: unhandled error")
        return JSONResponse(error_body(500, f"Internal error: {type(exc).__name__}: {exc}"), status_code=500)


def _validation_message(errors: Any) -> tuple[str, str | None]:
    """One readable line per pydantic error, and the first field at fault."""
    lines, params = [], []
    for err in list(errors)[:5]:
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        field = ".".join(loc)
        if err.get("type") == "json_invalid":
            lines.append(f"The request body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')}).")
            continue
        if err.get("type") == "extra_forbidden":
            lines.append(f"Unknown field {field!r}: this server accepts OpenAI's fields plus `search`, "
                         "`return_trace` and `prm_question`.")
        elif err.get("type") == "missing":
            lines.append(f"Missing required field {field!r}.")
        else:
            lines.append(f"{field or 'body'}: {err.get('msg')}.")
        params.append(field)
    return " ".join(lines) or "Invalid request.", (params[0] if params else None)
