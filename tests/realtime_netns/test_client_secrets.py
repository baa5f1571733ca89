"""Gateway client secrets: minted here, used by a browser-like client, the provider sees the real key."""
from __future__ import annotations

import json
import time

from tests.fakes.realtime import ClientPeer
from tests.realtime_netns.conftest import RT_KEY, post, wait_for


def mint(gateway, session, seconds=None):
    body = {"session": session}
    if seconds is not None:
        body["expires_after"] = {"anchor": "created_at", "seconds": seconds}
    status, _, reply = post(gateway.url + "/v1/realtime/client_secrets", json.dumps(body).encode(),
                            {"Content-Type": "application/json"})
    return status, json.loads(reply)


def test_mint_then_call_with_the_secret_as_bearer(gateway, provider, rtc):
    status, secret = mint(gateway, {"type": "realtime", "model": "openai/gpt-realtime", "instructions": "pirate"})
    assert status == 200, secret
    assert secret["value"].startswith("ek_bf_") and secret["expires_at"] > time.time() + 500
    assert secret["session"]["model"] == "openai/gpt-realtime"
    client = ClientPeer(rtc)
    status, headers, answer = post(gateway.url + "/v1/realtime/calls", client.offer().encode(),
                                   {"Content-Type": "application/sdp", "Authorization": f"Bearer {secret['value']}"})
    assert status == 200, answer
    client.accept(answer.decode())
    upstream = provider.requests[-1]
    assert upstream["headers"]["Authorization"] == f"Bearer {RT_KEY}"  # the real key, never the client's
    assert json.loads(upstream["form"]["session"]) == {"type": "realtime", "model": "gpt-realtime",
                                                      "instructions": "pirate"}
    assert wait_for(lambda: len(client.received) >= 20, 10)
    client.close()


def test_secret_is_bound_to_its_model(gateway, rtc):
    _, secret = mint(gateway, {"model": "openai/gpt-realtime"})
    client = ClientPeer(rtc)
    status, _, reply = post(gateway.url + "/v1/realtime/calls?model=openai/gpt-4o-realtime-preview",
                            client.offer().encode(),
                            {"Content-Type": "application/sdp", "Authorization": f"Bearer {secret['value']}"})
    client.close()
    assert status == 401 and json.loads(reply)["error"]["code"] == "client_secret_model_mismatch"


def test_ttl_bounds_and_bad_models(gateway):
    for seconds in (9, 7201, "60"):
        status, body = mint(gateway, {"model": "openai/gpt-realtime"}, seconds)
        assert status == 400 and body["error"]["param"] == "expires_after.seconds", body
    status, body = mint(gateway, {"model": "gpt-realtime"})
    assert status == 400 and body["error"]["param"] == "session.model"
    status, body = mint(gateway, {"model": "groq/x"})
    assert status == 400 and body["error"]["code"] == "unsupported_operation"


def test_expired_secret_is_refused(gateway, rtc):
    status, secret = mint(gateway, {"model": "openai/gpt-realtime"}, seconds=10)
    assert status == 200
    time.sleep(max(0.0, secret["expires_at"] - time.time()) + 0.2)
    client = ClientPeer(rtc)
    status, _, reply = post(gateway.url + "/v1/realtime/calls", client.offer().encode(),
                            {"Content-Type": "application/sdp", "Authorization": f"Bearer {secret['value']}"})
    client.close()
    assert status == 401 and json.loads(reply)["error"]["code"] == "client_secret_expired"
