"""The WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

gevent must patch the standard library before anything opens a socket, so the
patch comes first, ahead of every other import.
"""
from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402

from app import create_app  # noqa: E402

_gunicorn_log = logging.getLogger("gunicorn.error")
if _gunicorn_log.handlers:  # under gunicorn, log through its handlers and level
    _ours = logging.getLogger("bifrost")
    _ours.handlers = _gunicorn_log.handlers
    _ours.setLevel(_gunicorn_log.level)
    _ours.propagate = False

app = create_app()
