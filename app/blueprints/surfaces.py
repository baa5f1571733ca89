"""Where the drop-in surfaces are mounted: each under its own prefix and under every framework prefix.

LiteLLM, LangChain and PydanticAI users point their OpenAI, Anthropic and Gemini
clients at /<framework>/..., /<framework>/anthropic/... and /<framework>/genai/...; the
blueprints are the same ones, registered again under other names.
"""
from __future__ import annotations

from flask import Flask

from app.blueprints import anthropic, genai, openai

FRAMEWORK_PREFIXES = ("litellm", "langchain", "pydanticai")


def register(app: Flask) -> None:
    app.register_blueprint(openai.bp, url_prefix="/openai")
    app.register_blueprint(anthropic.bp, url_prefix="/anthropic")
    app.register_blueprint(genai.bp, url_prefix="/genai")
    for prefix in FRAMEWORK_PREFIXES:
        app.register_blueprint(openai.bp, url_prefix=f"/{prefix}", name=f"{prefix}_openai")
        app.register_blueprint(anthropic.bp, url_prefix=f"/{prefix}/anthropic", name=f"{prefix}_anthropic")
        app.register_blueprint(genai.bp, url_prefix=f"/{prefix}/genai", name=f"{prefix}_genai")
