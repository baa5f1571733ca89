"""Bad input gets a 4xx that names the field, never a 500 (issue 6, items 3 and 8)."""
from __future__ import annotations

import gzip
import json

import pytest
import requests

from tests import rawhttp
from tests.fakes import Status
from tests.gateway_process import GatewayProcess

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


def post(gateway, body, **kwargs):
    return requests.post(gateway.url + CHAT, json=body, timeout=10, **kwargs)


def assert_names_field(reply, status: int, param: str):
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["status_code"] == status and body["error"]["param"] == param, body


@pytest.mark.parametrize("value", ["x", [1], 1, True, [], 0.5])
@pytest.mark.parametrize("where", ["top", "params"])
@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"])
def test_stream_options_that_is_not_an_object_is_a_400(gateway, fake, value, where, model):
    body = {"model": model, "messages": HELLO, "stream": True}
    if where == "top":
        body["stream_options"] = value
    else:
        body["params"] = {"stream_options": value}
    reply = post(gateway, body)
    assert_names_field(reply, 400, "stream_options" if where == "top" else "params.stream_options")
    assert fake.requests == []


def test_stream_options_object_still_streams(gateway, fake):
    body = {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True,
            "params": {"stream_options": {"include_usage": True}}}
    reply = post(gateway, body)
    assert reply.status_code == 200 and reply.text.rstrip().endswith("data: [DONE]"), reply.text


@pytest.mark.parametrize("parameters", [[["a", "b"]], "x", 1, [], True])
def test_anthropic_tool_parameters_that_are_not_an_object_are_a_400(gateway, fake, parameters):
    tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    reply = post(gateway, {"model": "anthropic/claude-3-5-haiku-latest", "messages": HELLO, "tools": tools})
    assert_names_field(reply, 400, "tools[0].function.parameters")
    assert fake.requests == []  # [["a","b"]] is not quietly sent as {"a": "b"}


CHUNKED_HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


@pytest.mark.parametrize("framing", [
    pytest.param(b"zz\r\n{}\r\n0\r\n\r\n", id="bad-chunk-size"),
    pytest.param(b"2\r\n{}XX0\r\n\r\n", id="missing-terminator"),
    pytest.param(b"2;a\x01b\r\n{}\r\n0\r\n\r\n", id="bad-extension"),
    pytest.param(b"2\r\n{}\r\n0\r\nBad Trailer\r\n\r\n", id="bad-trailer"),
])
def test_malformed_chunked_body_is_a_400_and_closes_the_connection(gateway, fake, framing):
    with rawhttp.connect(gateway.url) as sock:
        sock.sendall(CHUNKED_HEAD + framing)
        reply = rawhttp.read_reply(sock)
        assert reply.status == 400, reply
        body = reply.json()
        assert body["status_code"] == 400 and body["error"]["param"] == "Transfer-Encoding", body
        assert rawhttp.is_closed(sock)  # where the next request would start is unknown
    assert fake.requests == []
    assert "Traceback" not in gateway.log()


def test_well_formed_chunked_body_is_served(gateway, fake):
    payload = json.dumps({"model": "openai/gpt-4o-mini", "messages": HELLO}).encode()
    framing = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    reply = rawhttp.exchange(gateway.url, CHUNKED_HEAD + framing)
    assert reply.status == 200, reply


def test_gzip_request_body_is_decoded(gateway, fake):
    payload = json.dumps({"model": "openai/gpt-4o-mini", "messages": HELLO}).encode()
    reply = requests.post(gateway.url + CHAT, data=gzip.compress(payload), timeout=10,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert reply.status_code == 200, reply.text
    assert fake.requests[-1].body["messages"] == HELLO


def test_unsupported_content_encoding_is_a_415_naming_the_header(gateway, fake):
    reply = requests.post(gateway.url + CHAT, data=b"\x00\x01", timeout=10,
                          headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    assert_names_field(reply, 415, "Content-Encoding")


def test_corrupt_gzip_body_is_a_400_naming_the_header(gateway, fake):
    reply = requests.post(gateway.url + CHAT, data=b"not gzip at all", timeout=10,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert_names_field(reply, 400, "Content-Encoding")


@pytest.fixture(scope="module")
def small_body_gateway(fake):
    config = {"client": {"max_request_body_size_mb": 1},
              "providers": {"openai": {"keys": [{"name": "k", "value": "sk-openai-1"}],
                                       "network_config": {"base_url": fake.url}}}}
    with GatewayProcess(config) as gateway:
        yield gateway


def test_gzip_bomb_is_a_413_once_decompressed(small_body_gateway, fake):
    inflated = json.dumps({"model": "openai/gpt-4o-mini", "messages": HELLO, "pad": " " * (8 * 1024 * 1024)})
    compressed = gzip.compress(inflated.encode())
    assert len(compressed) < 100_000  # small on the wire, 8 MB once decoded
    reply = requests.post(small_body_gateway.url + CHAT, data=compressed, timeout=10,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert_names_field(reply, 413, "Content-Encoding")
    assert fake.requests == []


@pytest.mark.parametrize("model", ["x" * (5 * 1024 * 1024), "nosuch/" + "x" * (5 * 1024 * 1024),
                                   "openai/" + "x" * (5 * 1024 * 1024)])
def test_a_huge_model_name_is_not_echoed_whole(gateway, fake, model):
    fake.plan(Status(404))  # the upstream's "The model `...` does not exist" quotes it whole
    reply = post(gateway, {"model": model, "messages": HELLO})
    assert 400 <= reply.status_code < 500, reply.status_code
    assert len(reply.content) < 10_000, len(reply.content)
    assert len(gateway.log().splitlines()[-1]) < 10_000


@pytest.mark.parametrize("request_bytes, status", [
    pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, id="bad-header"),
    pytest.param(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, id="uri-too-long"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, id="header-too-large"),
    pytest.param(b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400, id="bad-version"),
])
def test_gunicorn_protocol_errors_are_bifrost_error_json(gateway, request_bytes, status):
    with rawhttp.connect(gateway.url) as sock:
        sock.sendall(request_bytes)
        reply = rawhttp.read_reply(sock)
    assert reply.status == status and reply.headers["content-type"] == "application/json", reply
    body = reply.json()
    assert body["status_code"] == status and body["is_bifrost_error"] is False and body["error"]["message"], body
