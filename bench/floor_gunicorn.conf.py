"""gunicorn settings of the floor target (bench/floor_app.py): the same server settings as the gateway's
gunicorn.conf.py (gevent worker, worker_connections, keep-alive), no hooks, no access log."""
worker_class = "gevent"
workers = 1
worker_connections = 2000
keepalive = 75
timeout = 60
graceful_timeout = 30
accesslog = None
loglevel = "warning"
control_socket_disable = True
