"""Google's Gemini API (Generative Language v1beta), key in ``x-goog-api-key``.

Canonical requests are converted by ``app.dialects.gemini``. When the /genai surface
hands over a Gemini body of its own (``ctx.native``), it goes upstream as it is, with
only the model replaced, and the raw reply rides along under ``"_native"`` so that
fields the converter does not know reach the client too.
"""
from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import quote

from app.config import Key, ProviderConfig
from app.context import RequestContext
from app.dialects import gemini as dialect
from app.dialects.openai import chat_chunk_to_text, chat_response_to_text, text_request_to_chat
from app.errors import GatewayError, bad_request
from app.providers.base import DONE, Provider
from app.providers.catalog import GEMINI_API_VERSION, GEMINI_BASE_URL

MAX_MODEL_PAGES = 10


def parse_error(body: Any) -> tuple[str, str | None, str | None, str | None]:
    message, status = dialect.error_from_gemini(body)
    return message, status, None, None


class GeminiProvider(Provider):
    native_dialect = "gemini"

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

    @staticmethod
    def native(ctx: RequestContext, *methods: str) -> tuple[str, dict] | None:
        if ctx.native is not None and ctx.native[0] in methods:
            return ctx.native
        return None

    # -- chat ---------------------------------------------------------------------------------

    def chat_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        native = self.native(ctx, "generateContent")
        payload = native[1] if native else dialect.chat_request_to_gemini(body, model)
        reply = self.post_json(self.url(model, "generateContent"), payload, self.headers(key, ctx), ctx, parse_error)
        if not isinstance(reply, dict):
            raise self.malformed_event(repr(reply).encode())
        chat = dialect.gemini_response_to_chat(reply, model)
        if native:
            chat["_native"] = reply
        return chat

    def chat_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        native = self.native(ctx, "streamGenerateContent")
        payload = native[1] if native else dialect.chat_request_to_gemini(body, model)
        url = self.url(model, "streamGenerateContent") + "?alt=sse"
        response, pieces = self.open_stream(url, payload, self.headers(key, ctx), ctx, parse_error)
        return self._chunks(response, pieces, model, keep_native=native is not None)

    def _chunks(self, response, pieces: Iterator[bytes], model: str, keep_native: bool) -> Iterator[dict]:
        converter = dialect.GeminiStreamToChat(model)
        clean = False  # the body ended after a finishReason: the connection can be reused
        try:
            for _, event in self.json_events(pieces):
                if event is DONE:  # not a Gemini event; tolerate it from proxies
                    continue
                chunks = converter.feed(event)
                if keep_native:
                    if not chunks:
                        chunks = [{"choices": []}]
                    chunks[-1]["_native"] = event
                yield from chunks
            if not converter.done:
                raise self.stream_cut()
            clean = True
        except GatewayError:
            if not converter.done:
                raise
            # The answer was complete (finishReason seen); a late hiccup in the tail is not news.
        finally:
            self.end_stream(response, pieces, clean)

    # -- text, through chat ---------------------------------------------------------------------

    def text_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        return chat_response_to_text(self.chat_completion(self._as_chat(body), model, key, ctx))

    def text_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        chunks = self.chat_completion_stream(self._as_chat(body), model, key, ctx)
        return self._as_text(chunks)

    @staticmethod
    def _as_text(chunks: Iterator[dict]) -> Iterator[dict]:
        try:
            for chunk in chunks:
                yield chat_chunk_to_text(chunk)
        finally:
            chunks.close()

    @staticmethod
    def _as_chat(body: dict) -> dict:
        try:
            return text_request_to_chat(body)
        except ValueError as exc:
            raise bad_request(str(exc), param="prompt") from None

    # -- embeddings, token counts, models ---------------------------------------------------------

    def embedding(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        native = self.native(ctx, "embedContent", "batchEmbedContents")
        if native:
            method, payload = native
            if method == "batchEmbedContents":
                payload = {**payload, "requests": [{**r, "model": "models/" + model} if isinstance(r, dict) else r
                                                   for r in payload.get("requests") or []]}
            elif "model" in payload:
                payload = {**payload, "model": "models/" + model}
        else:
            method, payload = "batchEmbedContents", dialect.embedding_request_to_gemini(body, model)
        reply = self.post_json(self.url(model, method), payload, self.headers(key, ctx), ctx, parse_error)
        result = dialect.gemini_embeddings_to_openai(reply, model, body.get("encoding_format"))
        if native:
            result["_native"] = reply
        return result

    def count_tokens(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        native = self.native(ctx, "countTokens")
        if native:
            payload = native[1]
            inner = payload.get("generateContentRequest")
            if isinstance(inner, dict):
                payload = {**payload, "generateContentRequest": {**inner, "model": "models/" + model}}
        else:
            payload = dialect.count_request_to_gemini(dialect.chat_request_to_gemini(body, model), model)
        reply = self.post_json(self.url(model, "countTokens"), payload, self.headers(key, ctx), ctx, parse_error)
        result: dict[str, Any] = {"input_tokens": reply.get("totalTokens") or 0}
        if native:
            result["_native"] = reply
        return result

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
