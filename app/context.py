"""What the gateway knows about one client request while serving it."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

# Request headers with the x-bf-eh- prefix are forwarded upstream without it,
# except these, which would let a client override the gateway's own credentials.
FORWARD_DENYLIST = frozenset(
    {
        "proxy-authorization", "cookie", "host", "content-length", "connection", "transfer-encoding",
        "authorization", "x-api-key", "api-key", "x-goog-api-key", "x-bf-api-key", "x-bf-api-key-id", "x-bf-vk",
    }
)
FORWARD_PREFIX = "x-bf-eh-"
_ENVIRON_FORWARD_PREFIX = "HTTP_X_BF_EH_"


@dataclass
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    pinned_key: str | None = None  # x-bf-api-key: use the provider key with this name
    forward_headers: dict[str, str] = field(default_factory=dict)
    upstream_seconds: float = 0.0  # time spent waiting for providers, for the overhead header
    environ: dict = field(default_factory=dict, repr=False)  # the WSGI environ, for headers plugins read

    @classmethod
    def from_environ(cls, environ: dict) -> "RequestContext":
        """Build the context from the WSGI environ (cheaper than walking a header object)."""
        forward = {}
        for name, value in environ.items():
            if name.startswith(_ENVIRON_FORWARD_PREFIX):
                target = name[len(_ENVIRON_FORWARD_PREFIX):].lower().replace("_", "-")
                if target and target not in FORWARD_DENYLIST:
                    forward[target] = value
        request_id = environ.get("HTTP_X_REQUEST_ID")
        if not request_id or len(request_id) > 200 or not request_id.isprintable():
            request_id = str(uuid.uuid4())
        return cls(
            request_id=request_id,
            pinned_key=environ.get("HTTP_X_BF_API_KEY") or None,
            forward_headers=forward,
            environ=environ,
        )

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def overhead_ms(self) -> float:
        """Time the gateway itself spent: everything but waiting for the upstream."""
        return max(0.0, self.elapsed_ms() - self.upstream_seconds * 1000.0)
