"""OpenAI and every provider that speaks its wire format.

The canonical form *is* this dialect, so requests pass through: the body is forwarded
with the model replaced, and unknown fields reach the upstream untouched.
"""
from __future__ import annotations

from typing import Any, Iterator

import orjson

from app.config import Key, ProviderConfig
from app.context import RequestContext
from app.errors import GatewayError
from app.providers.base import CHAT, DONE, EMBEDDING, TEXT, Provider
from app.providers.catalog import OPENAI_COMPATIBLE, ProviderSpec


def parse_error(body: Any) -> tuple[str, str | None, str | None, str | None]:
    """OpenAI's error body: {"error": {"message", "type", "code", "param"}}."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return (
            str(error.get("message") or "upstream error"),
            error.get("type"),
            str(code) if code is not None else None,
            error.get("param"),
        )
    if isinstance(error, str):
        return error, None, None, None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"], None, None, None
    return orjson.dumps(body).decode()[:500], None, None, None


def without_google_extras(body: dict) -> dict:
    """The body without Gemini's ``extra_content`` (thought signatures) on assistant turns.

    A history that went through Gemini carries them on tool calls (and assistant
    messages); OpenAI answers 400 "Unknown parameter" to any field it does not know inside
    messages. Only assistant messages are looked into, and the body is copied only when
    something is removed, so an ordinary request costs one comparison per message.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    cleaned = None
    for index, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            stripped = _strip_message(message)
            if stripped is not message:
                if cleaned is None:
                    cleaned = list(messages)
                cleaned[index] = stripped
    return body if cleaned is None else {**body, "messages": cleaned}


def _strip_message(message: dict) -> dict:
    calls = message.get("tool_calls")
    if "extra_content" not in message and not (
            isinstance(calls, list) and any(isinstance(c, dict) and "extra_content" in c for c in calls)):
        return message
    message = {key: value for key, value in message.items() if key != "extra_content"}
    if isinstance(calls, list):
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "extra_content"} if isinstance(c, dict) else c
                                 for c in calls]
    return message


class OpenAIProvider(Provider):
    dialect = "openai"

    def __init__(self, config: ProviderConfig, spec: ProviderSpec | None = None) -> None:
        super().__init__(config)
        self.spec = spec or OPENAI_COMPATIBLE.get(config.kind) or OPENAI_COMPATIBLE["openai"]
        self.base_url = config.network.base_url or self.spec.base_url
        # Google's own OpenAI-compatible endpoints read extra_content; every other upstream refuses it.
        self.keeps_extra_content = "googleapis.com" in self.base_url

    # -- endpoints ------------------------------------------------------------------------

    def url(self, request_type: str, model: str, key: Key | None) -> str:
        override = self.config.request_path_overrides.get(request_type)
        if override:
            return self.base_url + override
        if request_type == TEXT:
            if self.spec.text_path is None:
                raise self.unsupported(TEXT)
            return self.base_url + self.spec.text_path
        if request_type == "list_models":
            return self.base_url + self.spec.models_path
        if request_type == EMBEDDING:
            return self.base_url + self.spec.embeddings_path
        return self.base_url + self.spec.chat_path

    def headers(self, key: Key | None, ctx: RequestContext) -> dict[str, str]:
        headers = super().headers(key, ctx)
        if key is not None and key.value:
            headers["Authorization"] = "Bearer " + key.value
        return headers

    # -- request types --------------------------------------------------------------------

    def chat_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        if not self.keeps_extra_content:
            body = without_google_extras(body)
        return self.post_json(self.url(CHAT, model, key), {**body, "model": model}, self.headers(key, ctx), ctx, parse_error)

    def text_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        return self.post_json(self.url(TEXT, model, key), {**body, "model": model}, self.headers(key, ctx), ctx, parse_error)

    def embedding(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        url = self.url(EMBEDDING, model, key)
        return self.post_json(url, {**body, "model": model}, self.headers(key, ctx), ctx, parse_error)

    def chat_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        if not self.keeps_extra_content:
            body = without_google_extras(body)
        return self._stream(CHAT, body, model, key, ctx)

    def text_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        return self._stream(TEXT, body, model, key, ctx)

    def list_models(self, key: Key | None, ctx: RequestContext) -> list[dict]:
        reply = self.get_json(self.url("list_models", "", key), self.headers(key, ctx), ctx, parse_error)
        return list(reply.get("data") or []) if isinstance(reply, dict) else []

    # -- streams --------------------------------------------------------------------------

    def _stream(self, request_type: str, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        payload = {**body, "model": model, "stream": True}
        if self.spec.stream_usage_option:
            # Usage comes only when asked for; the gateway always needs it.
            payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        response, pieces = self.open_stream(self.url(request_type, model, key), payload, self.headers(key, ctx), ctx, parse_error)
        return self._chunks(response, pieces)

    def _chunks(self, response, pieces: Iterator[bytes]) -> Iterator[dict]:
        finished = False
        try:
            for _, chunk in self.json_events(pieces):
                if chunk is DONE:
                    finished = True
                    break
                if "error" in chunk and "choices" not in chunk:
                    message, error_type, code, param = parse_error(chunk)
                    raise GatewayError(message, 502, error_type=error_type, code=code, param=param, retryable=True)
                yield chunk
            if not finished:
                raise self.stream_cut()
        finally:
            self.end_stream(response, pieces, finished)
