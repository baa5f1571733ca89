"""Anthropic's Messages API, reached through the canonical form.

Requests and replies are converted by ``app.dialects.anthropic`` (shared with the
Anthropic-compatible surface); this module only knows the endpoints, the headers
and how its stream ends.
"""
from __future__ import annotations

from typing import Any, Iterator

from app.config import Key, ProviderConfig
from app.context import RequestContext
from app.dialects import anthropic as dialect
from app.providers.base import DONE, ChatProvider
from app.providers.catalog import ANTHROPIC_BASE_URL, ANTHROPIC_VERSION


# The fields count_tokens takes (it refuses the rest of a Messages body, max_tokens included).
COUNT_TOKENS_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})


def parse_error(body: Any) -> tuple[str, str | None, str | None, str | None]:
    message, error_type = dialect.error_from_anthropic(0, body)
    return message, error_type, None, None


class AnthropicProvider(ChatProvider):
    dialect = "anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.base_url = config.network.base_url or ANTHROPIC_BASE_URL

    def headers(self, key: Key | None, ctx: RequestContext) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        headers.update(super().headers(key, ctx))  # operators may pin another version or add betas
        if key is not None and key.value:
            headers["x-api-key"] = key.value
        return headers

    # -- chat -------------------------------------------------------------------------------

    def chat_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        payload = dialect.chat_request_to_anthropic({**body, "stream": False}, model)
        payload.pop("stream", None)
        reply = self.post_json(self._messages_url(), payload, self.headers(key, ctx), ctx, parse_error)
        return dialect.anthropic_response_to_chat(reply)

    def chat_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        payload = dialect.chat_request_to_anthropic({**body, "stream": True}, model)
        response, pieces = self.open_stream(self._messages_url(), payload, self.headers(key, ctx), ctx, parse_error)
        return self._chunks(response, pieces, model)

    def count_tokens(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        """Anthropic's own count (/v1/messages/count_tokens) of a translated request."""
        payload = dialect.chat_request_to_anthropic({**body, "stream": False}, model)
        payload = {name: value for name, value in payload.items() if name in COUNT_TOKENS_FIELDS}
        reply = self.post_json(self.base_url + "/v1/messages/count_tokens", payload, self.headers(key, ctx), ctx,
                               parse_error)
        return {"input_tokens": reply.get("input_tokens") or 0} if isinstance(reply, dict) else {"input_tokens": 0}

    # -- pass-through from the /anthropic surface: the client's body with only the model replaced --

    def native_chat_completion(self, native, model: str, key: Key | None, ctx: RequestContext) -> dict:
        payload = {**native.body, "model": model}
        return self.post_json(self._messages_url(), payload, self._native_headers(native, key, ctx), ctx, parse_error)

    def native_chat_completion_stream(self, native, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        payload = {**native.body, "model": model, "stream": True}
        headers = self._native_headers(native, key, ctx)
        response, pieces = self.open_stream(self._messages_url(), payload, headers, ctx, parse_error)
        return self._native_events(response, pieces)

    def native_count_tokens(self, native, model: str, key: Key | None, ctx: RequestContext) -> dict:
        payload = {**native.body, "model": model}
        url = self.base_url + "/v1/messages/count_tokens"
        return self.post_json(url, payload, self._native_headers(native, key, ctx), ctx, parse_error)

    def _native_headers(self, native, key: Key | None, ctx: RequestContext) -> dict[str, str]:
        headers = self.headers(key, ctx)
        for name, value in native.headers.items():  # anthropic-beta and the like; never credentials
            headers[name] = value
        return headers

    def _native_events(self, response, pieces: Iterator[bytes]) -> Iterator[dict]:
        """Anthropic's events as they came; an ``error`` event raises, a missing message_stop is a cut."""
        done = False
        try:
            for name, data in self.json_events(pieces):
                if data is DONE:
                    continue
                kind = data.get("type")
                if kind is None and name:
                    kind = data["type"] = name
                if kind == "error":
                    raise dialect.stream_error(data)
                yield data
                if kind == "message_stop":
                    done = True
                    break
            if not done:
                raise self.stream_cut()
        finally:
            self.end_stream(response, pieces, done)

    def list_models(self, key: Key | None, ctx: RequestContext) -> list[dict]:
        reply = self.get_json(self.base_url + "/v1/models?limit=1000", self.headers(key, ctx), ctx, parse_error)
        return [
            {"id": item.get("id"), "object": "model", "name": item.get("display_name"), "created_at": item.get("created_at")}
            for item in (reply.get("data") or [])
        ] if isinstance(reply, dict) else []

    # -- helpers -----------------------------------------------------------------------------

    def _messages_url(self) -> str:
        return self.base_url + self.config.request_path_overrides.get("chat_completion", "/v1/messages")

    def _chunks(self, response, pieces: Iterator[bytes], model: str) -> Iterator[dict]:
        converter = dialect.AnthropicStreamToChat(model)
        try:
            for name, data in self.json_events(pieces):
                if data is DONE:  # not an Anthropic event; tolerate it from proxies
                    continue
                yield from converter.feed(name or data.get("type") or "", data)
                if converter.done:
                    break
            if not converter.done:
                raise self.stream_cut()
        finally:
            self.end_stream(response, pieces, converter.done)
