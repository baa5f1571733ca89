"""Embeddings, token counts and model listings between OpenAI's shapes and Gemini's.

OpenAI: ``/v1/embeddings`` with ``input``, ``dimensions``, ``encoding_format``; Gemini:
``:embedContent`` (one content) and ``:batchEmbedContents`` (``requests``), ``:countTokens``
and ``models`` with ``name: "models/<id>"``.
"""
from __future__ import annotations

import base64
import struct
from typing import Any

from app.errors import bad_request

from .common import invalid, field
from .from_gemini import gemini_request_to_chat


def _model_name(model: str) -> str:
    return model if model.startswith("models/") else "models/" + model


# -- OpenAI embeddings request -> batchEmbedContents ------------------------------------------


def embedding_request_to_gemini(body: dict, model: str) -> dict:
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise invalid("Gemini embeds text only: input must be a string or an array of strings", "input")
    requests = []
    for text in texts:
        request: dict[str, Any] = {"model": _model_name(model), "content": {"parts": [{"text": text}]}}
        if body.get("dimensions"):
            request["outputDimensionality"] = body["dimensions"]
        requests.append(request)
    return {"requests": requests}


def gemini_embeddings_to_openai(reply: dict, model: str, encoding_format: str | None) -> dict:
    """A batchEmbedContents (or embedContent) reply as OpenAI's embeddings list."""
    embeddings = reply.get("embeddings")
    if embeddings is None and isinstance(reply.get("embedding"), dict):
        embeddings = [reply["embedding"]]
    data = []
    for index, embedding in enumerate(embeddings or []):
        values = embedding.get("values") or []
        data.append({"object": "embedding", "index": index,
                     "embedding": encode_base64(values) if encoding_format == "base64" else values})
    tokens = (reply.get("usageMetadata") or {}).get("promptTokenCount") or 0
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def encode_base64(values: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def decode_base64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# -- embedContent / batchEmbedContents -> OpenAI embeddings request (for /genai) --------------


def gemini_embed_to_openai(body: Any, batch: bool) -> dict:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    if batch:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise invalid("requests is required and must be a non-empty array", "requests")
    else:
        requests = [body]
    texts = []
    dimensions = None
    for i, request in enumerate(requests):
        path = f"requests[{i}]" if batch else ""
        content = request.get("content") if isinstance(request, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        texts_only = isinstance(parts, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts)
        if not texts_only:
            raise invalid("content must have text parts only for this provider", f"{path}.content" if path else "content")
        texts.append(" ".join(p["text"] for p in parts))
        dimensions = dimensions or field(request, "outputDimensionality", "output_dimensionality")
    out: dict[str, Any] = {"input": texts, "encoding_format": "float"}
    if dimensions:
        out["dimensions"] = dimensions
    return out


def openai_embeddings_to_gemini(reply: dict, batch: bool) -> dict:
    embeddings = []
    for item in sorted(reply.get("data") or [], key=lambda d: d.get("index", 0)):
        values = item.get("embedding")
        if isinstance(values, str):
            values = decode_base64(values)
        embeddings.append({"values": values or []})
    if batch:
        return {"embeddings": embeddings}
    return {"embedding": embeddings[0] if embeddings else {"values": []}}


# -- countTokens -----------------------------------------------------------------------------


def count_request_to_chat(body: Any) -> dict:
    """A countTokens body (``contents`` or ``generateContentRequest``) as a canonical chat body."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    inner = field(body, "generateContentRequest", "generate_content_request")
    if isinstance(inner, dict):
        return gemini_request_to_chat(inner)
    return gemini_request_to_chat({"contents": body.get("contents")})


def count_request_to_gemini(generate_body: dict, model: str) -> dict:
    """A generateContent body wrapped for countTokens, so system and tools count too."""
    return {"generateContentRequest": {"model": _model_name(model), **generate_body}}


def count_reply_to_gemini(reply: dict) -> dict:
    return {"totalTokens": reply.get("input_tokens") or 0}


# -- models ----------------------------------------------------------------------------------


def gemini_model_to_openai(model: dict) -> dict:
    """A Gemini Model as an OpenAI model entry, keeping the limits and methods."""
    name = str(model.get("name") or "")
    out: dict[str, Any] = {"id": name[7:] if name.startswith("models/") else name, "object": "model",
                           "owned_by": "google"}
    for theirs, ours in (("displayName", "display_name"), ("description", "description"),
                         ("inputTokenLimit", "input_token_limit"), ("outputTokenLimit", "output_token_limit"),
                         ("supportedGenerationMethods", "supported_generation_methods"), ("version", "version")):
        if model.get(theirs) is not None:
            out[ours] = model[theirs]
    return out


def openai_model_to_gemini(model: dict, name: str) -> dict:
    """An OpenAI model entry as a Gemini Model named ``models/<name>``."""
    out: dict[str, Any] = {
        "name": _model_name(name),
        "displayName": model.get("display_name") or model.get("name") or name,
        "supportedGenerationMethods": model.get("supported_generation_methods")
        or ["generateContent", "streamGenerateContent", "countTokens"],
    }
    for ours, theirs in (("description", "description"), ("input_token_limit", "inputTokenLimit"),
                         ("output_token_limit", "outputTokenLimit"), ("version", "version")):
        if model.get(ours) is not None:
            out[theirs] = model[ours]
    return out
