import json

import pytest

from app.config import ConfigError, load_config, parse_config


def test_minimal_config_from_the_reference():
    config = parse_config(
        {"providers": {"openai": {"keys": [{"name": "openai-1", "value": "env.OPENAI_API_KEY", "models": ["*"], "weight": 1.0}]}}},
        environ={"OPENAI_API_KEY": "sk-real"},
    )
    openai = config.providers["openai"]
    assert openai.keys[0].value == "sk-real"
    assert openai.network.timeout == 30.0 and openai.network.max_retries == 0
    assert openai.network.retry_backoff_initial == 0.5 and openai.network.retry_backoff_max == 5.0
    assert openai.concurrency == 1000 and openai.buffer_size == 5000
    assert config.client.max_request_body_size_mb == 100 and config.client.drop_excess_requests is False


def test_full_provider_options_are_read():
    config = parse_config(
        {
            "client": {"drop_excess_requests": True, "allowed_origins": ["https://app.example"], "enable_logging": True},
            "providers": {
                "openai": {
                    "keys": [{"name": "a", "value": "k", "models": ["gpt-4o"], "weight": 0.7, "blacklisted_models": ["x"]}],
                    "network_config": {
                        "base_url": "http://127.0.0.1:9000/", "extra_headers": {"X-Org": "o"},
                        "default_request_timeout_in_seconds": 5, "max_retries": 3,
                        "retry_backoff_initial": 100, "retry_backoff_max": 1000,
                    },
                    "concurrency_and_buffer_size": {"concurrency": 4, "buffer_size": 8},
                },
                "my-openai": {
                    "keys": [{"name": "c", "value": "k"}],
                    "network_config": {"base_url": "http://mock:8000"},
                    "custom_provider_config": {"base_provider_type": "openai", "allowed_requests": {"chat_completion": True}},
                },
                "ollama": {"keys": [], "network_config": {"base_url": "http://localhost:11434"}},
            },
        },
        environ={},
    )
    openai = config.providers["openai"]
    assert openai.network.base_url == "http://127.0.0.1:9000"
    assert openai.network.extra_headers == {"X-Org": "o"}
    assert (openai.network.max_retries, openai.network.retry_backoff_initial, openai.network.retry_backoff_max) == (3, 0.1, 1.0)
    assert (openai.concurrency, openai.buffer_size) == (4, 8)
    assert openai.keys[0].allows("gpt-4o") and not openai.keys[0].allows("gpt-4o-mini")
    custom = config.providers["my-openai"]
    assert custom.kind == "openai" and custom.allowed_requests == {"chat_completion": True}
    assert config.providers["ollama"].keyless
    assert config.client.drop_excess_requests and config.client.allowed_origins == ("https://app.example",)


@pytest.mark.parametrize(
    "document, expected",
    [
        ({"providers": {"openai": {"keys": [{"value": "k", "weight": "heavy"}]}}}, "providers.openai.keys[0].weight: Not a valid number"),
        ({"providers": {"openai": {"keys": [{"value": "k"}], "network_config": {"base_url": "not a url"}}}}, "providers.openai.network_config.base_url"),
        ({"providers": {"openai": {"keys": [{"value": "k"}], "network_config": {"max_retrys": 2}}}}, "providers.openai.network_config.max_retrys: Unknown field"),
        ({"providers": {"nosuch": {"keys": [{"value": "k"}]}}}, "providers.nosuch: unknown provider"),
        ({"providers": {"openai": {"keys": [{"value": ""}]}}}, "providers.openai.keys[0].value: is empty"),
        ({"providers": {"openai": {"keys": []}}}, "providers.openai.keys: at least one key is needed"),
        ({"providers": {"azure": {"keys": [{"value": "k"}]}}}, "providers.azure.keys[0].azure_key_config"),
        ({"providers": {"openai": {"keys": [{"value": "env.NOT_SET_ANYWHERE"}]}}}, "providers.openai.keys[0].value: environment variable NOT_SET_ANYWHERE is not set"),
        ({"client": {"max_request_body_size_mb": 0}}, "client.max_request_body_size_mb"),
        ({"kv_store": {"type": "memcached"}}, "kv_store.type: Must be one of: lmdb, sqlite, redis"),
        ({"kv_store": {"type": "lmdb", "config": {"map_size_mb": 0}}}, "kv_store.config.map_size_mb: Must be greater"),
        ({"kv_store": {"type": "lmdb", "config": {"paht": "/x"}}}, "kv_store.config.paht: Unknown field"),
        ({"kv_store": {"type": "sqlite", "config": {"path": 3}}}, "kv_store.config.path: Not a valid string"),
        ({"kv_store": {"type": "redis", "config": {"pool_size": "x"}}}, "kv_store.config.pool_size: Not a valid"),
        ({"kv_store": {"type": "lmdb", "config": "/x"}}, "kv_store.config: Not a valid mapping type"),
    ],
)
def test_bad_config_names_the_key(document, expected):
    with pytest.raises(ConfigError) as raised:
        parse_config(document, source="config.json", environ={})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("config.json: ")
    assert expected in message


def test_missing_file_falls_back_to_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("BIFROST_CONFIG", raising=False)
    config = load_config(
        tmp_path / "config.json",
        environ={"OPENAI_API_KEY": "sk-1", "GROQ_API_KEY": "gsk-2", "AZURE_OPENAI_API_KEY": "az", "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"},
    )
    assert set(config.providers) == {"openai", "groq", "azure"}
    assert config.providers["groq"].keys[0].value == "gsk-2"
    assert config.providers["azure"].keys[0].azure.endpoint == "https://r.openai.azure.com"
    assert config.source == "environment"


def test_unreadable_json_is_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"providers": ')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path, environ={})
    path.write_text(json.dumps([1]))
    with pytest.raises(ConfigError, match="top level must be a JSON object"):
        load_config(path, environ={})
