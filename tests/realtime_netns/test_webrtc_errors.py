"""Every refusal of POST /v1/realtime/calls has its status and names its field."""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.fakes.realtime import ClientPeer
from tests.realtime_netns.conftest import multipart, post, wait_for

GOOD_SESSION = json.dumps({"type": "realtime", "model": "openai/gpt-realtime"})


@pytest.fixture(scope="module")
def offer(rtc):
    client = ClientPeer(rtc)
    sdp = client.offer()
    yield sdp
    client.close()


def call(gateway, fields, path="/v1/realtime/calls"):
    body, content_type = multipart(fields)
    status, headers, reply = post(gateway.url + path, body, {"Content-Type": content_type})
    return status, json.loads(reply) if headers.get("Content-Type", "").startswith("application/json") else reply


def without(sdp: str, prefix: str) -> str:
    return "\r\n".join(line for line in sdp.splitlines() if not line.startswith(prefix)) + "\r\n"


@pytest.mark.parametrize("fields, param, words", [
    ({"session": GOOD_SESSION}, "sdp", "sdp is required"),
    ({"sdp": "OFFER"}, "session", "session is required"),
    ({"sdp": "OFFER", "session": "{not json"}, "session", "not valid JSON"),
    ({"sdp": "OFFER", "session": "[1]"}, "session", "JSON object"),
    ({"sdp": "OFFER", "session": json.dumps({"type": "realtime"})}, "session.model", "required"),
    ({"sdp": "OFFER", "session": json.dumps({"model": "gpt-realtime"})}, "session.model", "provider/model"),
    ({"sdp": "OFFER", "session": json.dumps({"model": "nope/gpt-realtime"})}, "session.model",
     "provider nope not found"),
    ({"sdp": "OFFER", "session": json.dumps({"model": "groq/whisper"})}, "session.model", "not supported by groq"),
    ({"sdp": "garbage", "session": GOOD_SESSION}, "sdp", "not an SDP offer"),
    ({"sdp": "", "session": GOOD_SESSION}, "sdp", "empty"),
    ({"sdp": "NO_AUDIO", "session": GOOD_SESSION}, "sdp", "no audio section"),
    ({"sdp": "NO_UFRAG", "session": GOOD_SESSION}, "sdp", "ice-ufrag"),
    ({"sdp": "NO_PWD", "session": GOOD_SESSION}, "sdp", "ice-pwd"),
    ({"sdp": "NO_FINGERPRINT", "session": GOOD_SESSION}, "sdp", "fingerprint"),
    ({"sdp": "NO_COMMON_CODEC", "session": GOOD_SESSION}, "sdp", "cannot be answered"),
])
def test_bad_input_is_a_400_naming_the_field(gateway, provider, offer, fields, param, words):
    sdps = {"OFFER": offer, "NO_UFRAG": without(offer, "a=ice-ufrag"), "NO_PWD": without(offer, "a=ice-pwd"),
            "NO_FINGERPRINT": without(offer, "a=fingerprint"),
            "NO_AUDIO": offer.replace("m=audio", "m=video"),
            "NO_COMMON_CODEC": re.sub(r"a=rtpmap:(\d+) \S+", r"a=rtpmap:\1 X-NOTHING/8000", offer)}
    fields = {k: sdps.get(v, v) if k == "sdp" else v for k, v in fields.items()}
    before = len(provider.requests)
    status, body = call(gateway, fields)
    assert status == 400, body
    assert body["is_bifrost_error"] is False and body["status_code"] == 400
    assert body["error"]["param"] == param and words in body["error"]["message"], body
    assert len(provider.requests) == before  # refused before anything went upstream


def test_legacy_form_without_model_and_a_wrong_content_type(gateway, offer):
    status, _, reply = post(gateway.url + "/v1/realtime", offer.encode(), {"Content-Type": "application/sdp"})
    assert status == 400 and json.loads(reply)["error"]["param"] == "model"
    status, _, reply = post(gateway.url + "/v1/realtime/calls", b"{}", {"Content-Type": "application/json"})
    assert status == 400 and json.loads(reply)["error"]["param"] == "Content-Type"


def test_an_invalid_client_secret_is_a_401(gateway, offer):
    status, _, reply = post(gateway.url + "/v1/realtime/calls", offer.encode(),
                            {"Content-Type": "application/sdp", "Authorization": "Bearer ek_bf_forged"})
    assert status == 401 and json.loads(reply)["error"]["code"] == "invalid_client_secret"


def test_upstream_refusal_is_a_502_with_its_status_and_message(gateway, provider, rtc):
    client = ClientPeer(rtc)
    provider.plan("reject", (403, "Project does not have access to model gpt-realtime"))
    status, body = call(gateway, {"sdp": client.offer(), "session": GOOD_SESSION})
    client.close()
    assert status == 502, body
    assert "(403)" in body["error"]["message"]
    assert "does not have access" in body["error"]["message"]
    assert body["error"]["code"] == "rejected_for_test"
    assert body["extra_fields"]["provider"] == "openai"


def test_upstream_that_does_not_answer_in_time_is_a_504(gateway, provider, rtc):
    client = ClientPeer(rtc)
    provider.plan("stall", 5)
    started = time.monotonic()
    status, body = call(gateway, {"sdp": client.offer(), "session": GOOD_SESSION})
    client.close()
    assert status == 504 and body["type"] == "request_timed_out", body
    assert time.monotonic() - started < 4.5  # handshake_timeout_seconds is 3 in these tests


def test_upstream_ice_that_never_completes_is_a_504_and_is_hung_up(gateway, provider, rtc):
    client = ClientPeer(rtc)
    provider.plan("dead")
    status, body = call(gateway, {"sdp": client.offer(), "session": GOOD_SESSION})
    client.close()
    assert status == 504 and "ICE/DTLS" in body["error"]["message"], body
    dead = provider.calls[max(provider.calls, key=lambda k: int(k.rsplit("_", 1)[1]))]
    assert wait_for(lambda: dead.hangup_at is not None, 3)  # nothing left billing
