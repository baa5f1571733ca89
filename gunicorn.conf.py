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
    _fresh_metrics_dir()
    from app.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"bifrost: config error: {exc}", file=sys.stderr, flush=True)
        os._exit(2)
    server.log.info("bifrost: %d provider(s) configured from %s", len(config.providers), config.source)


def worker_exit(server, worker):
    """After the last request of a worker: plugins flush (logs, counters) before the process ends."""
    from app import shutdown

    shutdown()


def _fresh_metrics_dir():
    """Each start gets an empty PROMETHEUS_MULTIPROC_DIR, so counters begin at zero.

    The workers inherit the variable; prometheus_client reads it when they import it.
    An operator's own directory is emptied of old .db files; otherwise a private one is made.
    """
    import glob
    import tempfile

    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        os.makedirs(chosen, exist_ok=True)
        for stale in glob.glob(os.path.join(chosen, "*.db")):
            os.remove(stale)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bifrost-metrics-")
        os.environ["BIFROST_OWN_METRICS_DIR"] = "1"


def child_exit(server, worker):
    """A worker is gone: its live gauges (bifrost_active_requests) stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.pop("BIFROST_OWN_METRICS_DIR", None):
        import shutil

        shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)
