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


def create_app(config: "GatewayConfig | None" = None) -> "Flask":
    from flask import Flask
    from werkzeug.exceptions import HTTPException

    from app import handlers
    from app.blueprints import health, inference
    from app.blueprints import realtime  # aiortc, in the worker only; its media thread starts at the first call
    from app.config import load_config
    from app.engine import Engine
    from app.errors import GatewayError
    from app.gateway import EXTENSION
    from app.middleware import GatewayMiddleware
    from app.responses import error_response

    config = config or load_config()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.client.max_request_body_size_mb * 1024 * 1024
    app.extensions[EXTENSION] = Engine(config)

    app.register_blueprint(inference.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(realtime.bp)

    app.wsgi_app = GatewayMiddleware(app.wsgi_app, config.client)
    app.register_error_handler(GatewayError, error_response)
    app.register_error_handler(HTTPException, handlers.http_error)
    app.register_error_handler(Exception, handlers.unexpected_error)
    log.info("gateway ready: %d provider(s) from %s", len(config.providers), config.source)
    return app
