"""The floor target: the smallest Flask app on gunicorn with a gevent worker that forwards a chat completion (or an
Anthropic message) to the upstream with urllib3 and returns the reply. No parsing, no validation, no routing: the limit of our stack, against
which the gateway is measured.

Run (bench/run.py does this):
    FLOOR_UPSTREAM=http://127.0.0.1:9100 taskset -c 0 .venv/bin/gunicorn -k gevent --workers 1 \
        --worker-connections 1000 --bind 127.0.0.1:9201 --chdir bench floor_app:app
Environment: FLOOR_UPSTREAM (base URL of the upstream), FLOOR_API_KEY (default sk-bench).
"""
import os

from flask import Flask, Response, request
import urllib3

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:9100").rstrip("/")
API_KEY = os.environ.get("FLOOR_API_KEY", "sk-bench")
# One pool per worker; maxsize covers the 200-connection scenario so connections are reused, never discarded.
http = urllib3.PoolManager(maxsize=1024, retries=False, timeout=urllib3.Timeout(connect=5.0, read=60.0))
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer " + API_KEY}

app = Flask(__name__)


@app.get("/health")
def health():
    return {"status": "ok"}


ANTHROPIC_HEADERS = {"Content-Type": "application/json", "x-api-key": API_KEY, "anthropic-version": "2023-06-01"}


@app.post("/v1/chat/completions")
def chat_completions():
    return forward("/v1/chat/completions", HEADERS)


@app.post("/v1/messages")
def messages():
    """The floor of the Anthropic-shaped scenarios: the same forwarder, Anthropic's path and headers."""
    return forward("/v1/messages", ANTHROPIC_HEADERS)


def forward(path: str, headers: dict):
    upstream = http.request("POST", UPSTREAM + path, body=request.get_data(), headers=headers,
                            preload_content=False)
    ctype = upstream.headers.get("Content-Type", "application/json")
    if ctype.startswith("text/event-stream"):
        def relay():
            try:
                # one upstream HTTP chunk (one SSE event from the mock) -> one write to the client
                for piece in (upstream.read_chunked() if upstream.chunked else upstream.stream(65536)):
                    if piece:
                        yield piece
            finally:
                upstream.release_conn()
        return Response(relay(), status=upstream.status, content_type=ctype,
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    data = upstream.read()
    upstream.release_conn()
    return Response(data, status=upstream.status, content_type=ctype)
