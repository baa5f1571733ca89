"""Calls through the real gateway: Opus byte for byte, data channel, usage, forms."""
from __future__ import annotations

import bisect
import json
import statistics

from tests.fakes.realtime import ClientPeer
from tests.realtime_netns.conftest import multipart, post, report, wait_for

SESSION = json.dumps({"type": "realtime", "model": "openai/gpt-realtime", "instructions": "be brief"})


def open_call(gateway, client: ClientPeer, path="/v1/realtime/calls", session=SESSION):
    body, content_type = multipart({"sdp": client.offer(), "session": session})
    status, headers, answer = post(gateway.url + path, body, {"Content-Type": content_type})
    assert status == 200, answer
    assert headers["Content-Type"].startswith("application/sdp")
    client.accept(answer.decode())
    return headers["Location"]


def payloads(recorded):
    return [p for p, _ in recorded]


def aligned(sent, received):
    """Where ``received`` starts in ``sent``, after checking it is an exact in-order run of it."""
    sent_p, got = payloads(sent), payloads(received)
    assert got, "nothing arrived"
    start = sent_p.index(got[0])
    assert sent_p[start:start + len(got)] == got, "payloads differ, are missing or out of order"
    return start


def test_opus_payloads_are_byte_identical_both_ways_in_order(gateway, provider, rtc):
    client = ClientPeer(rtc)
    location = open_call(gateway, client)
    assert location.startswith("/v1/realtime/calls/rtc_bf_")
    call = provider.calls[max(provider.calls, key=lambda k: int(k.rsplit("_", 1)[1]))]
    assert call.session["model"] == "gpt-realtime" and call.session["instructions"] == "be brief"
    assert wait_for(lambda: len(client.received) >= 120 and len(call.received) >= 120, 15)
    client.close()
    # client -> provider: every payload the client sent, in order, none lost
    assert aligned(client.voice.sent, call.received) == 0
    # provider -> client: what the provider sent (its stream and its echo) reaches the client unchanged
    assert aligned(call.voice.sent, client.received) == 0
    assert wait_for(lambda: call.closed_at is not None, 3)


def test_added_latency_per_packet_is_reported(gateway, provider, rtc):
    """One-way provider -> client time through the gateway, against the same peers connected directly."""
    def one_way(client, call):
        sent = {}  # the same bytes can be sent twice (the stream, then an echo): take the latest send before
        for payload, at in list(call.voice.sent):
            sent.setdefault(payload, []).append(at)
        times = []
        for payload, at in client.received[50:]:
            index = bisect.bisect_right(sent.get(payload, []), at) - 1
            if index >= 0:
                times.append((at - sent[payload][index]) * 1000)
        return statistics.median(times), statistics.quantiles(times, n=10)[-1], len(times)

    direct = ClientPeer(rtc)
    body, content_type = multipart({"sdp": direct.offer(), "session": json.dumps({"type": "realtime",
                                                                                  "model": "gpt-realtime"})})
    status, headers, answer = post(provider.url + "/v1/realtime/calls", body,
                                   {"Content-Type": content_type, "Authorization": "Bearer sk-rt-1"})
    assert status == 201
    direct.accept(answer.decode())
    direct_call = provider.calls[headers["Location"].rsplit("/", 1)[1]]
    assert wait_for(lambda: len(direct.received) >= 200, 15)
    direct_p50, direct_p90, _ = one_way(direct, direct_call)
    direct.close()

    client = ClientPeer(rtc)
    open_call(gateway, client)
    call = provider.calls[max(provider.calls, key=lambda k: int(k.rsplit("_", 1)[1]))]
    assert wait_for(lambda: len(client.received) >= 200, 15)
    via_p50, via_p90, count = one_way(client, call)
    client.close()
    added = via_p50 - direct_p50
    report("latency", direct_p50_ms=round(direct_p50, 2), direct_p90_ms=round(direct_p90, 2),
           gateway_p50_ms=round(via_p50, 2), gateway_p90_ms=round(via_p90, 2), added_p50_ms=round(added, 2),
           packets=count)
    assert added < 60, f"packets wait {added:.1f} ms in the gateway: is the jitter buffer in the path?"


def test_data_channel_events_flow_both_ways_and_usage_is_counted(gateway, provider, rtc):
    client = ClientPeer(rtc)
    open_call(gateway, client)
    call = provider.calls[max(provider.calls, key=lambda k: int(k.rsplit("_", 1)[1]))]
    assert client.opened.wait(5)
    # sent by the provider as soon as its channel opened, before the client's: buffered, then delivered
    assert wait_for(lambda: any(e["type"] == "session.created" for e in client.events), 5)
    for n in range(20):
        client.send_event({"type": "session.update", "event_id": f"evt_{n}", "session": {"instructions": str(n)}})
    client.send_event({"type": "response.create", "event_id": "evt_resp"})
    assert wait_for(lambda: any(e["type"] == "response.done" for e in client.events), 5)
    echoed = [e["event"]["event_id"] for e in client.events if e["type"] == "echo"]
    assert echoed == [f"evt_{n}" for n in range(20)]
    assert [e["event_id"] for e in call.events_in] == [f"evt_{n}" for n in range(20)] + ["evt_resp"]
    client.close()
    line = wait_for(lambda: [l for l in gateway.log().splitlines() if "realtime call summary" in l
                             and f'"{call.id}"' in l], 5)
    summary = json.loads(line[-1].split("realtime call summary ", 1)[1])
    assert summary["turns"] == 1 and summary["total_tokens"] == 30
    assert summary["input_audio_tokens"] == 15 and summary["output_audio_tokens"] == 6
    assert summary["passthrough"] is True and summary["rtp_to_upstream"] > 0 and summary["dc_to_upstream"] == 21
    report("summary", **{k: summary[k] for k in ("relay_ms_p50", "duration_s", "rtp_to_client", "rtp_to_upstream")})


def test_legacy_sdp_urlencoded_and_openai_routes(gateway, provider, rtc):
    client = ClientPeer(rtc)
    status, headers, answer = post(gateway.url + "/v1/realtime?model=openai/gpt-realtime-mini",
                                   client.offer().encode(), {"Content-Type": "application/sdp"})
    assert status == 200, answer
    client.accept(answer.decode())
    call = provider.calls[max(provider.calls, key=lambda k: int(k.rsplit("_", 1)[1]))]
    assert call.session == {"model": "gpt-realtime-mini", "type": "realtime"}
    assert wait_for(lambda: len(call.received) >= 20 and len(client.received) >= 20, 10)
    client.close()

    from urllib.parse import urlencode
    other = ClientPeer(rtc)
    body = urlencode({"sdp": other.offer(), "session": json.dumps({"model": "gpt-realtime"})}).encode()
    status, headers, answer = post(gateway.url + "/openai/v1/realtime/calls", body,
                                   {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, answer
    assert headers["Location"].startswith("/openai/v1/realtime/calls/rtc_bf_")
    other.accept(answer.decode())
    assert wait_for(lambda: len(other.received) >= 20, 10)
    other.close()


def test_client_without_opus_is_transcoded(gateway, provider, rtc):
    from tests.fakes.realtime import PCMU
    client = ClientPeer(rtc, codecs=PCMU)
    open_call(gateway, client)
    call = provider.calls[max(provider.calls, key=lambda k: int(k.rsplit("_", 1)[1]))]
    ok = wait_for(lambda: len(client.received) >= 50 and len(call.received) >= 50, 10)
    client.close()
    assert ok, (len(client.received), len(call.received), gateway.log()[-3000:])
    line = wait_for(lambda: [l for l in gateway.log().splitlines() if "realtime call summary" in l
                             and f'"{call.id}"' in l], 5)
    assert '"passthrough":false' in line[-1]
