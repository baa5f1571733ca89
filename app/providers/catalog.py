"""The built-in providers: default base URLs, paths, auth and environment variables.

One table, so adding an OpenAI-compatible provider is one line. Paths are relative to
the base URL; an operator's ``network_config.base_url`` replaces only the base.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderSpec:
    base_url: str
    chat_path: str = "/v1/chat/completions"
    text_path: str | None = "/v1/completions"  # None: no legacy completions endpoint
    models_path: str = "/v1/models"
    embeddings_path: str = "/v1/embeddings"
    # False where the upstream rejects stream_options (Mistral answers 422 extra_forbidden)
    # and sends usage in its last chunk without being asked.
    stream_usage_option: bool = True


# OpenAI wire format, "Authorization: Bearer <key>".
OPENAI_COMPATIBLE: dict[str, ProviderSpec] = {
    "openai": ProviderSpec("https://api.openai.com"),
    "groq": ProviderSpec("https://api.groq.com/openai", text_path=None),
    "cerebras": ProviderSpec("https://api.cerebras.ai"),
    "mistral": ProviderSpec("https://api.mistral.ai", text_path=None, stream_usage_option=False),
    "openrouter": ProviderSpec("https://openrouter.ai/api"),
    "xai": ProviderSpec("https://api.x.ai"),
    "fireworks": ProviderSpec("https://api.fireworks.ai/inference"),
    "nebius": ProviderSpec("https://api.tokenfactory.nebius.com"),  # Nebius Token Factory (was api.studio)
    "parasail": ProviderSpec("https://api.parasail.io", text_path=None),
    "perplexity": ProviderSpec(
        "https://api.perplexity.ai", chat_path="/chat/completions", text_path=None
    ),
    "huggingface": ProviderSpec("https://router.huggingface.co", text_path=None),
    "ollama": ProviderSpec("http://localhost:11434"),
    "sgl": ProviderSpec("http://localhost:30000"),
    "vllm": ProviderSpec("http://localhost:8000"),
}

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
AZURE_DEFAULT_API_VERSION = "2024-10-21"
# Google's Generative Language API; the key goes in x-goog-api-key.
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
GEMINI_API_VERSION = "v1beta"

BUILTIN_PROVIDERS: frozenset[str] = frozenset(OPENAI_COMPATIBLE) | {"azure", "anthropic", "gemini"}

# Local inference servers run without an API key.
KEYLESS_PROVIDERS: frozenset[str] = frozenset({"ollama", "sgl", "vllm"})

# With no config.json, a provider is configured for each of these variables that is set
# (the first one set wins). Azure also needs AZURE_OPENAI_ENDPOINT (or AZURE_ENDPOINT).
ENV_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "azure": ("AZURE_OPENAI_API_KEY", "AZURE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "fireworks": ("FIREWORKS_API_KEY",),
    "nebius": ("NEBIUS_API_KEY",),
    "parasail": ("PARASAIL_API_KEY",),
    "perplexity": ("PERPLEXITY_API_KEY",),
    "huggingface": ("HF_TOKEN", "HUGGINGFACE_API_KEY"),
}
