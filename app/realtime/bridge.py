"""One relayed call: two aiortc peer connections, client-facing and provider-facing.

Everything here runs on the media loop (app/realtime/loop.py). The gateway answers the
client's offer with ``pc_client`` and offers ``pc_upstream`` to the provider. Opus RTP is
relayed packet by packet (app/realtime/passthrough.py); data channels are mapped by label
and buffered until the other side opens. The call ends on either side closing or failing,
on client silence, or at the maximum length; the gevent side then hangs up upstream.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from aiortc import (RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCRtpSender,
                    RTCSessionDescription)

from app.config import RealtimeConfig
from app.realtime.passthrough import RelayTrack, tap_receiver
from app.realtime.sdp import Offer
from app.realtime.usage import CallUsage

log = logging.getLogger("bifrost.realtime")

EVENTS_LABEL = "oai-events"
MAX_PENDING_MESSAGES = 1000
_OPUS = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]


class OfferRejected(Exception):
    """aiortc could not use the client's offer (after our own checks passed): a 400."""


class ChannelLink:
    """A client data channel and its provider twin, with bounded buffers for each direction."""

    def __init__(self, bridge: "Bridge", label: str, upstream: RTCDataChannel) -> None:
        self.bridge = bridge
        self.label = label
        self.upstream = upstream
        self.client: RTCDataChannel | None = None
        self.to_client: deque = deque()
        self.to_upstream: deque = deque()
        upstream.on("open", lambda: self._flush(self.to_upstream, upstream))
        upstream.on("message", self._from_upstream)

    def attach_client(self, channel: RTCDataChannel) -> None:
        self.client = channel
        channel.on("message", self._from_client)
        channel.on("open", lambda: self._flush(self.to_client, channel))
        self._flush(self.to_client, channel)

    def _from_client(self, message) -> None:
        self.bridge.client_active()
        self.bridge.stats["dc_to_upstream"] += 1
        self._send(self.upstream, self.to_upstream, message)

    def _from_upstream(self, message) -> None:
        self.bridge.stats["dc_to_client"] += 1
        if isinstance(message, str) and '"response.done"' in message:
            self.bridge.usage.add_event_text(message)
        self._send(self.client, self.to_client, message)

    def _send(self, channel: RTCDataChannel | None, pending: deque, message) -> None:
        if channel is not None and channel.readyState == "open":
            self._flush(pending, channel)
            if not pending:
                channel.send(message)
                return
        if len(pending) >= MAX_PENDING_MESSAGES:
            pending.popleft()
            self.bridge.stats["dc_dropped"] += 1
        pending.append(message)

    @staticmethod
    def _flush(pending: deque, channel: RTCDataChannel) -> None:
        while pending and channel.readyState == "open":
            channel.send(pending.popleft())


class Bridge:
    def __init__(self, call_id: str, offer: Offer, settings: RealtimeConfig) -> None:
        config = RTCConfiguration(iceServers=[  # explicit, even when empty: aiortc would add a public STUN server
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential) for s in settings.ice_servers
        ])
        self.call_id = call_id
        self.offer = offer
        self.settings = settings
        self.pc_client = RTCPeerConnection(config)
        self.pc_upstream = RTCPeerConnection(config)
        self.links: dict[str, ChannelLink] = {}
        self.tracks: list[RelayTrack] = []
        self.passthrough = True
        self.transcoded: list = []
        self.relayed: list = []  # (provider-side transceiver, track it feeds): payload type known at the answer
        self.usage = CallUsage()
        self.stats = {"rtp_to_upstream": 0, "rtp_to_client": 0, "dc_to_upstream": 0, "dc_to_client": 0,
                      "dc_dropped": 0}
        self.started = time.monotonic()
        self.client_connected_at: float | None = None
        self.last_client_activity = self.started
        self.end_reason: str | None = None
        self.ended = asyncio.Event()
        self._watchdog: asyncio.Task | None = None
        self.pc_client.on("connectionstatechange", self._client_state)
        self.pc_upstream.on("connectionstatechange", self._upstream_state)
        self.pc_client.on("datachannel", self._client_channel)

    # -- setting up ---------------------------------------------------------------------------
    async def make_upstream_offer(self) -> str:
        """Take the client's offer and build the gateway's own offer to the provider."""
        try:
            await self.pc_client.setRemoteDescription(RTCSessionDescription(self.offer.sdp, "offer"))
        except Exception as exc:  # noqa: BLE001 - the offer is the only input here (parse or codec errors)
            raise OfferRejected(str(exc) or exc.__class__.__name__) from None
        for tc in self.pc_client.getTransceivers():
            if tc.kind != "audio":
                tc.direction = "inactive"
                continue
            tu = self.pc_upstream.addTransceiver("audio", direction="sendrecv")
            tu.setCodecPreferences(_OPUS)
            opus = [c for c in tc._codecs if c.mimeType.lower() == "audio/opus"]
            if opus:
                tc._codecs = opus + [c for c in tc._codecs if c not in opus]  # send Opus to the client too
                to_upstream = RelayTrack(on_packet=self._client_rtp)
                to_upstream.payload_type = opus[0].payloadType  # the client's number for Opus
                to_client = RelayTrack(on_packet=self._upstream_rtp)
                self.relayed.append((tu, to_client))
                tap_receiver(tc.receiver, to_upstream.push)
                tap_receiver(tu.receiver, to_client.push)
                tu.sender.replaceTrack(to_upstream)
                tc.sender.replaceTrack(to_client)
                self.tracks += [to_upstream, to_client]
            else:  # a client without Opus (PCMU/PCMA/G722): aiortc decodes and re-encodes
                self.passthrough = False
                tap_receiver(tc.receiver, self._client_rtp, decode=True)
                tap_receiver(tu.receiver, self._upstream_rtp, decode=True)
                tu.sender.replaceTrack(tc.receiver.track)
                self.transcoded.append((tc, tu))  # the provider's track exists once its answer is in
            tc.direction = "sendrecv"
        if self.offer.has_data_channel:  # the offerer creates oai-events (the client's one is known only later)
            self._link(EVENTS_LABEL, self.pc_upstream.createDataChannel(EVENTS_LABEL))
        await self.pc_upstream.setLocalDescription(await self.pc_upstream.createOffer())
        return self.pc_upstream.localDescription.sdp

    async def finish(self, upstream_answer: str, timeout: float) -> str:
        """Apply the provider's answer, wait for that leg's ICE and DTLS, answer the client."""
        await self.pc_upstream.setRemoteDescription(RTCSessionDescription(upstream_answer, "answer"))
        for tc, tu in self.transcoded:
            tc.sender.replaceTrack(tu.receiver.track)
        for tu, track in self.relayed:
            track.payload_type = next(c.payloadType for c in tu._codecs if c.mimeType.lower() == "audio/opus")
        deadline = time.monotonic() + timeout
        while self.pc_upstream.connectionState != "connected":
            if self.pc_upstream.connectionState in ("failed", "closed"):
                raise ConnectionError(f"upstream connection {self.pc_upstream.connectionState}")
            if time.monotonic() >= deadline:
                raise TimeoutError("upstream ICE/DTLS did not complete")
            await asyncio.sleep(0.01)
        await self.pc_client.setLocalDescription(await self.pc_client.createAnswer())
        self.last_client_activity = time.monotonic()
        self._watchdog = asyncio.ensure_future(self._watch())
        return self.pc_client.localDescription.sdp

    def _link(self, label: str, upstream: RTCDataChannel) -> ChannelLink:
        link = self.links[label] = ChannelLink(self, label, upstream)
        return link

    def _client_channel(self, channel: RTCDataChannel) -> None:
        link = self.links.get(channel.label)
        if link is None:  # another label: opened in-band (DCEP) toward the provider, no renegotiation
            link = self._link(channel.label, self.pc_upstream.createDataChannel(
                channel.label, ordered=channel.ordered, protocol=channel.protocol,
                maxPacketLifeTime=channel.maxPacketLifeTime, maxRetransmits=channel.maxRetransmits))
        link.attach_client(channel)

    # -- activity and lifecycle ----------------------------------------------------------------
    def client_active(self) -> None:
        self.last_client_activity = time.monotonic()

    def _client_rtp(self, _packet) -> None:
        self.last_client_activity = time.monotonic()
        self.stats["rtp_to_upstream"] += 1

    def _upstream_rtp(self, _packet) -> None:
        self.stats["rtp_to_client"] += 1

    def _client_state(self) -> None:
        state = self.pc_client.connectionState
        if state == "connected" and self.client_connected_at is None:
            self.client_connected_at = time.monotonic()
        elif state in ("failed", "closed"):
            self.end(f"client {state}")

    def _upstream_state(self) -> None:
        if self.pc_upstream.connectionState in ("failed", "closed"):
            self.end(f"upstream {self.pc_upstream.connectionState}")

    async def _watch(self) -> None:
        settings = self.settings
        while not self.ended.is_set():
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if self.client_connected_at is None and now - self.started > settings.handshake_timeout_seconds + 1:
                self.end("client never connected")
            elif now - self.last_client_activity > settings.idle_timeout_seconds:
                self.end("idle timeout")
            elif now - self.started > settings.max_call_seconds:
                self.end("max call length")

    def end(self, reason: str) -> None:
        """Mark the call over (the first reason wins) and close both legs."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        asyncio.ensure_future(self.close())

    async def close(self) -> None:
        if self.end_reason is None:
            self.end_reason = "closed by the gateway"
        for track in self.tracks:
            track.stop()
        await asyncio.gather(self.pc_client.close(), self.pc_upstream.close(), return_exceptions=True)
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        self.ended.set()

    async def wait_ended(self) -> str:
        await self.ended.wait()
        return self.end_reason or "closed"

    def summary(self) -> dict:
        relay = sorted(s for t in self.tracks for s in t.relay_ms)
        return {
            "passthrough": self.passthrough,
            "end_reason": self.end_reason,
            **self.stats,
            "rtp_queue_dropped": sum(t.dropped for t in self.tracks),
            "rtp_not_opus": sum(t.foreign for t in self.tracks),
            "relay_ms_p50": round(relay[len(relay) // 2], 3) if relay else None,
        }


async def create(call_id: str, offer: Offer, settings: RealtimeConfig) -> Bridge:
    """Build a bridge on the media loop (aiortc objects must be created there)."""
    return Bridge(call_id, offer, settings)
