"""``prm-plugin serve``: reward-guided search behind the OpenAI API.

``create_app(session, config)`` is the ASGI app (FastAPI + the body-size/metrics gate);
``ServerThread`` runs it on a background thread; ``prm_plugin.serve.cli`` is the command.
Needs the ``serve`` extra (``pip install 'prm-plugin[serve]'``).
"""

from prm_plugin.serve.app import create_app
from prm_plugin.serve.config import ServeConfig
from prm_plugin.serve.server import ServerThread

__all__ = ["ServeConfig", "ServerThread", "create_app"]
