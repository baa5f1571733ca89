"""The provider side of realtime: which providers have it, where and with which key to reach them.

Imported at boot by every realtime route, so it holds no HTTP client: the call endpoints are
app/realtime/provider_calls.py (requests), loaded with the first WebRTC call. OpenAI's
WebSocket is at ``{base}/v1/realtime?model=``.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from app.config import GatewayConfig, Key, ProviderConfig
from app.errors import GatewayError, bad_request
from app.keys import select_key
from app.providers.catalog import OPENAI_COMPATIBLE

REALTIME_KINDS = frozenset({"openai"})  # adapters whose upstream speaks OpenAI Realtime


@dataclass(frozen=True)
class Target:
    provider: ProviderConfig
    model: str
    key: Key | None

    @property
    def base_url(self) -> str:
        spec = OPENAI_COMPATIBLE.get(self.provider.kind)
        return (self.provider.network.base_url or (spec.base_url if spec else "")).rstrip("/")

    def headers(self) -> dict[str, str]:
        headers = dict(self.provider.network.extra_headers)
        if self.key is not None and self.key.value:
            headers["Authorization"] = f"Bearer {self.key.value}"
        return headers


def resolve(config: GatewayConfig, model: object, *, param: str, default_provider: str | None = None,
            pinned_key: str | None = None) -> Target:
    """``provider/model`` to a configured realtime provider, its bare model and a key."""
    if not isinstance(model, str) or not model.strip():
        raise bad_request(f"{param} is required", param=param)
    provider_name, sep, bare = model.partition("/")
    if not sep:
        if default_provider is None:
            raise bad_request(f"{param} must be in provider/model form (e.g. openai/gpt-realtime), got {model!r}",
                              param=param)
        provider_name, bare = default_provider, model
    if not provider_name or not bare:
        raise bad_request(f"{param} must be in provider/model form, got {model!r}", param=param)
    provider = config.providers.get(provider_name)
    if provider is None:
        raise bad_request(f"provider {provider_name} not found", param=param)
    if provider.kind not in REALTIME_KINDS:  # openai, and custom providers built on it
        raise GatewayError(f"realtime is not supported by {provider_name} provider", 400,
                           error_type="invalid_request_error", code="unsupported_operation", param=param,
                           provider=provider_name, model=bare, request_type="realtime")
    key = None if provider.keyless else select_key(provider.keys, bare, pinned=pinned_key)
    return Target(provider, bare, key)


def timeout_error(target: Target, message: str) -> GatewayError:
    return GatewayError(message, 504, type="request_timed_out", is_bifrost_error=True,
                        provider=target.provider.name, model=target.model, request_type="realtime",
                        allow_fallbacks=False)


def websocket_url(target: Target) -> str:
    base = target.base_url
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/realtime?model={quote(target.model)}"
