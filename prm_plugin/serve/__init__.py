"""``prm-plugin serve``: reward-guided search behind the OpenAI API.

``create_app(session, config)`` is the ASGI app (FastAPI + the body-size/metrics gate);
``ServerThread`` runs it on a background thread; ``prm_plugin.serve.cli`` is the command.
Needs the ``serve`` extra (``pip install 'prm-plugin[serve]'``); the names below import
FastAPI and uvicorn only when first used, so the command can say so when they are missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prm_plugin.serve.config import ServeConfig

if TYPE_CHECKING:
    from prm_plugin.serve.app import create_app
    from prm_plugin.serve.server import ServerThread

__all__ = ["ServeConfig", "ServerThread", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from prm_plugin.serve.app import create_app

        return create_app
    if name == "ServerThread":
        from prm_plugin.serve.server import ServerThread

        return ServerThread
    raise AttributeError(f"module 'prm_plugin.serve' has no attribute {name!r}")
