"""Google's Gemini API (Generative Language v1beta), key in ``x-goog-api-key``.

Canonical requests are converted by ``app.dialects.gemini``. A /genai request reaches the
``native_*`` methods instead when the engine passes it through (Engine._passage): the
client's Gemini body goes upstream with only the model replaced, and the upstream's own
reply or events come back, so fields the converter does not know survive.
"""
from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import quote

from app.config import Key, ProviderConfig
from app.context import RequestContext
from app.dialects import gemini as dialect
from app.errors import GatewayError
from app.providers.base import DONE, ChatProvider
from app.providers.catalog import GEMINI_API_VERSION, GEMINI_BASE_URL

MAX_MODEL_PAGES = 10


def parse_error(body: Any) -> tuple[str, str | None, str | None, str | None]:
    message, status = dialect.error_from_gemini(body)
    return message, status, None, None


class GeminiProvider(ChatProvider):
    dialect = "gemini"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.api_base = (config.network.base_url or GEMINI_BASE_URL) + "/" + GEMINI_API_VERSION

    def headers(self, key: Key | None, ctx: RequestContext) -> dict[str, str]:
        headers = super().headers(key, ctx)
        if key is not None and key.value:
            headers["x-goog-api-key"] = key.value
        return headers

    def url(self, model: str, method: str) -> str:
        model = model[7:] if model.startswith("models/") else model
        return f"{self.api_base}/models/{quote(model, safe='')}:{method}"

    # -- chat ---------------------------------------------------------------------------------

    def chat_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        reply = self._generate(dialect.chat_request_to_gemini(body, model), model, key, ctx)
        return dialect.gemini_response_to_chat(reply, model)

    def chat_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        return self._chunks(*self._open(dialect.chat_request_to_gemini(body, model), model, key, ctx), model)

    def _generate(self, payload: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        reply = self.post_json(self.url(model, "generateContent"), payload, self.headers(key, ctx), ctx, parse_error)
        if not isinstance(reply, dict):
            raise self.malformed_event(repr(reply).encode())
        return reply

    def _open(self, payload: dict, model: str, key: Key | None, ctx: RequestContext):
        url = self.url(model, "streamGenerateContent") + "?alt=sse"
        return self.open_stream(url, payload, self.headers(key, ctx), ctx, parse_error)

    def _chunks(self, response, pieces: Iterator[bytes], model: str) -> Iterator[dict]:
        converter = dialect.GeminiStreamToChat(model)
        clean = False  # the body ended after a finishReason: the connection can be reused
        try:
            for _, event in self.json_events(pieces):
                if event is DONE:  # not a Gemini event; tolerate it from proxies
                    continue
                yield from converter.feed(event)
            if not converter.done:
                raise self.stream_cut()
            clean = True
        except GatewayError:
            if not converter.done:
                raise
            # The answer was complete (finishReason seen); a late hiccup in the tail is not news.
        finally:
            self.end_stream(response, pieces, clean)

    # -- pass-through from the /genai surface: the client's body, the upstream's own reply ---------

    def native_chat_completion(self, native, model: str, key: Key | None, ctx: RequestContext) -> dict:
        return self._generate(native.body, model, key, ctx)

    def native_chat_completion_stream(self, native, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        return self._native_events(*self._open(native.body, model, key, ctx))

    def _native_events(self, response, pieces: Iterator[bytes]) -> Iterator[dict]:
        """Gemini's events as they came; an ``{"error": ...}`` event raises, no finishReason is a cut."""
        done = False
        clean = False
        try:
            for _, event in self.json_events(pieces):
                if event is DONE:
                    continue
                if "error" in event and "candidates" not in event:
                    raise dialect.stream_error(event)
                done = done or any(isinstance(c, dict) and c.get("finishReason")
                                   for c in event.get("candidates") or ())
                done = done or bool((event.get("promptFeedback") or {}).get("blockReason"))
                yield event
            if not done:
                raise self.stream_cut()
            clean = True
        except GatewayError:
            if not done:
                raise
        finally:
            self.end_stream(response, pieces, clean)

    def native_embedding(self, native, model: str, key: Key | None, ctx: RequestContext) -> dict:
        payload = native.body
        if "requests" in payload:
            requests = payload.get("requests") or []
            payload = {**payload, "requests": [{**r, "model": "models/" + model} if isinstance(r, dict) else r
                                               for r in requests]}
            method = "batchEmbedContents"
        else:
            method = "embedContent"
            if "model" in payload:
                payload = {**payload, "model": "models/" + model}
        return self.post_json(self.url(model, method), payload, self.headers(key, ctx), ctx, parse_error)

    def native_count_tokens(self, native, model: str, key: Key | None, ctx: RequestContext) -> dict:
        payload = native.body
        inner = payload.get("generateContentRequest")
        if isinstance(inner, dict):
            payload = {**payload, "generateContentRequest": {**inner, "model": "models/" + model}}
        return self.post_json(self.url(model, "countTokens"), payload, self.headers(key, ctx), ctx, parse_error)

    # -- embeddings, token counts, models ---------------------------------------------------------

    def embedding(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        payload = dialect.embedding_request_to_gemini(body, model)
        reply = self.post_json(self.url(model, "batchEmbedContents"), payload, self.headers(key, ctx), ctx, parse_error)
        return dialect.gemini_embeddings_to_openai(reply, model, body.get("encoding_format"))

    def count_tokens(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        payload = dialect.count_request_to_gemini(dialect.chat_request_to_gemini(body, model), model)
        reply = self.post_json(self.url(model, "countTokens"), payload, self.headers(key, ctx), ctx, parse_error)
        return {"input_tokens": reply.get("totalTokens") or 0}

    def list_models(self, key: Key | None, ctx: RequestContext) -> list[dict]:
        models: list[dict] = []
        token = ""
        for _ in range(MAX_MODEL_PAGES):
            url = f"{self.api_base}/models?pageSize=1000" + (f"&pageToken={quote(token)}" if token else "")
            reply = self.get_json(url, self.headers(key, ctx), ctx, parse_error)
            if not isinstance(reply, dict):
                break
            models.extend(dialect.gemini_model_to_openai(m) for m in reply.get("models") or [] if isinstance(m, dict))
            token = reply.get("nextPageToken") or ""
            if not token:
                break
        return models
