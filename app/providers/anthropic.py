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
from app.dialects.openai import chat_chunk_to_text, chat_response_to_text, text_request_to_chat
from app.errors import bad_request
from app.providers.base import DONE, Provider
from app.providers.catalog import ANTHROPIC_BASE_URL, ANTHROPIC_VERSION


def parse_error(body: Any) -> tuple[str, str | None, str | None, str | None]:
    message, error_type = dialect.error_from_anthropic(0, body)
    return message, error_type, None, None


class AnthropicProvider(Provider):
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

    # -- text, through chat (Anthropic's legacy /v1/complete serves retired models only) ----

    def text_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        return chat_response_to_text(self.chat_completion(self._as_chat(body), model, key, ctx))

    def text_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        chunks = self.chat_completion_stream(self._as_chat(body), model, key, ctx)  # opens the request now
        return self._as_text(chunks)

    @staticmethod
    def _as_text(chunks: Iterator[dict]) -> Iterator[dict]:
        try:
            for chunk in chunks:
                yield chat_chunk_to_text(chunk)
        finally:
            chunks.close()  # a client gone mid-stream closes the upstream at once

    def list_models(self, key: Key | None, ctx: RequestContext) -> list[dict]:
        reply = self.get_json(self.base_url + "/v1/models?limit=1000", self.headers(key, ctx), ctx, parse_error)
        return [
            {"id": item.get("id"), "object": "model", "name": item.get("display_name"), "created_at": item.get("created_at")}
            for item in (reply.get("data") or [])
        ] if isinstance(reply, dict) else []

    # -- helpers -----------------------------------------------------------------------------

    def _messages_url(self) -> str:
        return self.base_url + self.config.request_path_overrides.get("chat_completion", "/v1/messages")

    @staticmethod
    def _as_chat(body: dict) -> dict:
        try:
            return text_request_to_chat(body)
        except ValueError as exc:
            raise bad_request(str(exc), param="prompt") from None

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
