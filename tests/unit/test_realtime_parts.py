"""Offer checks, usage counting, client secrets and the client.realtime config section."""
from __future__ import annotations

import time

import pytest

from app.config import ConfigError, parse_config
from app.errors import GatewayError
from app.realtime import secrets
from app.realtime.sdp import check_offer
from app.realtime.usage import CallUsage

OFFER = """v=0
o=- 1 1 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111 0
c=IN IP4 0.0.0.0
a=mid:0
a=ice-ufrag:abcd
a=ice-pwd:0123456789abcdef012345
a=fingerprint:sha-256 AA:BB
a=setup:actpass
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
a=mid:1
a=ice-ufrag:abcd
a=ice-pwd:0123456789abcdef012345
a=fingerprint:sha-256 AA:BB
a=setup:actpass
"""


def test_a_usable_offer():
    offer = check_offer(OFFER)
    assert offer.audio_sections == 1 and offer.opus and offer.has_data_channel
    assert offer.sdp.endswith("\n")
    assert not check_offer(OFFER.replace("a=rtpmap:111 opus/48000/2\n", "")).opus


def test_session_level_credentials_count():
    lines = OFFER.splitlines()
    moved = [l for l in lines if not l.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint"))]
    moved[4:4] = ["a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdef012345", "a=fingerprint:sha-256 AA:BB"]
    check_offer("\n".join(moved))


@pytest.mark.parametrize("change, words", [
    (lambda s: "", "empty"),
    (lambda s: "hello", "v=0"),
    (lambda s: s.replace("m=audio", "m=video"), "no audio section"),
    (lambda s: s.replace("a=ice-ufrag:abcd\n", "", 1), "ice-ufrag"),
    (lambda s: s.replace("a=ice-pwd:0123456789abcdef012345\n", "", 1), "ice-pwd"),
    (lambda s: s.replace("a=fingerprint:sha-256 AA:BB\n", "a=fingerprint:\n", 1), "fingerprint"),
    (lambda s: s + "a=x\n" * 20000, "larger than"),
])
def test_unusable_offers_are_400s_on_sdp(change, words):
    with pytest.raises(GatewayError) as refused:
        check_offer(change(OFFER))
    assert refused.value.http_status == 400 and refused.value.param == "sdp"
    assert words in refused.value.message


def test_usage_from_response_done_events():
    usage = CallUsage()
    usage.add_event_text('{"type":"response.created"}')
    usage.add_event_text("not json")
    done = ('{"type":"response.done","response":{"usage":{"total_tokens":30,"input_tokens":20,"output_tokens":10,'
            '"input_token_details":{"text_tokens":5,"audio_tokens":15,"cached_tokens":2},'
            '"output_token_details":{"text_tokens":4,"audio_tokens":6}}}}')
    usage.add_event_text(done)
    usage.add_event_text(done)
    usage.add_event({"type": "response.done", "response": {"usage": {"total_tokens": "x"}}})
    assert usage.as_dict() == {"turns": 3, "input_tokens": 40, "output_tokens": 20, "total_tokens": 60,
                               "input_audio_tokens": 30, "input_text_tokens": 10, "input_cached_tokens": 4,
                               "output_audio_tokens": 12, "output_text_tokens": 8}


@pytest.fixture
def key(monkeypatch, tmp_path):
    monkeypatch.setenv("BIFROST_APP_DIR", str(tmp_path))
    monkeypatch.delenv(secrets.KEY_ENV, raising=False)
    secrets.signing_key.cache_clear()
    secrets._fernet.cache_clear()
    yield tmp_path
    secrets.signing_key.cache_clear()
    secrets._fernet.cache_clear()


def test_client_secret_round_trip_hides_the_virtual_key(key):
    token, expires_at = secrets.mint("openai", "gpt-realtime", {"model": "openai/gpt-realtime"}, 60, "sk-bf-vk1")
    assert token.startswith("ek_bf_") and "=" not in token and "sk-bf-vk1" not in token
    secret = secrets.verify(token)
    assert (secret.provider, secret.model, secret.virtual_key, secret.expires_at) == \
        ("openai", "gpt-realtime", "sk-bf-vk1", expires_at)
    assert (key / "realtime.key").stat().st_mode & 0o777 == 0o600  # shared by the workers, private


def test_forged_and_expired_client_secrets_are_401s(key, monkeypatch):
    token, _ = secrets.mint("openai", "m", {}, 10)
    with pytest.raises(GatewayError) as forged:
        secrets.verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    assert forged.value.http_status == 401 and forged.value.code == "invalid_client_secret"
    later = time.time() + 11
    monkeypatch.setattr(secrets.time, "time", lambda: later)
    with pytest.raises(GatewayError) as expired:
        secrets.verify(token)
    assert expired.value.code == "client_secret_expired"


def test_ttl_rules():
    assert secrets.ttl_from({}) == 600
    assert secrets.ttl_from({"expires_after": {"anchor": "created_at", "seconds": 7200}}) == 7200
    for bad in ({"expires_after": {"seconds": 9}}, {"expires_after": {"seconds": True}},
                {"expires_after": {"anchor": "now", "seconds": 60}}, {"expires_after": 5}):
        with pytest.raises(GatewayError):
            secrets.ttl_from(bad)


def test_call_ids_are_signed(key):
    call_id = secrets.call_id("openai", "rtc_u1_abc")
    assert secrets.parse_call_id(call_id) == ("openai", "rtc_u1_abc")
    with pytest.raises(GatewayError) as missing:
        secrets.parse_call_id(call_id[:-2] + "xx")
    assert missing.value.http_status == 404


def test_realtime_config_defaults_and_errors():
    realtime = parse_config({}).client.realtime
    assert realtime.ice_servers == () and realtime.idle_timeout_seconds == 10
    assert realtime.max_call_seconds == 3600 and realtime.max_sessions_per_worker == 8
    config = parse_config({"client": {"realtime": {"ice_servers": [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": "turn:turn.example.org:3478?transport=udp", "username": "u", "credential": "c"}]}}})
    assert [s.urls for s in config.client.realtime.ice_servers] == [
        ("stun:stun.example.org:3478",), ("turn:turn.example.org:3478?transport=udp",)]
    for bad, key_name in (({"ice_servers": [{"urls": "http://x"}]}, "client.realtime.ice_servers[0].urls"),
                          ({"idle_timeout_seconds": 0}, "client.realtime.idle_timeout_seconds"),
                          ({"max_sessions_per_worker": 0}, "client.realtime.max_sessions_per_worker"),
                          ({"nope": 1}, "client.realtime.nope")):
        with pytest.raises(ConfigError) as error:
            parse_config({"client": {"realtime": bad}})
        assert key_name in str(error.value)
