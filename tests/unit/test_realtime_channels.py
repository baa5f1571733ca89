"""Data-channel mapping in a bridge: buffered until the other side opens, bounded, usage counted."""
from __future__ import annotations

import asyncio

from app.config import RealtimeConfig
from app.realtime.bridge import MAX_PENDING_MESSAGES, Bridge, ChannelLink
from app.realtime.sdp import check_offer
from tests.unit.test_realtime_parts import OFFER


class Channel:
    """Just the RTCDataChannel surface ChannelLink uses: readyState, send, on."""

    def __init__(self, label="oai-events", state="connecting"):
        self.label, self.readyState, self.sent, self.handlers = label, state, [], {}

    def on(self, event, handler):
        self.handlers[event] = handler

    def send(self, message):
        assert self.readyState == "open"
        self.sent.append(message)

    def open(self):
        self.readyState = "open"
        self.handlers["open"]()

    def deliver(self, message):
        self.handlers["message"](message)


def bridge_and_link():
    async def make():
        bridge = Bridge("t", check_offer(OFFER), RealtimeConfig())
        upstream = Channel()
        return bridge, ChannelLink(bridge, "oai-events", upstream), upstream
    return asyncio.new_event_loop().run_until_complete(make())


def test_provider_events_wait_for_the_client_channel_and_the_oldest_go_past_the_bound():
    bridge, link, upstream = bridge_and_link()
    upstream.open()
    total = MAX_PENDING_MESSAGES + 25
    for n in range(total):
        upstream.deliver(f'{{"type":"x","n":{n}}}')
    upstream.deliver('{"type":"response.done","response":{"usage":{"total_tokens":7}}}')
    client = Channel(state="open")
    link.attach_client(client)
    assert len(client.sent) == MAX_PENDING_MESSAGES
    assert client.sent[0] == '{"type":"x","n":26}' and client.sent[-1].startswith('{"type":"response.done"')
    assert bridge.stats["dc_dropped"] == 26 and bridge.stats["dc_to_client"] == total + 1
    assert bridge.usage.turns == 1 and bridge.usage.total_tokens == 7
    upstream.deliver("after")  # once open and drained, straight through
    assert client.sent[-1] == "after"


def test_client_events_wait_for_the_provider_channel_in_order():
    bridge, link, upstream = bridge_and_link()
    client = Channel(state="open")
    link.attach_client(client)
    before = bridge.last_client_activity
    for n in range(5):
        client.deliver(f"e{n}")
    assert upstream.sent == [] and bridge.last_client_activity >= before
    upstream.open()
    client.deliver("e5")
    assert upstream.sent == [f"e{n}" for n in range(6)]
    assert bridge.stats["dc_to_upstream"] == 6


def test_ice_servers_are_always_explicit():
    """aiortc falls back to a public STUN server when iceServers is None; the bridge never lets it."""
    from app.config import IceServer

    async def make(settings):
        bridge = Bridge("t", check_offer(OFFER), settings)
        return [pc._RTCPeerConnection__configuration.iceServers for pc in (bridge.pc_client, bridge.pc_upstream)]

    loop = asyncio.new_event_loop()
    assert loop.run_until_complete(make(RealtimeConfig())) == [[], []]
    turn = IceServer(urls=("turn:turn.example.org:3478",), username="u", credential="c")
    configured = loop.run_until_complete(make(RealtimeConfig(ice_servers=(turn,))))
    assert [[(s.urls, s.username, s.credential) for s in servers] for servers in configured] == \
        [[(["turn:turn.example.org:3478"], "u", "c")]] * 2
