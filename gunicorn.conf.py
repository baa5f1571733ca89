"""gunicorn settings; flags on the command line still override each of them.

BIFROST_HOST / BIFROST_PORT choose the bind address (default 127.0.0.1:8080),
WEB_CONCURRENCY the number of workers (default: one per CPU), BIFROST_GRACEFUL_TIMEOUT
how long a stopping worker lets requests finish (default 120 s, for long LLM streams),
BIFROST_READ_TIMEOUT how long a client may take to send a whole request (app/worker.py).

The master reads config.json at start and again on SIGHUP; workers use the copy the
master validated (inherited when they fork), so a broken edit never stops a worker.
"""
import multiprocessing
import os
import sys

bind = f"{os.environ.get('BIFROST_HOST', '127.0.0.1')}:{os.environ.get('BIFROST_PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
worker_class = "app.worker.GatewayWorker"  # gevent, plus read deadline and clean stop
worker_connections = int(os.environ.get("BIFROST_WORKER_CONNECTIONS", "2000"))
# Under gevent the heartbeat timeout is not a request limit; streams may run long.
timeout = 60


def _seconds(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        sys.exit(f"bifrost: config error: {name}: must be a whole number of seconds above 0, got {raw!r}")
    return int(raw)


# LLM streams run for minutes: a stop or reload lets them finish for this long (app/worker.py).
graceful_timeout = _seconds("BIFROST_GRACEFUL_TIMEOUT", 120)
keepalive = 75  # longer than common load balancers' idle timeouts
accesslog = os.environ.get("BIFROST_ACCESS_LOG") or None
loglevel = os.environ.get("BIFROST_LOG_LEVEL", "info")
# gunicorn 25+ opens a control socket at one fixed per-user path; two gateways on a host would share it.
control_socket_disable = True


def on_starting(server):
    """Check config.json once, in the master, so a bad file stops start-up with one line."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _fresh_metrics_dir()
    from app.config import ConfigError, adopt_config, load_config
    from app.worker import read_timeout_from_env

    try:
        config = load_config()
        read_timeout_from_env()
    except (ConfigError, ValueError) as exc:
        print(f"bifrost: config error: {exc}", file=sys.stderr, flush=True)
        os._exit(2)
    adopt_config(config)
    server.log.info("bifrost: %d provider(s) configured from %s", len(config.providers), config.source)


def on_reload(server):
    """SIGHUP: adopt a changed config.json, or keep serving the last good one."""
    from app.config import ConfigError, adopt_config, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        server.log.error("bifrost: config reload failed, still serving the previous configuration: %s", exc)
        return
    adopt_config(config)
    server.log.info("bifrost: config reloaded: %d provider(s) from %s", len(config.providers), config.source)


def post_worker_init(worker):
    """The app is loaded: keep its start-up objects (modules, the price list, routes) out of
    every later collection. Without this a full collection walks them all and stalls the
    worker for tens of milliseconds under load."""
    import gc

    gc.collect()
    gc.freeze()


def worker_exit(server, worker):
    """After the last request of a worker (SIGTERM, HUP reload, max_requests).

    Realtime calls are ended and hung up upstream, so no provider call is left billing;
    then the plugins flush what they hold (log rows, counters).
    """
    calls = sys.modules.get("app.realtime.calls")
    if calls is not None:
        calls.shutdown("worker exit")
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
