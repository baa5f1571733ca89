"""Shared fixtures: one fake upstream, one real gateway (gunicorn + gevent) in front of it."""
from __future__ import annotations

import pytest

from tests.fakes import FakeUpstream
from tests.gateway_process import GatewayProcess, free_port

API_KEYS = {"sk-openai-1", "sk-ant-1", "sk-rl-a", "sk-rl-b", "az-key", "sk-custom", "sk-groq", "gm-key-1"}


def gateway_config(fake_url: str, closed_port: int) -> dict:
    """Providers for every path the tests take, all pointing at the fake (or at nothing)."""
    fast_retries = {"max_retries": 2, "retry_backoff_initial": 10, "retry_backoff_max": 40,
                    "default_request_timeout_in_seconds": 3}
    return {
        "providers": {
            "openai": {
                "keys": [{"name": "oa-1", "value": "env.TEST_OPENAI_KEY", "models": ["*"], "weight": 1}],
                "network_config": {"base_url": fake_url, **fast_retries, "extra_headers": {"X-Org": "acme"}},
            },
            "anthropic": {
                "keys": [{"name": "an-1", "value": "sk-ant-1", "models": ["*"], "weight": 1}],
                "network_config": {"base_url": fake_url, **fast_retries},
            },
            # two keys; the second has weight 0 so it is used only when the first is rate limited
            "groq": {
                "keys": [{"name": "rl-a", "value": "sk-rl-a", "models": ["*"], "weight": 1},
                         {"name": "rl-b", "value": "sk-rl-b", "models": ["*"], "weight": 0}],
                "network_config": {"base_url": fake_url, **fast_retries},
            },
            "perplexity": {
                "keys": [{"name": "px", "value": "sk-custom", "models": ["*"]}],
                "network_config": {"base_url": fake_url},
            },
            "azure": {
                "keys": [{"name": "az", "value": "az-key", "models": ["gpt-4o", "text-embedding-3-small"],
                          "azure_key_config": {"endpoint": fake_url, "api_version": "2024-10-21",
                                               "deployments": {"gpt-4o": "gpt-4o-prod",
                                                               "text-embedding-3-small": "text-embedding-3-small-eu"}}}],
            },
            "gemini": {
                "keys": [{"name": "gm-1", "value": "gm-key-1", "models": ["*"]}],
                "network_config": {"base_url": fake_url, **fast_retries},
            },
            "refused": {
                "keys": [{"name": "r", "value": "sk-custom", "models": ["*"]}],
                "network_config": {"base_url": f"http://127.0.0.1:{closed_port}"},
                "custom_provider_config": {"base_provider_type": "openai"},
            },
            "slow": {
                "keys": [{"name": "s", "value": "sk-custom", "models": ["*"]}],
                "network_config": {"base_url": fake_url, "default_request_timeout_in_seconds": 1},
                "custom_provider_config": {"base_provider_type": "openai"},
            },
            "chatonly": {
                "keys": [{"name": "c", "value": "sk-custom", "models": ["*"]}],
                "network_config": {"base_url": fake_url},
                "custom_provider_config": {"base_provider_type": "openai",
                                           "allowed_requests": {"chat_completion": True, "chat_completion_stream": True}},
            },
        }
    }


@pytest.fixture(scope="session")
def fake():
    upstream = FakeUpstream(api_keys=API_KEYS).start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def gateway(fake):
    server = GatewayProcess(gateway_config(fake.url, free_port()), env={"TEST_OPENAI_KEY": "sk-openai-1"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_fake(request):
    """Each test starts with no recorded requests and no planned misbehaviour."""
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").clear()
    yield
