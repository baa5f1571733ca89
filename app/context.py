"""What the gateway knows about one client request while serving it."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

# Request headers with the x-bf-eh- prefix are forwarded upstream without it,
# except these, which would let a client override the gateway's own credentials.
FORWARD_DENYLIST = frozenset(
    {
        "proxy-authorization", "cookie", "host", "content-length", "connection", "transfer-encoding",
        "authorization", "x-api-key", "api-key", "x-goog-api-key", "x-bf-api-key", "x-bf-api-key-id", "x-bf-vk",
    }
)
# Hop-by-hop headers (RFC 9110 7.6.1) describe the client's connection, not the upstream's;
# the others are set by the gateway itself, and a second copy would contradict it.
FORWARD_DENYLIST |= frozenset(
    {
        "te", "upgrade", "expect", "keep-alive", "proxy-connection", "trailer", "proxy-authenticate",
        "content-type", "content-encoding", "accept", "accept-encoding", "anthropic-version",
    }
)
FORWARD_PREFIX = "x-bf-eh-"
_ENVIRON_FORWARD_PREFIX = "HTTP_X_BF_EH_"


VIRTUAL_KEY_PREFIX = "sk-bf-"
_VK_HEADERS = ("HTTP_X_API_KEY", "HTTP_X_GOOG_API_KEY", "HTTP_API_KEY")


def virtual_key_of(environ: dict) -> str | None:
    """The virtual key a request carries, whichever SDK sent it (only sk-bf- values outside x-bf-vk)."""
    value = environ.get("HTTP_X_BF_VK")
    if value:
        return value.strip()
    auth = environ.get("HTTP_AUTHORIZATION")
    if auth and auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        if token.startswith(VIRTUAL_KEY_PREFIX):
            return token
    for name in _VK_HEADERS:
        value = environ.get(name)
        if value and value.startswith(VIRTUAL_KEY_PREFIX):
            return value.strip()
    query = environ.get("QUERY_STRING")
    if query and "key=sk-bf-" in query:  # Gemini's ?key= form
        for part in query.split("&"):
            if part.startswith("key=sk-bf-"):
                return part[4:]
    return None


@dataclass
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    pinned_key: str | None = None  # x-bf-api-key: use the provider key with this name
    forward_headers: dict[str, str] = field(default_factory=dict)
    upstream_seconds: float = 0.0  # time spent waiting for providers, for the overhead header
    mcp_include_clients: str | None = None  # x-bf-mcp-include-clients (None: not sent)
    mcp_include_tools: str | None = None  # x-bf-mcp-include-tools
    virtual_key: str | None = None  # governance: x-bf-vk, or an sk-bf- value in a credential header
    key_filter: dict | None = None  # governance: provider -> names of the keys a virtual key may use
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
            request_id = new_request_id()
        return cls(
            request_id=request_id,
            pinned_key=environ.get("HTTP_X_BF_API_KEY") or None,
            forward_headers=forward,
            mcp_include_clients=environ.get("HTTP_X_BF_MCP_INCLUDE_CLIENTS"),
            mcp_include_tools=environ.get("HTTP_X_BF_MCP_INCLUDE_TOOLS"),
            virtual_key=virtual_key_of(environ),
            environ=environ,
        )

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def overhead_ms(self) -> float:
        """Time the gateway itself spent: everything but waiting for the upstream."""
        return max(0.0, self.elapsed_ms() - self.upstream_seconds * 1000.0)


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562 section 5.7): 48 bits of Unix milliseconds, version, 74 random bits, variant.

    Ids that grow with time sort as requests arrived and land at the end of the log
    table's unique index instead of on a random page of it (a third less work per row).
    An id needs to be unique, not secret: `random` (reseeded in each forked worker) is
    enough, and a fifth of the cost of os.urandom and uuid.UUID.
    """
    bits = _getrandbits(74)
    hex_ = "%012x%04x%04x%012x" % (time.time_ns() // 1_000_000, 0x7000 | bits >> 62,
                                   0x8000 | (bits >> 48) & 0x3FFF, bits & 0xFFFF_FFFF_FFFF)
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


_getrandbits = random.getrandbits
