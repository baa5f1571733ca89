"""Azure OpenAI: the OpenAI dialect, addressed by deployment, with an ``api-key`` header."""
from __future__ import annotations

from urllib.parse import quote

from app.config import Key
from app.context import RequestContext
from app.errors import GatewayError
from app.providers.base import EMBEDDING, TEXT
from app.providers.openai import OpenAIProvider

_OPERATIONS = {TEXT: "completions", EMBEDDING: "embeddings"}


class AzureProvider(OpenAIProvider):
    def url(self, request_type: str, model: str, key: Key | None) -> str:
        if key is None or key.azure is None:  # config validation makes this unreachable
            raise GatewayError("azure key has no azure_key_config", 500, is_bifrost_error=True)
        azure = key.azure
        if request_type == "list_models":
            return f"{azure.endpoint}/openai/models?api-version={azure.api_version}"
        deployment = quote(azure.deployments.get(model, model), safe="")
        operation = _OPERATIONS.get(request_type, "chat/completions")
        return f"{azure.endpoint}/openai/deployments/{deployment}/{operation}?api-version={azure.api_version}"

    def headers(self, key: Key | None, ctx: RequestContext) -> dict[str, str]:
        headers = super(OpenAIProvider, self).headers(key, ctx)
        if key is not None and key.value:
            headers["api-key"] = key.value
        return headers
