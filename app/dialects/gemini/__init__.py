"""Conversion between the canonical form and Google's Gemini API (Generative Language v1beta).

The canonical form is OpenAI's Chat Completions shape as plain dicts. Both directions
live here, pure functions without I/O: ``to_gemini`` (canonical requests for the
Gemini adapter; canonical replies and chunks for the /genai surface), ``from_gemini``
(Gemini replies and events for the adapter; Gemini requests for /genai),
``embeddings`` (embeddings, token counts, models) and ``common`` (errors, usage).
"""
from .common import (error_body, error_from_gemini, id_with_signature, signature_of, split_id_signature, status_name,
                     usage_from_chat, usage_to_chat, with_signature)
from .embeddings import (count_reply_to_gemini, count_request_to_chat, count_request_to_gemini, decode_base64,
                         embedding_request_to_gemini, encode_base64, gemini_embed_to_openai,
                         gemini_embeddings_to_openai, gemini_model_to_openai, openai_embeddings_to_gemini,
                         openai_model_to_gemini)
from .from_gemini import (GeminiStreamToChat, gemini_request_to_chat, gemini_response_to_chat,
                          openapi_to_json_schema, stream_error)
from .to_gemini import ChatStreamToGemini, chat_request_to_gemini, chat_response_to_gemini

__all__ = [
    "ChatStreamToGemini", "GeminiStreamToChat", "chat_request_to_gemini", "chat_response_to_gemini",
    "count_reply_to_gemini", "count_request_to_chat", "count_request_to_gemini", "decode_base64",
    "embedding_request_to_gemini", "encode_base64", "error_body", "error_from_gemini", "gemini_embed_to_openai",
    "gemini_embeddings_to_openai", "gemini_model_to_openai", "gemini_request_to_chat", "gemini_response_to_chat",
    "id_with_signature", "split_id_signature",
    "openai_embeddings_to_gemini", "openai_model_to_gemini", "openapi_to_json_schema", "signature_of",
    "status_name", "stream_error", "usage_from_chat", "usage_to_chat", "with_signature",
]
