"""Which adapter serves a configured provider."""
from __future__ import annotations

from app.config import ProviderConfig
from app.providers.anthropic import AnthropicProvider
from app.providers.azure import AzureProvider
from app.providers.base import Provider
from app.providers.gemini import GeminiProvider
from app.providers.openai import OpenAIProvider


def build_provider(config: ProviderConfig) -> Provider:
    if config.kind == "anthropic":
        return AnthropicProvider(config)
    if config.kind == "gemini":
        return GeminiProvider(config)
    if config.kind == "azure":
        return AzureProvider(config)
    return OpenAIProvider(config)  # openai and every OpenAI-compatible provider
