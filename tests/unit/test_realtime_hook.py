"""The private aiortc hook behind Opus pass-through (app/realtime/passthrough.py), against the pinned aiortc."""
from __future__ import annotations

import asyncio
import inspect

import aiortc
import av
import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.rtp import RtpPacket

from app.realtime import passthrough
from app.realtime.passthrough import QUEUE_LIMIT, RelayTrack, tap_receiver


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def receiver() -> RTCRtpReceiver:
    ice = RTCIceTransport(RTCIceGatherer(iceServers=[]))
    return RTCRtpReceiver("audio", RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()]))


def packet(seq: int, timestamp: int, payload: bytes, ssrc: int = 1234) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=timestamp, ssrc=ssrc)
    p.payload = payload
    return p


def test_aiortc_is_the_version_the_hook_was_written_for():
    assert aiortc.__version__.startswith("1.16."), "re-check passthrough.py against this aiortc, then the pin"
    parameters = list(inspect.signature(passthrough._original_handle_rtp).parameters)
    assert parameters == ["self", "packet", "arrival_time_ms"]
    assert RTCRtpReceiver._handle_rtp_packet is not passthrough._original_handle_rtp  # the wrapper is installed


def test_tap_sees_raw_packets_before_the_jitter_buffer_and_decoding_is_skipped():
    async def go():
        rx = receiver()
        seen = []
        tap_receiver(rx, seen.append)
        assert isinstance(getattr(rx, "_RTCRtpReceiver__decoder_queue"), passthrough._DiscardingQueue)
        rx._enabled = True
        p = packet(1, 960, b"\x78opus")
        await rx._handle_rtp_packet(p, arrival_time_ms=0)  # the keyword aiortc uses
        rx._RTCRtpReceiver__decoder_queue.put(("codec", "frame"))  # what aiortc would hand the decoder
        return seen, rx._RTCRtpReceiver__decoder_queue.qsize()

    seen, queued = run(go())
    assert len(seen) == 1 and seen[0].payload == b"\x78opus"
    assert queued == 0


def test_a_failing_tap_never_reaches_aiortc():
    async def go():
        rx = receiver()
        tap_receiver(rx, lambda _p: 1 / 0)
        rx._enabled = True
        await rx._handle_rtp_packet(packet(1, 0, b"x"), 0)

    run(go())  # no exception: aiortc would have torn down the DTLS transport


def test_relay_track_keeps_bytes_and_timing_and_bounds_its_queue():
    async def go():
        track = RelayTrack()
        track.push(packet(10, 5000, b"a"))
        track.push(packet(11, 5960, b"b"))
        track.push(packet(13, 7880, b"c"))  # one packet lost upstream: the gap stays a gap
        track.push(packet(1, 100, b"d", ssrc=99))  # a new source: times continue
        got = [await track.recv() for _ in range(4)]
        for n in range(QUEUE_LIMIT + 5):
            track.push(packet(100 + n, 10000 + 960 * n, bytes([n])))
        first = await track.recv()
        return got, first, track

    got, first, track = run(go())
    assert [bytes(p) for p in got] == [b"a", b"b", b"c", b"d"]
    assert [p.pts for p in got] == [0, 960, 2880, 3840]
    assert all(p.time_base == passthrough.TIME_BASE for p in got)
    assert track.dropped == 5 and bytes(first) == bytes([5])


def test_relay_track_passes_only_the_negotiated_opus_payload_type():
    async def go():
        track = RelayTrack()
        track.payload_type = 111
        track.push(packet(1, 0, b"opus"))
        dtmf = packet(2, 0, b"\x05\x0a\x00\xa0")
        dtmf.payload_type = 126
        track.push(dtmf)
        return track._queue.qsize(), track.foreign

    assert run(go()) == (1, 1)


def test_the_sender_packs_relayed_opus_without_touching_it():
    opus = next(c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus")
    codec = aiortc.RTCRtpCodecParameters(mimeType=opus.mimeType, clockRate=opus.clockRate, channels=2, payloadType=111)
    frame = av.Packet(b"\xfc\x01\x02opaque")
    frame.pts, frame.time_base = 1920, passthrough.TIME_BASE
    payloads, timestamp = get_encoder(codec).pack(frame)
    assert payloads == [b"\xfc\x01\x02opaque"] and timestamp == 1920


@pytest.mark.parametrize("decode", [True, False])
def test_tap_with_or_without_decoding(decode):
    rx = receiver()
    original = rx._RTCRtpReceiver__decoder_queue
    tap_receiver(rx, lambda _p: None, decode=decode)
    assert (rx._RTCRtpReceiver__decoder_queue is original) is decode
