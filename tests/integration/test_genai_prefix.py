"""The /genai blueprint registered a second time under another prefix (as /litellm/genai will be).

In-process (Flask's test client in front of the real app and the fake upstream), because the point
is the blueprint's registration: its routes and its Google-shaped error handlers under the new name.
"""
from __future__ import annotations

from app import create_app
from app.blueprints import genai
from app.config import parse_config
from tests.fakes.common import DEFAULT_TEXT


def test_genai_blueprint_serves_under_a_second_prefix(fake):
    config = parse_config({"providers": {"gemini": {
        "keys": [{"name": "g", "value": "gm-key-1", "models": ["*"]}],
        "network_config": {"base_url": fake.url}}}})
    app = create_app(config)
    app.register_blueprint(genai.bp, name="litellm_genai", url_prefix="/litellm/genai")
    client = app.test_client()
    body = {"contents": [{"parts": [{"text": "Hi"}]}]}
    for prefix in ("/genai", "/litellm/genai"):
        reply = client.post(f"{prefix}/v1beta/models/gemini-2.5-flash:generateContent", json=body)
        assert reply.status_code == 200, reply.get_data(as_text=True)
        assert reply.get_json()["candidates"][0]["content"]["parts"][0]["text"] == DEFAULT_TEXT
        missing = client.post(f"{prefix}/v1beta/models/openai/gpt-4o-mini:generateContent", json=body)
        assert missing.status_code == 400
        assert missing.get_json()["error"]["status"] == "INVALID_ARGUMENT"  # the Google shape, not BifrostError
        assert "openai is not configured" in missing.get_json()["error"]["message"]
    assert [r.path for r in fake.requests] == ["/v1beta/models/gemini-2.5-flash:generateContent"] * 2
