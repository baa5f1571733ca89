"""The one error type of the gateway and its BifrostError JSON form.

Every failure a client can see, from a bad request body to an upstream 503, is a
``GatewayError``. The engine decides on retries and fallbacks from its flags; the
blueprints turn it into JSON (or an SSE error event) with ``to_dict``.
"""
from __future__ import annotations

from typing import Any, Mapping

MESSAGE_LIMIT = 2000  # characters of an error message, whatever it quotes


class GatewayError(Exception):
    """An error with the fields of Bifrost's error contract.

    ``is_bifrost_error`` is False for errors that describe the request or come from
    the upstream provider (their status is carried over), True for the gateway's
    own failures. ``retryable`` marks transient failures (network, timeout, 5xx)
    worth another attempt on the same provider; ``rotate_key`` marks failures that
    should move to a different key (429). ``allow_fallbacks`` is False for errors
    that no other provider could fix (a cancelled request).
    """

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        is_bifrost_error: bool = False,
        error_type: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        request_type: str | None = None,
        retryable: bool = False,
        rotate_key: bool = False,
        allow_fallbacks: bool = True,
    ) -> None:
        if len(message) > MESSAGE_LIMIT:  # a 5 MB model name must not come back whole
            message = message[:MESSAGE_LIMIT] + "..."
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type  # top-level "type" (e.g. request_cancelled)
        self.error_type = error_type  # error.type (e.g. invalid_request_error)
        self.code = code
        self.param = param
        self.is_bifrost_error = is_bifrost_error
        self.provider = provider
        self.model = model
        self.request_type = request_type
        self.retryable = retryable
        self.rotate_key = rotate_key
        self.allow_fallbacks = allow_fallbacks

    def attribute(self, provider: str, model: str, request_type: str) -> None:
        """Say which provider, model and request type failed, unless already said."""
        self.provider = self.provider or provider
        self.model = self.model or model
        self.request_type = self.request_type or request_type

    @property
    def http_status(self) -> int:
        """The HTTP status a client receives for this error."""
        if self.status_code:
            return self.status_code
        return 500 if self.is_bifrost_error else 400

    def to_dict(self) -> dict[str, Any]:
        """The BifrostError JSON object; optional fields are left out, not null."""
        error: dict[str, Any] = {"message": self.message}
        if self.error_type:
            error["type"] = self.error_type
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        body: dict[str, Any] = {
            "is_bifrost_error": self.is_bifrost_error,
            "status_code": self.http_status,
            "error": error,
        }
        if self.type:
            body["type"] = self.type
        extra = {}
        if self.provider:
            extra["provider"] = self.provider
        if self.model:
            extra["model_requested"] = echo(self.model)
        if self.request_type:
            extra["request_type"] = self.request_type
        if extra:
            body["extra_fields"] = extra
        return body

    def __repr__(self) -> str:
        return f"GatewayError({self.http_status}, {self.message!r})"


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    """A 400 about the client's request; names the offending field in ``param``."""
    return GatewayError(message, 400, error_type="invalid_request_error", code=code, param=param)


def server_shutting_down() -> GatewayError:
    """Raised into requests still running when a stopping worker reaches its graceful timeout."""
    return GatewayError(
        "the gateway is shutting down and ended this request (BIFROST_GRACEFUL_TIMEOUT)", 503,
        type="server_shutting_down", error_type="server_shutting_down", is_bifrost_error=True,
        allow_fallbacks=False,
    )


ECHO_LIMIT = 200


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """A client-supplied value fit to quote in an error message: at most ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def name_for_status(status: int, names: Mapping[int, str], server: str, client: str) -> str:
    """A dialect's error name for an HTTP status: its own table, else its generic 5xx or 4xx name.

    (Anthropic's error types and Google's status names both work this way.)
    """
    return names.get(status) or (server if status >= 500 else client)
