"""gunicorn settings; flags on the command line still override each of them.

BIFROST_HOST / BIFROST_PORT choose the bind address (default 127.0.0.1:8080),
WEB_CONCURRENCY the number of workers (default: one per CPU).
"""
import multiprocessing
import os
import sys

bind = f"{os.environ.get('BIFROST_HOST', '127.0.0.1')}:{os.environ.get('BIFROST_PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
worker_class = "gevent"
worker_connections = int(os.environ.get("BIFROST_WORKER_CONNECTIONS", "2000"))
# Under gevent the heartbeat timeout is not a request limit; streams may run long.
timeout = 60
graceful_timeout = 30
keepalive = 75  # longer than common load balancers' idle timeouts
accesslog = os.environ.get("BIFROST_ACCESS_LOG") or None
loglevel = os.environ.get("BIFROST_LOG_LEVEL", "info")


def on_starting(server):
    """Check config.json once, in the master, so a bad file stops start-up with one line."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"bifrost: config error: {exc}", file=sys.stderr, flush=True)
        os._exit(2)
    server.log.info("bifrost: %d provider(s) configured from %s", len(config.providers), config.source)


def worker_exit(server, worker):
    """End this worker's realtime calls and hang them up upstream (SIGTERM, HUP reload, max_requests)."""
    calls = sys.modules.get("app.realtime.calls")
    if calls is not None:
        calls.shutdown("worker exit")
