"""Start-up and client-level configuration, each on a gateway of its own."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.gateway_process import ROOT, GatewayProcess


def run_gunicorn_with(config_text: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "config.json"
    path.write_text(config_text)
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app", "--workers", "1", "--bind", "127.0.0.1:0"],
        cwd=ROOT, env={"BIFROST_CONFIG": str(path), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30,
    )


@pytest.mark.parametrize(
    "config_text, expected",
    [
        ('{"providers": {"openai": {"keys": [{"value": "k", "weight": "x"}]}}}',
         "providers.openai.keys[0].weight: Not a valid number"),
        ('{"providers": {"openai": {"keys": [{"value": "env.MISSING_KEY_VAR"}]}}}',
         "providers.openai.keys[0].value: environment variable MISSING_KEY_VAR is not set"),
        ('{"providers": ', "not valid JSON"),
    ],
)
def test_bad_config_stops_start_up_with_one_line(tmp_path, config_text, expected):
    result = run_gunicorn_with(config_text, tmp_path)
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if "config error" in line]
    assert len(error_lines) == 1 and expected in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_without_config_json_providers_come_from_the_environment(tmp_path):
    with GatewayProcess(None, app_dir=str(tmp_path),
                        env={"OPENAI_API_KEY": "sk-from-env", "ANTHROPIC_API_KEY": "sk-ant-env"}) as gateway:
        health = requests.get(gateway.url + "/health", timeout=5).json()
        assert health["providers"] == ["anthropic", "openai"]


def test_config_json_in_the_app_dir_is_used(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"providers": {"groq": {"keys": [{"name": "g", "value": "gsk"}]}}}))
    with GatewayProcess(None, app_dir=str(tmp_path)) as gateway:
        assert requests.get(gateway.url + "/health", timeout=5).json()["providers"] == ["groq"]


@pytest.fixture(scope="module")
def strict_gateway(fake):
    config = {
        "client": {"max_request_body_size_mb": 1, "allowed_origins": ["https://app.example"]},
        "providers": {"openai": {"keys": [{"name": "k", "value": "sk-openai-1"}], "network_config": {"base_url": fake.url}}},
    }
    with GatewayProcess(config) as gateway:
        yield gateway


def test_body_over_the_limit_is_a_413(strict_gateway, fake):
    big = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]}
    reply = requests.post(strict_gateway.url + "/v1/chat/completions", json=big, timeout=10)
    assert reply.status_code == 413, reply.text
    assert reply.json()["status_code"] == 413 and "max_request_body_size_mb" in reply.json()["error"]["message"]
    assert fake.requests == []


def test_cors_allows_configured_and_local_origins_only(strict_gateway):
    url = strict_gateway.url + "/v1/chat/completions"
    for origin in ("https://app.example", "http://localhost:3000"):
        preflight = requests.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "content-type, authorization"}, timeout=5)
        assert preflight.status_code in (200, 204)
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other = requests.options(url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in other.headers
