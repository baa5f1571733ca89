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


@dataclass
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    pinned_key: str | None = None  # x-bf-api-key: use the provider key with this name
    forward_headers: dict[str, str] = field(default_factory=dict)
    upstream_seconds: float = 0.0  # time spent waiting for providers, for the overhead header

    @classmethod
    def from_headers(cls, headers) -> "RequestContext":
        """Build the context from a werkzeug (or any mapping-like) header set."""
        forward = {}
        for name, value in headers.items():
            lower = name.lower()
            if lower.startswith(FORWARD_PREFIX):
                target = lower[len(FORWARD_PREFIX):]
                if target and target not in FORWARD_DENYLIST:
                    forward[target] = value
        return cls(
            request_id=headers.get("x-request-id") or str(uuid.uuid4()),
            pinned_key=headers.get("x-bf-api-key") or None,
            forward_headers=forward,
        )

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def overhead_ms(self) -> float:
        """Time the gateway itself spent: everything but waiting for the upstream."""
        return max(0.0, self.elapsed_ms() - self.upstream_seconds * 1000.0)
