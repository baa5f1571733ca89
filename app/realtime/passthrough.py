"""Opus RTP relayed between two aiortc peer connections without decoding it.

aiortc has no public API for this, so the hook is private and the aiortc version is
pinned (setup.cfg) and tested (tests/unit/test_realtime_hook.py):
- ``RTCRtpReceiver._handle_rtp_packet`` is wrapped so a receiver with a ``tap`` hands each
  raw packet to it before the jitter buffer (behind it, each packet waits about 80 ms);
- such a receiver's decoder queue discards frames, so nothing is decoded;
- the other leg's sender reads ``av.Packet`` objects from a ``RelayTrack``: aiortc then only
  re-packetizes them with that leg's own sequence numbers, timestamps and SSRC.
A tap that raised would make aiortc tear down the DTLS transport, so errors stop here.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections import deque
from fractions import Fraction
from typing import Callable

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

log = logging.getLogger("bifrost.realtime")

OPUS_CLOCK = 48000
TIME_BASE = Fraction(1, OPUS_CLOCK)
QUEUE_LIMIT = 50  # one second of 20 ms packets waiting for the other leg to connect

_original_handle_rtp = RTCRtpReceiver._handle_rtp_packet
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


async def _handle_rtp_packet(self: RTCRtpReceiver, packet: RtpPacket, arrival_time_ms: int) -> None:
    tap: Callable[[RtpPacket], None] | None = getattr(self, "bifrost_tap", None)
    if tap is not None and self._enabled:
        try:
            tap(packet)
        except Exception:  # never into aiortc: it would close the transport
            log.exception("realtime: RTP tap failed")
    await _original_handle_rtp(self, packet, arrival_time_ms)


RTCRtpReceiver._handle_rtp_packet = _handle_rtp_packet


class _DiscardingQueue(queue.Queue):
    """A decoder queue that keeps only the stop sentinel: the frames are never decoded."""

    def put(self, item, block=True, timeout=None):
        if item is None:
            super().put(item, block, timeout)


def tap_receiver(receiver: RTCRtpReceiver, tap: Callable[[RtpPacket], None], *, decode: bool = False) -> None:
    """Hand every RTP packet ``receiver`` gets to ``tap``; unless ``decode``, skip the decoder.

    Call it before the connection starts (the decoder worker takes its queue on start).
    """
    if not decode:
        if not hasattr(receiver, _DECODER_QUEUE):
            raise RuntimeError("aiortc changed: RTCRtpReceiver has no decoder queue to bypass")
        setattr(receiver, _DECODER_QUEUE, _DiscardingQueue())
    receiver.bifrost_tap = tap


class RelayTrack(MediaStreamTrack):
    """An audio track fed with the other leg's Opus payloads, as pre-encoded ``av.Packet``s.

    Presentation times follow the source's RTP timestamps, so gaps stay gaps; when the
    source SSRC changes, times continue from the last packet.
    """

    kind = "audio"

    def __init__(self, on_packet: Callable[[RtpPacket], None] | None = None) -> None:
        super().__init__()
        self.payload_type: int | None = None  # the source leg's Opus payload type, once negotiated
        self.foreign = 0  # packets of another payload type (DTMF, comfort noise...) not relayed as Opus
        self._queue: asyncio.Queue = asyncio.Queue()
        self._ssrc: int | None = None
        self._base = 0  # source timestamp that maps to pts ``_offset``
        self._offset = 0
        self._last_pts = 0
        self.dropped = 0
        self.relay_ms: deque = deque(maxlen=3000)  # tap -> sender pick-up, per packet
        self.on_packet = on_packet

    def push(self, packet: RtpPacket) -> None:
        """Called on the media loop by the other leg's receiver tap."""
        if self.readyState != "live" or not packet.payload:
            return
        if self.payload_type is not None and packet.payload_type != self.payload_type:
            self.foreign += 1
            return
        if packet.ssrc != self._ssrc:
            self._ssrc = packet.ssrc
            self._base = packet.timestamp
            self._offset = self._last_pts + 960 if self._last_pts else 0
        pts = self._offset + ((packet.timestamp - self._base) & 0xFFFFFFFF)
        self._last_pts = pts
        if self._queue.qsize() >= QUEUE_LIMIT:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait((packet.payload, pts, time.perf_counter()))
        if self.on_packet is not None:
            self.on_packet(packet)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            raise MediaStreamError
        payload, pts, tapped = item
        self.relay_ms.append((time.perf_counter() - tapped) * 1000.0)
        frame = av.Packet(payload)
        frame.pts = pts
        frame.time_base = TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        self._queue.put_nowait(None)
