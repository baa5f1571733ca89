"""The gateway's Flask application factory.

Importing this package must stay cheap and free of network libraries: gunicorn's
master imports ``app.config`` to check config.json before it forks, and a worker's
gevent patching only reaches modules imported after it. So ``create_app`` imports
the rest of the application when it runs, inside the (patched) worker.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.config import GatewayConfig

log = logging.getLogger("bifrost")
_engines: list = []  # the engines this process serves, for shutdown()


def create_app(config: "GatewayConfig | None" = None) -> "Flask":
    from flask import Flask
    from werkzeug.exceptions import HTTPException

    from app import handlers
    from app.blueprints import health, inference, realtime, surfaces
    from app.config import current_config
    from app.engine import Engine
    from app.errors import GatewayError
    from app.gateway import EXTENSION
    from app.middleware import GatewayMiddleware
    from app.responses import error_response

    config = config or current_config()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.client.max_request_body_size_mb * 1024 * 1024
    engine = Engine(config)
    engine.pricing.warm()
    app.extensions[EXTENSION] = engine
    _engines.append(engine)

    app.register_blueprint(inference.bp)
    app.register_blueprint(health.bp)
    surfaces.register(app)  # /openai, /anthropic, /genai and the framework prefixes
    from app.blueprints import mcp as mcp_routes
    from app.blueprints.api import mcp as mcp_api

    app.register_blueprint(mcp_routes.bp)
    app.register_blueprint(mcp_api.bp)
    _install_governance(app, engine, config)
    from app.blueprints.api import logs as api_logs
    from app.plugins import metrics

    app.register_blueprint(api_logs.bp)
    metrics.install(app, config)  # GET /metrics and the per-route HTTP series
    app.register_blueprint(realtime.bp)

    app.wsgi_app = GatewayMiddleware(app.wsgi_app, config.client)
    app.register_error_handler(GatewayError, error_response)
    app.register_error_handler(HTTPException, handlers.http_error)
    app.register_error_handler(Exception, handlers.unexpected_error)
    log.info("gateway ready: %d provider(s) from %s", len(config.providers), config.source)
    return app


def _install_governance(app: "Flask", engine, config: "GatewayConfig") -> None:
    """auth_config on every request (before routing), and the /api/session and /api/governance routes."""
    from flask import request

    from app.auth import Auth
    from app.blueprints.api import governance, session
    from app.middleware import CONTEXT_KEY

    auth = Auth(config.raw or {}, engine.plugins.get("governance").service.store)
    engine.plugins.get("governance").service.on_change.append(auth.forget_sessions)
    app.extensions[session.AUTH] = auth
    app.register_blueprint(session.bp)
    app.register_blueprint(governance.bp)
    if auth.enabled:
        app.before_request(lambda: auth.check(request.environ, request.environ[CONTEXT_KEY].virtual_key))


def shutdown() -> None:
    """The worker is stopping (gunicorn's worker_exit): let every plugin flush what it holds."""
    while _engines:
        _engines.pop().plugins.close()
