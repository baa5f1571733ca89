"""The /genai surface under every framework prefix: its routes and its Google-shaped errors."""
from __future__ import annotations

import pytest
import requests

from tests.fakes.common import DEFAULT_TEXT

BODY = {"contents": [{"parts": [{"text": "Hi"}]}]}


@pytest.mark.parametrize("prefix", ["/genai", "/litellm/genai", "/langchain/genai", "/pydanticai/genai"])
def test_genai_serves_under_each_prefix(gateway, fake, prefix):
    reply = requests.post(f"{gateway.url}{prefix}/v1beta/models/gemini-2.5-flash:generateContent", json=BODY, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["candidates"][0]["content"]["parts"][0]["text"] == DEFAULT_TEXT
    missing = requests.post(f"{gateway.url}{prefix}/v1beta/models/mistral/mistral-small:generateContent",
                            json=BODY, timeout=10)
    assert missing.status_code == 400
    assert missing.json()["error"]["status"] == "INVALID_ARGUMENT"  # the Google shape, not BifrostError
    assert "mistral is not configured" in missing.json()["error"]["message"]
    assert [r.path for r in fake.requests] == ["/v1beta/models/gemini-2.5-flash:generateContent"]
